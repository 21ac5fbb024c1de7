"""The benchmark scripts stay runnable: they import, and their pair builder works on the tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("bench_*.py")))
def test_benchmark_imports_and_has_main(name):
    assert callable(_load(name).main)


def test_patching_benchmark_pairs(tiny):
    pairs, metric = _load("bench_patching")._pairs(tiny, 3)
    assert len(pairs) == len(metric) == 3
    for (a, b), (x, y) in zip(pairs, metric):
        assert len(a) == len(b) and a != b and x != y
