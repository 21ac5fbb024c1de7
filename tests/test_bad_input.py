"""Bad input fails early and clearly: the message names the bad thing and the valid choices, the
check runs before the expensive work (no model is loaded for most of these), and no result file
is left behind. Each class is covered through the CLI (exit code 2) and the Python API."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import innerprobe.core.io as artifacts
from innerprobe import cli
from innerprobe.activations.capture import capture
from innerprobe.activations.store import ActivationStore
from innerprobe.behavior.inference import cache_kwarg, generate, label_logprobs
from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, OutDirError, StoreMismatchError, UnknownNameError
from innerprobe.core.io import STAGE_MARKER, atomic_dir, prepare_out_dir, write_json
from innerprobe.core.paths import cache_dir, cache_root, model_cache_root
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import LabelTokens
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.training.finetune import FinetuneConfig, lora_model

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PROP = get_property("first_character")
BEHAVE = ["behave", "--model", "tiny-random", "--task", "animals", "--property", "first_character", "--n", "4"]
CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    """Error lines unwrapped, so a long path stays one word in the output."""
    monkeypatch.setattr(cli.console, "width", 1000)


def said(result, *needles: str) -> None:
    text = " ".join(result.output.replace("│", " ").split())  # typer's usage errors come boxed
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in text, (needle, result.output)


def no_results(out: Path) -> bool:
    """The directory is absent or holds nothing but innerprobe's stage marker."""
    return not out.exists() or [p.name for p in out.iterdir()] in ([], [STAGE_MARKER])


# --------------------------------------------------------------------------- --out


def test_cli_out_is_an_existing_file(tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    said(runner.invoke(app, [*BEHAVE, "--out", str(out)]), f"--out {out} is an existing file", "pass a directory")
    assert out.read_text() == "keep me"


def test_cli_out_below_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "run"
    said(runner.invoke(app, [*BEHAVE, "--out", str(out)]), f"{tmp_path / 'f'} is a file, not a directory")
    assert (tmp_path / "f").read_text() == "x"


def test_cli_out_not_writable(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", refuse)
    out = tmp_path / "ro" / "run"
    said(runner.invoke(app, [*BEHAVE, "--out", str(out)]), f"--out {out}: cannot write", "Permission denied")
    assert no_results(out)


def test_api_out_in_read_only_dir(tmp_path, monkeypatch):
    """A directory the process may not write into (simulated: CI runs as root, which may)."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(artifacts.tempfile, "mkstemp", refuse)
    with pytest.raises(OutDirError, match="cannot write"):
        prepare_out_dir(ro / "run", "behave")
    assert no_results(ro / "run")


@pytest.mark.parametrize("other, files", [("capture", ["manifest.json", "rows.parquet"]), ("probe", ["results.parquet"])])
def test_cli_out_holding_another_stage(tmp_path, other, files):
    out = tmp_path / "run"
    out.mkdir()
    for f in files:
        (out / f).write_text("{}")
    said(runner.invoke(app, [*BEHAVE, "--out", str(out)]), f"holds the output of `innerprobe {other}`")
    assert sorted(p.name for p in out.iterdir()) == sorted(files)  # nothing added


def test_api_out_stage_marker_refuses_other_stages_allows_rerun(tmp_path):
    out = prepare_out_dir(tmp_path / "run", "capture")
    assert prepare_out_dir(out, "capture") == out  # resuming the same stage
    with pytest.raises(OutDirError, match="`innerprobe capture`"):
        prepare_out_dir(out, "behave")
    with pytest.raises(OutDirError, match="valid stages: behave, capture"):
        prepare_out_dir(tmp_path / "x", "bogus")
    assert no_results(out) and no_results(tmp_path / "x")


def test_api_capture_into_another_stages_dir(tiny, tmp_path):
    out = prepare_out_dir(tmp_path / "b", "behave")
    with pytest.raises(OutDirError, match="holds the output of `innerprobe behave`"):
        capture(tiny, load_items("animals", n=2), PROP, out=out)
    assert no_results(out)


def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


# --------------------------------------------------------------------------- numbers and choices


@pytest.mark.parametrize(
    "argv, needles",
    [
        ([*BEHAVE, "--batch-size", "0"], ["BehaviorConfig.batch_size", "must be >= 1, got 0"]),
        ([*BEHAVE, "--calibration-samples", "-1"], ["BehaviorConfig.calibration_samples", "must be >= 0, got -1"]),
        (["capture", "--model", "tiny-random", "--shard-size", "0"], ["shard_size", ">= 1, got 0"]),
        (["capture", "--model", "tiny-random", "--sites", "resid_postt"], ["'resid_postt'", "resid_post, resid_pre"]),
        (["capture", "--model", "tiny-random", "--dtype", "int8"], ["'int8'", "float16, float32"]),
        (["finetune", "--model", "tiny-random", "--rank", "0"], ["rank", ">= 1, got 0"]),
        (["finetune", "--model", "tiny-random", "--epochs", "0"], ["epochs", ">= 1, got 0"]),
        (["finetune", "--model", "tiny-random", "--max-steps", "-3"], ["max_steps", ">= 1, got -3"]),
        (["finetune", "--model", "tiny-random", "--tasks", "colors,planets"], ["'planets'", "valid tasks: animals"]),
        (["probe", "--store", "s", "--folds", "1"], ["folds", ">= 2, got 1"]),
        (["probe", "--store", "s", "--standardise", "train"], ["standardisation scope 'train'", "all, fold"]),
        (["patch", "--model", "tiny-random", "--gap-rule", "bogus"], ["gap rule 'bogus'", "both_runs, difference"]),
        (["patch", "--model", "tiny-random", "--other-task", "planets"], ["task 'planets'", "colors"]),
        (["patch", "--model", "tiny-random", "--site", "resid_mid"], ["site 'resid_mid'", "attn_out, mlp_out"]),
    ],
)
def test_cli_bad_numbers_and_names(tmp_path, argv, needles):
    out = tmp_path / "out"
    said(runner.invoke(app, [*argv, "--out", str(out)]), *needles)
    assert no_results(out)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank=0), "rank must be >= 1, got 0"),
        (dict(epochs=-1), "epochs must be >= 1"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(max_steps=0), "max_steps must be >= 1"),
        (dict(save_every=-1), "save_every must be >= 0"),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    ],
)
def test_api_finetune_config(kwargs, match):
    with pytest.raises(DataError, match=match):
        FinetuneConfig(**kwargs)


def test_api_capture_bad_sizes_leave_no_store(tiny, tmp_path):
    items = load_items("animals", n=2)
    with pytest.raises(DataError, match="shard_size must be >= 1, got 0"):
        capture(tiny, items, PROP, out=tmp_path / "s", shard_size=0)
    with pytest.raises(DataError, match="batch_size must be >= 1, got -2"):
        capture(tiny, items, PROP, out=tmp_path / "s", batch_size=-2)
    assert no_results(tmp_path / "s")


def test_api_generate_batch_size(tiny):
    with pytest.raises(DataError, match="batch_size must be >= 1, got 0"):
        generate(tiny.hf_model, tiny.tokenizer, [[1, 2, 3]], batch_size=0)


# --------------------------------------------------------------------------- file encodings


def _latin1_csv(tmp_path: Path) -> Path:
    f = tmp_path / "qs.csv"
    f.write_bytes("question\nHow are you?\nUn caf\u00e9?\n".encode("latin-1"))
    return f


def test_cli_latin1_csv(tmp_path):
    f = _latin1_csv(tmp_path)
    argv = ["behave", "--model", "tiny-random", "--task", str(f), "--property", "first_word", "--mode", "free"]
    said(runner.invoke(app, [*argv, "--out", str(tmp_path / "o")]), f"{f}: not UTF-8", "line 3", "re-save the file as UTF-8")
    assert no_results(tmp_path / "o")


def test_api_latin1_csv_and_jsonl(tmp_path):
    with pytest.raises(DataError, match=r"qs.csv: not UTF-8 \(byte 0xe9 at offset 28, line 3\)"):
        load_items(str(_latin1_csv(tmp_path)))
    j = tmp_path / "qs.jsonl"
    j.write_bytes('{"question": "caf\u00e9?"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="qs.jsonl: not UTF-8 .* line 1"):
        load_items(str(j))


def test_api_csv_with_byte_order_mark(tmp_path):
    f = tmp_path / "bom.csv"
    f.write_bytes("question,id\nWhat next?,q1\n".encode("utf-8-sig"))
    items = load_items(str(f))
    assert items[0]["question"] == "What next?" and items[0]["id"] == "q1"


# --------------------------------------------------------------------------- damaged stores


@pytest.fixture(scope="module")
def store_dir(tiny, tmp_path_factory):
    """A small complete store: 12 items, 2 shards, a class rarer than 5 in ``object_answer``."""
    out = tmp_path_factory.mktemp("store") / "s"
    items = load_items("animals", n=12, split="train", seed=0)
    labels = {"object_answer": list("aaaaabbbbbbc")}
    capture(tiny, items, PROP, out=out, shard_size=6, hypothetical_positions=("h_last", "quote_mean"), labels=labels)
    return out


@pytest.fixture
def store(store_dir, tmp_path):
    copy = tmp_path / "s"
    shutil.copytree(store_dir, copy)
    return copy


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:100])


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(p.stat().st_size))


def _edit_model(p: Path) -> None:
    m = json.loads(p.read_text())
    m["model"]["weights_sha256"] = "0" * 64
    p.write_text(json.dumps(m))


DAMAGE = {
    "truncated shard": ("shard-00001.safetensors", _truncate, "shard-00001.safetensors does not match the manifest"),
    "garbage shard": ("shard-00000.safetensors", _garbage, "shard-00000.safetensors does not match the manifest"),
    "invalid manifest": ("manifest.json", lambda p: p.write_text('{"shards": ['), "manifest.json: invalid manifest JSON"),
    "deleted shard": ("shard-00001.safetensors", Path.unlink, "shard-00001.safetensors listed in manifest.json but missing"),
    "deleted rows": ("rows.parquet", Path.unlink, "rows.parquet listed in manifest.json but missing"),
    "garbage rows": ("rows.parquet", _garbage, "rows.parquet does not match the manifest"),
    "edited manifest": ("manifest.json", _edit_model, "manifest.json was edited after the capture"),
}
PROBE = ["probe", "--target", "object_answer", "--site", "resid_post", "--positions", "h_last", "--n-boot", "10",
         "--folds", "2", "--no-controls"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_cli_damaged_store(store, tmp_path, damage):
    name, harm, message = DAMAGE[damage]
    harm(store / name)
    out = tmp_path / "probe"
    said(runner.invoke(app, [*PROBE, "--store", str(store), "--out", str(out)]), message, "capture")
    assert no_results(out)


def _read_all(path: Path) -> None:
    st = ActivationStore.open(path)
    assert len(st.rows) == 12
    st.read("hypothetical", "resid_post", "h_last")


@pytest.mark.parametrize("damage", DAMAGE)
def test_api_damaged_store(store, damage):
    name, harm, message = DAMAGE[damage]
    harm(store / name)
    error = StoreMismatchError if "match" in message or "edited" in message else DataError
    with pytest.raises(error, match=message.split(" ", 1)[1]):
        _read_all(store)


def test_api_intact_store_records_checksums(store):
    m = json.loads((store / "manifest.json").read_text())
    assert all(len(s["sha256"]) == 64 for s in m["shards"]) and len(m["rows_sha256"]) == 64
    _read_all(store)  # verification passes on the untouched copy


def test_cli_readme_probe_example_runs(store, tmp_path):
    """The README's probe command as written (its store swapped for the tiny one): a class rarer
    than the folds is dropped and reported, not fatal."""
    line = next(x for x in (REPO / "README.md").read_text().splitlines() if x.startswith("| `innerprobe probe "))
    argv = line.split("`")[1].split()[1:]
    argv[argv.index("--store") + 1] = str(store)
    out = tmp_path / "probe"
    r = runner.invoke(app, [*argv, "--n-boot", "10", "--no-controls", "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped_classes"] == {"c": 1} and summary["n_dropped"] == 1


# --------------------------------------------------------------------------- model specs


def test_cli_missing_local_path_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    out = tmp_path / "o"
    said(runner.invoke(app, [*BEHAVE[:2], "runs/m1", *BEHAVE[3:], "--out", str(out)]),
         "model path 'runs/m1' does not exist", "smollm2-135m-instruct, gemma-3-270m, tiny-random")
    assert no_results(out)


def test_cli_unreachable_hub_id_fails_fast(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "model_info", offline)
    out = tmp_path / "o"
    r = runner.invoke(app, [*BEHAVE[:2], "someorg/not-a-model", *BEHAVE[3:], "--out", str(out)])
    said(r, "cannot reach the Hugging Face hub to load 'someorg/not-a-model'", "no network", "tiny-random")
    assert no_results(out)


@pytest.mark.parametrize("spec", ["./nope", "~/innerprobe-no-such-model", "/no/such/model/dir"])
def test_api_missing_local_path(spec):
    with pytest.raises(DataError, match=f"model path '{spec}' does not exist.*valid models: smollm2-135m-instruct"):
        load_model(spec)


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cli_cuda_without_cuda(tmp_path):
    out = tmp_path / "o"
    said(runner.invoke(app, [*BEHAVE, "--device", "cuda", "--out", str(out)]),
         "device 'cuda' is not available on this machine", "valid devices here: cpu")
    assert not out.exists()


def test_cli_unknown_device(tmp_path):
    out = tmp_path / "o"
    said(runner.invoke(app, [*BEHAVE, "--device", "tpu", "--out", str(out)]),
         "device 'tpu' is not a device name (use cpu, cuda, cuda:N or mps)")
    assert not out.exists()


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:99"])
def test_api_bad_device(device):
    with pytest.raises(DataError, match=f"device '{device}' .*valid devices here: cpu"):
        load_model("tiny-random", device=device)


# --------------------------------------------------------------------------- context length


def test_cli_hypothetical_over_context(tiny, tmp_path):
    f = tmp_path / "long.csv"
    f.write_text("id,question\nshort,Name an animal.\nlong," + "cat dog " * 600 + "\n")
    out = tmp_path / "o"
    argv = ["behave", "--model", "tiny-random", "--task", str(f), "--property", "first_word", "--mode", "free"]
    said(runner.invoke(app, [*argv, "--out", str(out)]), "hypothetical prompt of item 'long' is", "context length 1024")
    assert no_results(out)


def test_api_scoring_over_context(tiny):
    rows = [[5] * 10, [5] * 1023]
    labels = LabelTokens(("a", "bb"), ((40,), (41, 42)), "")
    with pytest.raises(DataError, match="prompt row 1 .* is 1023 tokens; with 2 label tokens .*context length 1024"):
        label_logprobs(tiny.hf_model, rows, labels, tiny.tokenizer.pad_token_id)
    with pytest.raises(DataError, match="prompt row 1 .* is 1023 tokens; with 24 new tokens"):
        generate(tiny.hf_model, tiny.tokenizer, rows)


# --------------------------------------------------------------------------- README examples, warnings, cache


def test_cli_release_without_n_takes_every_row(tiny, tmp_path, shared_data):
    src = shared_data / "test" / "animals_long_starts_with_vowel.jsonl"
    f = tmp_path / "test" / src.name
    f.parent.mkdir()
    f.write_text("".join(src.read_text().splitlines(keepends=True)[:3]))
    out = tmp_path / "o"
    r = runner.invoke(app, ["behave", "--model", "tiny-random", "--release", str(f), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["n_items"] == 3


def test_kv_reuse_passes_the_installed_cache_keyword(tiny):
    assert cache_kwarg(tiny.hf_model) in inspect.signature(tiny.hf_model.forward).parameters
    labels = LabelTokens(("a", "bb"), ((40,), (41, 42)), "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        label_logprobs(tiny.hf_model, [[5, 6, 7]], labels, tiny.tokenizer.pad_token_id)


def test_lora_wrap_has_no_gradient_checkpointing_warning(tiny):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lora_model(tiny, FinetuneConfig(rank=2))
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]


def test_tests_cache_is_temporary_but_models_are_shared():
    from conftest import SESSION_CACHE

    assert cache_root() == SESSION_CACHE
    assert cache_dir("merged").is_relative_to(SESSION_CACHE)
    assert not cache_dir("models").is_relative_to(SESSION_CACHE)
    assert cache_dir("models").parent == model_cache_root()


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="valid models: .*tiny-random"):
        load_model("gpt-7")
