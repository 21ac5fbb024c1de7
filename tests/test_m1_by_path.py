"""A finetuned model (base + LoRA adapter dir) runs through every stage by path, via the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.training.data import build_training_data
from innerprobe.training.finetune import FinetuneConfig, finetune

runner = CliRunner()


@pytest.fixture(scope="module")
def m1_dir(tiny, tmp_path_factory):
    """A tiny M1: the tiny model trained a few steps on its own behaviour."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("m1")
    data = build_training_data(tiny, ["colors"], ["first_character"], 8, seed=0)
    res = finetune(tiny, data, out, FinetuneConfig(rank=4, alpha=8, lr=1e-2, epochs=1, batch_size=4))
    assert res.finished
    return out


def _ok(argv: list[str]) -> None:
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, r.output


def test_capture_probe_patch_run_on_adapter_dir(m1_dir, tmp_path):
    store = tmp_path / "store"
    _ok(["capture", "--model", str(m1_dir), "--task", "animals", "--property", "first_character", "--n", "24",
         "--layers", "0,1", "--out", str(store), "--batch-size", "8"])
    manifest = json.loads((store / "manifest.json").read_text())
    # The store records the merged M1, not its base: its fingerprint names the adapter dir.
    assert str(m1_dir) in json.dumps(manifest)
    _ok(["probe", "--store", str(store), "--target", "property_value", "--folds", "2", "--min-count", "2",
         "--n-boot", "20", "--out", str(tmp_path / "probe")])
    assert not pd.read_parquet(tmp_path / "probe" / "results.parquet").empty
    _ok(["patch", "--model", str(m1_dir), "--task", "animals", "--property", "second_character", "--n-pairs", "3",
         "--n-items", "40", "--min-gap", "0", "--p-tokens", "2", "--last", "2", "--layers", "0,1",
         "--out", str(tmp_path / "patch")])
    summary = json.loads((tmp_path / "patch" / "summary.json").read_text())
    assert summary["maps"]["h_map"]["n_pairs"] >= 1
    assert str(m1_dir) in summary["provenance"]["model"]["source"]
