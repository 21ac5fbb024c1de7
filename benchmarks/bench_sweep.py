"""Benchmark: one sweep under the three executors (local sequential, local pool, Ray), in one run.

Runs the same sweep config into three fresh directories, one per executor, and reports each
one's wall time, the ratios to the sequential run, and whether the three result tables agree
(every cell × metric: estimate, interval and n; the sweep's numbers must not depend on where a
cell ran). The default config is the 8-cell example on the embedded SmolLM2
(``experiments/sweep_example.toml``: 2 tasks × 2 properties × 2 experiments).

    python benchmarks/bench_sweep.py OUT_DIR [--config experiments/sweep_example.toml]
        [--executors local,pool,ray] [--workers 2]

Ray starts a local cluster (``ray.init()`` with ``--workers`` CPUs) unless ``RAY_ADDRESS`` is
set. Writes ``OUT_DIR/bench_sweep.json``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from innerprobe.core.io import library_versions, write_json
from innerprobe.study.sweep import make_executor, run_sweep
from innerprobe.study.sweep_config import load_sweep

log = logging.getLogger("bench_sweep")
KEY = ["cell_id", "metric"]
NUMBERS = ["estimate", "ci_low", "ci_high", "n"]


def _canonical(table: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in KEY + NUMBERS if c in table.columns]
    return table[cols].sort_values(KEY).reset_index(drop=True)


def _one(config: Any, out: Path, name: str, workers: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    executor = make_executor(name, workers=workers if name != "local" else None)
    start = time.perf_counter()
    result = run_sweep(config, out / name, executor)
    wall = time.perf_counter() - start
    s = result.summary
    log.info("%s: %d cells done, %d failed in %.1f s", name, s.n_done, s.n_failed, wall)
    return result.table, {"wall_s": wall, "n_done": s.n_done, "n_failed": s.n_failed, "n_cells": s.n_cells}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", type=Path, default=Path(__file__).parents[1] / "experiments" / "sweep_example.toml")
    ap.add_argument("--executors", default="local,pool,ray")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_sweep(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    tables, runs = {}, {}
    for name in args.executors.split(","):
        tables[name], runs[name] = _one(config, args.out, name, args.workers)
    ref_name = next(iter(tables))
    ref = _canonical(tables[ref_name])
    agree = {name: bool(_canonical(t).equals(ref)) for name, t in tables.items()}
    base = runs[ref_name]["wall_s"]
    report = {
        "config": str(args.config), "n_cells": runs[ref_name]["n_cells"], "workers": args.workers,
        "runs": runs, "ratio_to_" + ref_name: {k: v["wall_s"] / base for k, v in runs.items()},
        "tables_equal_to_" + ref_name: agree, "n_rows": len(ref), "versions": library_versions(),
    }
    write_json(args.out / "bench_sweep.json", report)
    log.info("ratios %s; tables equal %s", report["ratio_to_" + ref_name], agree)


if __name__ == "__main__":
    main()
