"""Sweeps: TOML expansion into cells with stable ids, errors with key and line, a resumable store
(nothing lost or run twice after a kill), failures recorded per cell, and the same table from the
local, pool and Ray executors."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.core.html import read_json_block
from innerprobe.core.tomlconfig import ConfigError
from innerprobe.study import (
    KINDS,
    LocalExecutor,
    PoolExecutor,
    RayExecutor,
    ResultsStore,
    StageKind,
    SweepResult,
    load_sweep,
    register_kind,
    run_sweep,
)
from innerprobe.study import results_store as results_store_module
from innerprobe.study.cells import metric_row
from innerprobe.study.registry import Where, _build_behave, _canonical_behave

REPO = Path(__file__).resolve().parents[1]
BEHAVE_ONLY = """
[sweep]
models = ["tiny-random"]
tasks = ["animals"]
properties = ["first_character", "second_character"]
seeds = [0, 1]
n = 6

[experiments.self]
kind = "behave"
batch_size = 8
"""
BOTH = """
[sweep]
models = ["tiny-random"]
tasks = ["animals", "colors"]
properties = ["first_character", "second_character"]
modes = ["forced"]
n = 12

[experiments.self]
kind = "behave"

[experiments.transfer]
kind = "probes"
target = "property_value"

[experiments.transfer.probes]
probes = ["ridge"]
folds = 2
min_count = 2
n_boot = 50
"""


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- config and ids


def test_expansion_counts_and_ids_stable_across_orderings(tmp_path):
    cells = load_sweep(_write(tmp_path, BOTH)).cells()
    # behave: 2 tasks x 2 properties x 1 mode; probes have no mode: 2 x 2
    assert len(cells) == 8
    assert {c.mode for c in cells if c.kind == "probes"} == {None}
    ids = [c.id for c in cells]
    assert len(set(ids)) == 8 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    # the same sweep written in another order: axes reversed, tables swapped, a default made explicit
    reordered = """
[experiments.transfer]
target = "property_value"
kind = "probes"
[experiments.transfer.probes]
n_boot = 50
min_count = 2
folds = 2
probes = ["ridge"]

[experiments.self]
kind = "behave"
batch_size = 16

[sweep]
n = 12
modes = ["forced"]
properties = ["second_character", "first_character"]
tasks = ["colors", "animals"]
models = ["tiny-random"]
"""
    again = load_sweep(_write(tmp_path, reordered, "again.toml")).cells()
    assert sorted(c.id for c in again) == sorted(ids)
    assert [c.id for c in load_sweep(_write(tmp_path, BOTH, "third.toml")).cells()] == ids  # every run


def test_id_changes_with_what_changes_the_numbers(tmp_path):
    base = {c.id for c in load_sweep(_write(tmp_path, BEHAVE_ONLY)).cells()}
    more_items = {c.id for c in load_sweep(_write(tmp_path, BEHAVE_ONLY.replace("n = 6", "n = 7"), "b.toml")).cells()}
    other_opts = {c.id for c in load_sweep(_write(tmp_path, BEHAVE_ONLY.replace("batch_size = 8", "batch_size = 8\nhypothetical_max_new_tokens = 3"), "c.toml")).cells()}
    assert not base & more_items and not base & other_opts
    # resources do not change a cell's numbers, so not its id
    res = {c.id for c in load_sweep(_write(tmp_path, BEHAVE_ONLY + "num_cpus = 2\n", "d.toml")).cells()}
    assert res == base


@pytest.mark.parametrize(("text", "key", "line", "words"), [
    (BEHAVE_ONLY.replace("batch_size = 8", "batchsize = 8"), "batchsize", 11, "unknown key 'batchsize'"),
    (BOTH.replace("folds = 2", "fold = 2"), "fold", 18, "[experiments.transfer.probes] unknown key 'fold'"),
    (BEHAVE_ONLY.replace("n = 6", 'n = "many"'), "n", 7, "valid integer"),
    (BEHAVE_ONLY.replace('kind = "behave"', 'kind = "behaev"'), "kind", 10, "behave"),
    (BEHAVE_ONLY.replace("batch_size = 8", 'mode = "free"'), "mode", 11, "set by the [sweep] axes"),
    (BEHAVE_ONLY.replace("seeds = [0, 1]", "seeds = [0, 0]"), None, 2, "lists a value twice"),
])
def test_bad_key_names_key_and_line(tmp_path, text, key, line, words):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    err = info.value
    assert err.line == line, str(err)
    if key is not None:
        assert err.key == key
    assert str(err).startswith(f"{path}:{line}:") and words in str(err)


def test_behave_options_are_the_stage_config():
    config = _build_behave({"batch_size": 4, "spec": {"variant": "suppose"}}, "free", 3, Where())
    assert (config.mode, config.seed, config.batch_size, config.spec.variant) == ("free", 3, 4, "suppose")
    assert "mode" not in _canonical_behave(config) and _canonical_behave(config)["batch_size"] == 4


# --------------------------------------------------------------------------- store, failures, resume


@pytest.fixture
def flaky_kind():
    """A stage kind that fails on second_character and returns fixed rows otherwise."""

    def run(model, cell, config):
        if cell.property == "second_character":
            raise ValueError(f"planted failure in {cell.task}")
        return [metric_row("planted", 0.5 + cell.seed, 0.4, 0.6, 10), metric_row("layer", 1, n=10)]

    register_kind(StageKind("flaky", False, lambda options, mode, seed, where: dict(options), dict, run))
    yield
    del KINDS["flaky"]


def test_failing_cell_records_its_error_and_others_finish(tmp_path, flaky_kind):
    path = _write(tmp_path, BEHAVE_ONLY.replace('kind = "behave"', 'kind = "flaky"'))
    result = run_sweep(path, tmp_path / "out", LocalExecutor())
    s = result.summary
    assert (s.n_cells, s.n_done, s.n_failed, s.n_pending) == (4, 2, 2, 0)
    assert set(result.errors["error_type"]) == {"ValueError"}
    assert all(m == "planted failure in animals" for m in result.errors["error_message"])
    assert set(result.table["property"]) == {"first_character"} and len(result.table) == 4
    # without retrying, the failures stay failed and nothing runs; with it they run (and fail) again
    again = run_sweep(path, tmp_path / "out", LocalExecutor(), retry_failed=False)
    assert again.summary.n_run == 0 and again.summary.n_failed == 2
    retried = run_sweep(path, tmp_path / "out", LocalExecutor())
    assert retried.summary.n_run == 2 and set(retried.errors["attempts"]) == {2}
    r = CliRunner().invoke(app, ["sweep-status", str(tmp_path / "out")])
    assert r.exit_code == 0 and "planted failure" in r.output


class _KilledAfter:
    """An executor that dies (KeyboardInterrupt) after ``k`` cells, like a killed sweep."""

    def __init__(self, k: int):
        self.k = k

    def run(self, cells):
        for i, item in enumerate(LocalExecutor().run(cells)):
            if i == self.k:
                raise KeyboardInterrupt
            yield item


def _assert_complete_once(store: ResultsStore, n_cells: int, n_metrics: int) -> None:
    status = store.status()
    assert status.counts == {"done": n_cells, "failed": 0, "pending": 0}
    table = store.table()
    assert table["cell_id"].nunique() == n_cells
    assert not table.duplicated(["cell_id", "metric"]).any()
    assert len(table) == n_cells * n_metrics
    # the Parquet dataset read whole holds exactly the same rows (no stray or half files)
    assert len(pd.read_parquet(store.root / "cells")) == len(table)


def test_killed_sweep_resumes_with_nothing_lost_or_duplicated(tmp_path, flaky_kind, monkeypatch):
    path = _write(tmp_path, BEHAVE_ONLY.replace('kind = "behave"', 'kind = "flaky"').replace(
        '"second_character"', '"third_character", "last_character"'))
    n_cells = len(load_sweep(path).cells())
    k = random.Random(os.getpid()).randrange(1, n_cells - 1)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, out, _KilledAfter(k))
    store = ResultsStore(out)
    assert store.status().counts["done"] == k
    before = {i: store.read_status(i)["finished"] for i in store.status().done}
    # a second kill lands between a cell's rows and its status: that cell must stay pending
    real = results_store_module.write_json
    def dying(p, data):  # noqa: E306
        if data.get("state") == "done":
            raise KeyboardInterrupt
        return real(p, data)
    monkeypatch.setattr(results_store_module, "write_json", dying)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, out, LocalExecutor())
    monkeypatch.setattr(results_store_module, "write_json", real)
    assert store.status().counts["done"] == k and len(store.stray_files()) == 1
    result = run_sweep(path, out, LocalExecutor())
    assert result.summary.n_run == n_cells - k
    _assert_complete_once(store, n_cells, 2)
    assert store.stray_files() == []
    assert {i: store.read_status(i)["finished"] for i in before} == before  # done cells never re-ran


@pytest.mark.slow
def test_sweep_killed_in_a_subprocess_resumes(tmp_path):
    """SIGKILL the CLI after a random number of finished cells; re-running completes it once."""
    path = _write(tmp_path, BEHAVE_ONLY)
    out = tmp_path / "out"
    n_cells = len(load_sweep(path).cells())
    k = random.Random(os.getpid()).randrange(1, n_cells)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from innerprobe.cli import app; app()", "sweep", str(path), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "status").is_dir() and len(list((out / "status").glob("*.json"))) >= k:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = ResultsStore(out)
    done_before = len(store.status().done)
    assert k <= done_before < n_cells or proc.returncode == 0
    result = run_sweep(path, out, LocalExecutor())
    assert result.summary.n_run == n_cells - done_before
    _assert_complete_once(store, n_cells, len(result.table) // n_cells)


# --------------------------------------------------------------------------- executors, result, CLI


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["cell_id", "metric"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    path = _write(tmp, BOTH)
    return path, run_sweep(path, tmp / "local", LocalExecutor())


def test_local_sweep_of_behave_and_probes_on_the_tiny_model(local_both):
    _, result = local_both
    assert result.summary.n_done == 8 and result.errors.empty
    t = result.table
    behave = t[t["kind"] == "behave"].set_index(["cell_id", "metric"])["estimate"]
    for cell in t.loc[t["kind"] == "behave", "cell_id"].unique():
        assert 0 <= behave[(cell, "self_accuracy")] <= 1 and 0 <= behave[(cell, "mode_baseline")] <= 1
    probes = t[t["kind"] == "probes"]
    assert set(probes["metric"]) >= {"transfer_accuracy", "transfer_layer", "transfer_majority"}
    layers = probes.loc[probes["metric"] == "transfer_layer", "estimate"]
    assert set(layers) <= {0.0, 1.0}  # the tiny model has two layers
    acc = probes[probes["metric"] == "transfer_accuracy"]
    assert ((acc["ci_low"] <= acc["estimate"]) & (acc["estimate"] <= acc["ci_high"])).all()
    assert t["model_fingerprint"].str.startswith("tiny-random@").all() and t["config_hash"].nunique() == 2


def test_pool_gives_the_local_table(local_both, tmp_path):
    path, local = local_both
    pooled = run_sweep(path, tmp_path / "pool", PoolExecutor(workers=2))
    pd.testing.assert_frame_equal(_comparable(pooled.table), _comparable(local.table))


@pytest.mark.slow
def test_ray_gives_the_local_table(local_both, tmp_path):
    ray = pytest.importorskip("ray")
    path, local = local_both
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(path, tmp_path / "ray", RayExecutor())
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(_comparable(result.table), _comparable(local.table))


def test_sweep_result_saves_loads_and_draws(local_both, tmp_path):
    _, result = local_both
    result.save(tmp_path / "r")
    back = SweepResult.load(tmp_path / "r")
    pd.testing.assert_frame_equal(back.table, result.table)
    assert back.summary == result.summary
    fig = result.figure("self_accuracy")
    assert fig.data[0].type == "heatmap" and len(fig.data[0].y) == 2 and len(fig.data[0].x) == 2


def test_cli_sweep_status_and_report(tmp_path, tiny):
    path = _write(tmp_path, BEHAVE_ONLY.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--executor", "local"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sweep-status", str(out)])
    assert r.exit_code == 0 and "done" in r.output
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    data = read_json_block(out / "report.html")
    assert len(data["table"]) == len(ResultsStore(out).table()) and data["summary"]["n_done"] == 2
    page = (out / "report.html").read_text()
    assert page.count('class="plot"') == 4 and "<script src=" not in page  # plotly inline, no CDN
    r = runner.invoke(app, ["sweep", str(path), "--out", str(out), "--executor", "dask"])
    assert r.exit_code == 2 and "dask" in r.output


@pytest.mark.integration
def test_sweep_on_smollm2(tmp_path, smol):
    text = BOTH.replace('"tiny-random"', '"smollm2-135m-instruct"').replace('tasks = ["animals", "colors"]', 'tasks = ["animals"]').replace(
        'properties = ["first_character", "second_character"]', 'properties = ["first_character"]').replace("n = 12", "n = 16")
    text += '[experiments.transfer.capture]\nlayers = "0:30:6"\nbatch_size = 12\n'
    result = run_sweep(_write(tmp_path, text), tmp_path / "out", LocalExecutor())
    assert result.summary.n_done == 2, result.errors
    t = result.table.set_index("metric")["estimate"]
    assert t["object_compliance"] > 0.5 and t["transfer_layer"] in {0, 6, 12, 18, 24}
