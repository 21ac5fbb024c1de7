"""The `innerprobe` CLI: behave writes a consistent table and summary; bad input fails clearly."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from innerprobe.behavior import BehaviorResult
from innerprobe.cli.app import app

runner = CliRunner()


def test_behave_writes_parquet_and_summary(tmp_path, tiny):
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        ["behave", "--model", "tiny-random", "--task", "animals", "--property", "first_character",
         "--n", "8", "--mode", "forced", "--out", str(out), "--predictor-variant", "third_person"],
    )
    assert r.exit_code == 0, r.output
    table = pd.read_parquet(out / "behavior.parquet")
    summary = json.loads((out / "summary.json").read_text())
    scored = table[table.scored]
    assert summary["self"]["accuracy"]["value"] == pytest.approx(scored.correct.mean())
    assert summary["cross"]["accuracy"]["value"] == pytest.approx(scored.cross_correct.mean())
    prov = summary["provenance"]
    for key in ("model", "versions", "seed", "template_hash", "numerics_mode", "dtype"):
        assert key in prov
    # the CPU kernels and threads the numbers came from (a seeded build differs across them)
    assert prov["platform"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert prov["platform"]["torch_threads"] == torch.get_num_threads() == 1
    assert prov["model"]["name"] == "tiny-random"
    assert "self-prediction accuracy" in r.output
    loaded = BehaviorResult.load(out)  # the directory is a saved result too
    assert loaded.summary.self.accuracy.value == summary["self"]["accuracy"]["value"]
    assert loaded.provenance["source"] == "animals" == summary["provenance"]["source"]
    assert not list(out.glob(".*.tmp"))  # no half-written files left


def test_behave_on_release_file(tmp_path, tiny, shared_data):
    out = tmp_path / "rel"
    f = shared_data / "test" / "animals_long_starts_with_vowel.jsonl"
    r = runner.invoke(app, ["behave", "--model", "tiny-random", "--release", str(f), "--n", "6",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["property"] == "starts_with_vowel"
    assert summary["labels"] == ["true", "false"] or set(summary["labels"]) == {"true", "false"}
    table = pd.read_parquet(out / "behavior.parquet")
    first = json.loads(open(f).readline())
    assert first["hypothetical_prompt"][0]["content"] in table.hypothetical_prompt[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--property", "fifth_character"], "second_character"),
        (["--task", "planets"], "animals"),
        (["--model", "gpt-7"], "smollm2-135m-instruct"),
        (["--mode", "maybe"], "forced"),
        (["--property", "is_even"], "is_even"),
        (["--n", "0"], "n"),
    ],
)
def test_bad_input_names_the_problem(tmp_path, args, needle):
    base = {"--model": "tiny-random", "--task": "animals", "--property": "first_character", "--n": "4"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["behave", "--out", str(tmp_path / "x")] + [a for kv in base.items() for a in kv]
    r = runner.invoke(app, argv)
    assert r.exit_code == 2
    assert needle in r.output
    assert not (tmp_path / "x" / "summary.json").exists()


def test_listing_verbs():
    for verb, needle in [("tasks", "animals"), ("properties", "starts_with_vowel"), ("models", "gemma-3-270m")]:
        r = runner.invoke(app, [verb])
        assert r.exit_code == 0 and needle in r.output
