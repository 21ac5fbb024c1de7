"""ProbeResult follows the result protocol (save → load equal), its summary is honest, its config checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from innerprobe import probes as P
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.result import Summary
from innerprobe.core.stats import Estimate


def _o_and_h(n: int = 240, d: int = 16, seed: int = 0):
    """O and H runs sharing a label direction at layer 1; 20 recurring word types."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    dirs = rng.standard_normal((3, d))
    x = rng.standard_normal((n, 2, d))
    x[:, 1] += 2.5 * dirs[y]
    h = x + 0.5 * rng.standard_normal((n, 2, d)) + 3.0
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    types = [f"w{k}" if k % 7 else None for k in rng.integers(0, 20, n)]
    return {"O": t(x), "H:h_last": t(h)}, np.array(["a", "b", "c"])[y], [f"item{i}" for i in range(n)], types


@pytest.fixture(scope="module")
def result() -> P.ProbeResult:
    runs, y, groups, types = _o_and_h()
    res = P.run_probes(runs, y, groups, control_types=types, layers=[4, 9], target="answer",
                       config=P.ProbeConfig(folds=3, n_boot=100))
    res.provenance = {"seed": 0, "store": "fake"}
    return res


def test_save_load_round_trip_is_equal(result, tmp_path):
    out = result.save(tmp_path / "probe")
    assert sorted(p.name for p in out.iterdir()) == ["arrays.safetensors", "result.json", "table.parquet"]
    back = P.ProbeResult.load(out)
    pd.testing.assert_frame_equal(back.table, result.table)
    assert back.summary == result.summary and isinstance(back.summary, P.ProbeSummary)
    assert set(back.directions) == set(result.directions) == {f"{p}/{r}" for p in ("ridge", "mass_mean")
                                                              for r in ("O", "H:h_last")}
    for k, v in result.directions.items():
        assert isinstance(back.directions[k], torch.Tensor) and torch.equal(back.directions[k], v)
    assert set(back.correct) == set(result.correct)
    for k, v in result.correct.items():
        np.testing.assert_array_equal(back.correct[k], v)
    np.testing.assert_array_equal(back.majority, result.majority)
    np.testing.assert_array_equal(back.control_rows, result.control_rows)
    for name in ("target", "classes", "layers", "runs", "n_items", "n_dropped", "dropped_classes", "config",
                 "control", "warnings", "groups", "provenance"):
        assert getattr(back, name) == getattr(result, name), name
    assert back.config.probes == ("ridge", "mass_mean")
    assert not list(out.glob("*.pkl"))
    meta = json.loads((out / "result.json").read_text())
    assert meta["stage"] == "probe" and meta["type"].endswith(":ProbeResult")


def test_round_trip_without_controls(tmp_path):
    runs, y, _, _ = _o_and_h(n=90)
    res = P.run_probes({"O": runs["O"]}, y, config=P.ProbeConfig(folds=3, n_boot=50, controls=False))
    back = P.ProbeResult.load(res.save(tmp_path / "r"))
    assert back.control_rows is None and back.control == {}
    assert back.summary == res.summary and all(b.control_task is None for b in back.summary.best)
    pd.testing.assert_frame_equal(back.table, res.table)


def test_summary_is_typed_and_estimated_on_the_other_half(result):
    s = result.summary
    assert isinstance(s, Summary) and s.target == "answer" and s.n_items == 240 and s.n_classes == 3
    # 2 probes x (2 within-run splits + 2 transfer splits x 2 item sets)
    assert len(s.best) == 2 * (2 + 2 * 2)
    b = s.find("ridge", "O")
    assert b.layer == 9 and b.naive_layer == 9
    for est in (b.accuracy, b.naive, b.majority, b.shuffled, b.random_proj, b.control_task, b.selectivity):
        assert isinstance(est, Estimate) and est.ci_low <= est.value <= est.ci_high
    assert b.accuracy.n == 120 and b.naive.n == 240  # chosen on split A, estimated on split B
    assert b.accuracy.value > 0.8 and abs(b.shuffled.value - 1 / 3) < 0.2
    assert b.control_task.n == b.selectivity.n < 120  # split-B items that have a type
    assert "split A" in b.selection and "split B" in b.selection
    with pytest.raises(KeyError):
        s.find("ridge", "nope")
    long = s.table
    assert {"probe", "split", "items", "layer", "measure", "value", "ci_low", "ci_high", "n", "method"} <= set(long)
    assert set(long["measure"]) == {"accuracy", "naive", "majority", "shuffled", "random_proj", "control_task",
                                    "selectivity"}


def test_best_layers_is_the_summary_in_table_columns(result):
    best = P.best_layers(result)
    assert len(best) == len(result.summary.best)
    row = best[(best["probe"] == "ridge") & (best["split"] == "O")].iloc[0]
    b = result.summary.find("ridge", "O")
    assert row["value"] == b.accuracy.value and row["selectivity"] == b.selectivity.value
    assert row["control_n"] == b.selectivity.n and row["naive_n"] == 240


def test_figure_has_layer_curves(result):
    fig = result.figure(probe="mass_mean")
    assert "mass_mean" in fig.layout.title.text and len(fig.data) > 4
    assert "same" in result.figure(items="same").layout.title.text


@pytest.mark.parametrize("kwargs, error, says", [
    ({"probes": ("ridge", "lasso")}, UnknownNameError, r"unknown probe 'lasso'.*logistic, mass_mean, ridge"),
    ({"probes": ()}, DataError, r"at least one probe.*ridge"),
    ({"probes": ("ridge", "ridge")}, DataError, "twice"),
    ({"folds": 1}, DataError, r"folds must be >= 2, got 1"),
    ({"C": 0}, DataError, r"C must be > 0, got 0"),
    ({"C": -1.0}, DataError, r"C must be > 0"),
    ({"C": float("nan")}, DataError, r"C must be > 0"),
    ({"ridge_alpha": -1.0}, DataError, r"ridge_alpha must be > 0, got -1.0"),
    ({"ridge_alpha": 0}, DataError, r"ridge_alpha must be > 0"),
    ({"n_boot": 0}, DataError, r"n_boot must be >= 1, got 0"),
    ({"min_count": 0}, DataError, r"min_count must be >= 1, got 0"),
    ({"max_iter": 0}, DataError, r"max_iter must be >= 1"),
    ({"tol": 0.0}, DataError, r"tol must be > 0"),
    ({"alpha": 1.5}, DataError, r"alpha must be in \(0, 1\).*1.5"),
    ({"seed": -1}, DataError, r"seed must be >= 0, got -1"),
    ({"device": "gpu0"}, DataError, r"device 'gpu0'.*cpu, cuda"),
])
def test_config_names_the_bad_value(kwargs, error, says):
    with pytest.raises(error, match=says):
        P.ProbeConfig(**kwargs)


def test_config_accepts_lists_and_a_single_name():
    assert P.ProbeConfig(probes=["logistic"]).probes == ("logistic",)
    assert P.ProbeConfig(probes="ridge").probes == ("ridge",)
    assert P.ProbeConfig(min_count=None).min_count is None


def test_run_names_with_a_slash_are_refused():
    runs, y, _, _ = _o_and_h(n=60)
    with pytest.raises(DataError, match="contains '/'"):
        P.run_probes({"O/1": runs["O"]}, y, config=P.ProbeConfig(folds=3, controls=False))


@pytest.mark.parametrize("argv, says", [
    (["--n-boot", "0"], "ProbeConfig.n_boot must be >= 1, got 0"),
    (["--C", "-1"], "ProbeConfig.C must be > 0"),
    (["--min-count", "0"], "ProbeConfig.min_count must be >= 1"),
    (["--device", "gpu0"], "ProbeConfig.device 'gpu0'"),
])
def test_cli_passes_bad_values_to_the_config(tmp_path, argv, says):
    from typer.testing import CliRunner

    from innerprobe.cli.app import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["probe", "--store", str(tmp_path), *argv, "--out", str(out)])
    assert r.exit_code == 2 and says in " ".join(r.output.split()), r.output
    assert not out.exists()  # checked before --out is claimed
