"""Self-training rounds on the tiny model: equals one finetune, resumes exactly, policies' data."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from innerprobe.behavior import elicit_object, predict, property_labels
from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.models.load import load_model
from innerprobe.protocol.properties import get_property
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.data import (
    build_training_data,
    data_hash,
    load_training_data,
    property_values,
)
from innerprobe.training.finetune import finetune
from innerprobe.training.ground_truth import questions, read_answer
from innerprobe.training.policies import behaviour_config, policy_data
from innerprobe.training.rounds import eval_items, round_dir, round_items, run_self_training
from innerprobe.training.rounds_config import CROSS_PREDICTORS, POLICIES, SelfTrainConfig
from innerprobe.training.rounds_cross import cross_items
from innerprobe.training.rounds_measure import measure_model
from innerprobe.training.rounds_result import SelfTrainResult

TASK, PROP = "colors", "starts_with_vowel"  # the tiny model's self-report agrees on ~half the items
FT = FinetuneConfig(rank=4, alpha=8, lr=1e-2, epochs=2, batch_size=4, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _config(**kw) -> SelfTrainConfig:
    base = dict(rounds=2, policy="self_prediction", tasks=(TASK,), properties=(PROP,), n_items=10, finetune=FT,
                n_eval=12, n_ground_truth=4)
    return SelfTrainConfig(**{**base, **kw})


def _adapter_hash(path) -> str:
    w = load_file(str(path / "adapter_model.safetensors"))
    h = hashlib.sha256()
    for k in sorted(w):
        h.update(k.encode() + w[k].numpy().tobytes())
    return h.hexdigest()


def test_bad_policy_lists_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        _config(policy="self_distill")
    for name in POLICIES:
        assert name in str(e.value)
    with pytest.raises(DataError, match="rounds"):
        _config(rounds=0)
    with pytest.raises(DataError, match="heldout_fraction"):
        _config(heldout_fraction=0.9)
    with pytest.raises(UnknownNameError) as e:
        _config(cross="peer")
    assert all(name in str(e.value) for name in CROSS_PREDICTORS)


def test_rounds_use_fresh_disjoint_seeded_items():
    cfg = _config(rounds=3)
    ids = [set(round_items(cfg, r)[0]["id"]) for r in (1, 2, 3)]
    assert all(len(s) == 10 for s in ids)
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    assert ids[0] == set(round_items(cfg, 1)[0]["id"])


def test_one_round_equals_single_finetune(tiny, tmp_path):
    cfg = _config(rounds=1, patience=None, n_ground_truth=0)
    run_self_training(tiny, cfg, tmp_path / "loop")
    items = round_items(cfg, 1)
    direct = build_training_data(tiny, items, [PROP], seed=cfg.seed, batch_size=cfg.batch_size)
    looped = load_training_data(tmp_path / "loop" / "round_1" / "data" / "train.parquet")
    assert data_hash(looped) == data_hash(direct) and len(looped) == len(direct) > 0
    res = finetune(tiny, direct, tmp_path / "single", FT)
    a = load_file(str(tmp_path / "loop" / "round_1" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(res.out_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_trained_cross_predictor_learns_m1_behaviour_on_round_2_items(tiny, tmp_path):
    """Round 1's cross-predictor: the base finetuned on M_1's own answers to round 2's fresh items."""
    cfg = _config(rounds=1, patience=None, n_ground_truth=0)
    run_self_training(tiny, cfg, tmp_path / "loop")
    items = cross_items(cfg, 1)
    assert items[0]["id"] == round_items(_config(rounds=2), 2)[0]["id"]  # the next round's items, not eval items
    m1 = load_model(round_dir(tmp_path / "loop", 1) / "adapter", device="cpu")
    own = build_training_data(m1, items, [PROP], seed=cfg.seed, batch_size=cfg.batch_size)
    cross = load_training_data(round_dir(tmp_path / "loop", 1) / "cross" / "data" / "train.parquet")
    assert data_hash(cross) == data_hash(own) and len(cross) > 0  # M_1's behaviour, not M_0's
    assert data_hash(cross) != data_hash(build_training_data(tiny, items, [PROP], seed=cfg.seed, batch_size=cfg.batch_size))
    direct = finetune(tiny, own, tmp_path / "peer", FT)  # the peer is the base model M_0
    assert _adapter_hash(round_dir(tmp_path / "loop", 1) / "cross" / "adapter") == _adapter_hash(direct.out_dir)
    per_item = pd.read_parquet(round_dir(tmp_path / "loop", 1) / "measure" / "items.parquet")
    cross_model = load_model(round_dir(tmp_path / "loop", 1) / "cross" / "adapter", device="cpu")
    pred = predict(cross_model, eval_items(cfg)[0], get_property(PROP),
                   sorted(set(per_item["prediction_clean"].dropna()) | set(per_item["object_value"].dropna())),
                   behaviour_config(16, 0))
    scored = per_item["scored"].to_numpy(bool)
    assert list(per_item["cross_prediction_clean"][scored]) == [p for p, s in zip(pred.cleaned, scored) if s]


def test_untrained_cross_predictor_is_the_base_model(tiny, tmp_path):
    cfg = _config(rounds=1, patience=None, n_ground_truth=0, cross="untrained")
    res = run_self_training(tiny, cfg, tmp_path / "u")
    assert not (round_dir(tmp_path / "u", 1) / "cross").exists()
    assert "cross_accuracy" in set(res.table.loc[res.table["round"] == 1, "measure"])
    assert "untrained" in (tmp_path / "u" / "report.html").read_text()


def test_killed_and_resumed_loop_equals_uninterrupted(tiny, tmp_path):
    cfg = _config(policy="self_filtered", patience=1)
    full = run_self_training(tiny, cfg, tmp_path / "full")

    def kill_after_round_2_adapter(stage: str, total: int):
        if stage == "round 2 · adapter saved":
            raise KeyboardInterrupt(stage)
        return lambda n: None

    with pytest.raises(KeyboardInterrupt):
        run_self_training(tiny, cfg, tmp_path / "killed", progress=kill_after_round_2_adapter)
    assert (tmp_path / "killed" / "round_2" / "adapter" / "trained.json").exists()
    assert not (tmp_path / "killed" / "round_2" / "measure").exists()
    assert not (tmp_path / "killed" / "round_2" / "cross").exists()
    seen: list[str] = []
    resumed = run_self_training(tiny, cfg, tmp_path / "killed", progress=lambda s, t: seen.append(s) or (lambda n: None))
    assert seen[-2:] == ["round 2 · cross saved", "round 2 · measured"]  # only the missing steps ran again
    assert not any("data saved" in x or "adapter saved" in x for x in seen)
    pd.testing.assert_frame_equal(full.table, resumed.table)
    for r in (1, 2):
        for sub in ("adapter", "cross/adapter"):
            assert _adapter_hash(tmp_path / "full" / f"round_{r}" / sub) == _adapter_hash(tmp_path / "killed" / f"round_{r}" / sub)
    # the table has every round and the measures with intervals
    t = full.table
    assert sorted(t["round"].unique()) == [0, 1, 2]
    assert {"self_accuracy", "mode_baseline", "cross_accuracy", "text_only", "changed_share", "gt_accuracy"} <= set(t["measure"])
    assert (t.loc[t["round"] == 0, "measure"] != "cross_accuracy").all()
    drift0 = t[(t["round"] == 0) & (t["measure"] == "changed_share")]["value"]
    assert drift0.tolist() == [0.0]
    assert full.summary.rounds_done == 2
    assert len(full.figure().data) > 0
    loaded = SelfTrainResult.load(tmp_path / "full" / "result")
    pd.testing.assert_frame_equal(loaded.table, full.table)
    assert "innerprobe-data" in (tmp_path / "full" / "report.html").read_text()


def test_rerun_with_another_config_is_refused(tiny, tmp_path):
    cfg = _config(rounds=1, patience=None, n_ground_truth=0, n_eval=6)
    run_self_training(tiny, cfg, tmp_path / "r")
    with pytest.raises(DataError, match="another config"):
        run_self_training(tiny, _config(rounds=1, patience=None, n_ground_truth=0, n_eval=6, seed=1), tmp_path / "r")


@pytest.fixture(scope="module")
def round_items_1():
    return round_items(_config(n_items=16), 1)


def test_self_prediction_policy_targets_own_behaviour(tiny, round_items_1):
    data = policy_data("self_prediction", tiny, round_items_1, [PROP], 3)
    prop, cfg = get_property(PROP), behaviour_config(16, 0)
    items = round_items_1[0]
    obj = elicit_object(tiny, items, prop, cfg)
    own = dict(zip(items["id"], property_values(obj.responses, items, prop, cfg.spec, obj.skipped_too_long)))
    assert set(data["level"]) == {"hypothetical"} and set(data["policy"]) == {"self_prediction"} and set(data["round"]) == {3}
    for r in data:
        assert r["completion"] == own[r["item_id"]]
        assert "Previously, you were asked" in r["prompt"]


def test_self_filtered_policy_keeps_only_agreeing_items(tiny, round_items_1):
    data = policy_data("self_filtered", tiny, round_items_1, [PROP], 1)
    prop, cfg = get_property(PROP), behaviour_config(16, 0)
    items = round_items_1[0]
    obj = elicit_object(tiny, items, prop, cfg)
    values = property_values(obj.responses, items, prop, cfg.spec, obj.skipped_too_long)
    pred = predict(tiny, items, prop, property_labels(prop, items, values), cfg)
    agree = {i for i, v, p in zip(items["id"], values, pred.cleaned) if v is not None and v == p}
    assert 0 < len(agree) < len(items)  # the filter filters
    hyp = [r for r in data if r["level"] == "hypothetical"]
    objs = [r for r in data if r["level"] == "object"]
    assert {r["item_id"] for r in hyp} == {r["item_id"] for r in objs} == agree
    cleaned = dict(zip(items["id"], obj.cleaned))
    for r in objs:
        assert r["completion"] == cleaned[r["item_id"]] and "Previously" not in r["prompt"]
    own = dict(zip(items["id"], values))
    assert all(r["completion"] == own[r["item_id"]] for r in hyp)
    assert set(data["policy"]) == {"self_filtered"}


def test_object_only_policy_has_no_hypotheticals(tiny, round_items_1):
    data = policy_data("object_only", tiny, round_items_1, [PROP], 2)
    items = round_items_1[0]
    obj = elicit_object(tiny, items, get_property(PROP), behaviour_config(16, 0))
    cleaned = dict(zip(items["id"], obj.cleaned))
    assert set(data["level"]) == {"object"} and set(data["round"]) == {2}
    assert len(data) == sum(bool(c) and ok for c, ok in zip(obj.cleaned, obj.compliant))
    for r in data:
        assert r["completion"] == cleaned[r["item_id"]] and "Previously" not in r["prompt"]


def test_ground_truth_questions_are_seeded_and_checked():
    qs = questions("addition", 5, seed=2)
    assert qs == questions("addition", 5, seed=2) and qs != questions("addition", 5, seed=3)
    a, b = map(int, qs[0].question.split("What is ")[1].split("?")[0].split(" + "))
    assert qs[0].answer == str(a + b)
    assert read_answer("addition", f"The answer is {a + b}.") == qs[0].answer
    assert read_answer("addition", f"{a} + {b} = {a + b}") == qs[0].answer
    assert read_answer("parity", "It is Odd") == "odd" and read_answer("parity", "no idea") is None


def test_cli_selftrain_runs_one_round_and_rejects_bad_policy(tiny, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["selftrain", "--model", "tiny-random", "--rounds", "1", "--task", TASK, "--property", PROP, "--n", "8",
            "--n-eval", "8", "--n-ground-truth", "2", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(out)]
    r = runner.invoke(app, args + ["--policy", "object_only"])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").exists() and (out / "round_1" / "adapter" / "adapter_model.safetensors").exists()
    assert set(SelfTrainResult.load(out / "result").table["round"]) == {0, 1}
    bad = runner.invoke(app, args[:-1] + [str(tmp_path / "bad"), "--policy", "distill"])
    assert bad.exit_code == 2 and "self_filtered" in bad.output


@pytest.mark.integration
@pytest.mark.slow
def test_smol_one_round_self_prediction(smol, tmp_path):
    cfg = SelfTrainConfig(rounds=1, tasks=("animals",), properties=("second_character",), n_items=8, n_eval=8,
                          n_ground_truth=4, finetune=FinetuneConfig(rank=4, alpha=8, lr=1e-3, epochs=2, batch_size=4))
    res = run_self_training(smol, cfg, tmp_path / "smol")
    t = res.table
    assert sorted(t["round"].unique()) == [0, 1]
    acc = t[(t["measure"] == "self_accuracy")]
    assert acc["n"].min() > 0 and acc["value"].between(0, 1).all()
    assert res.rounds.loc[res.rounds["round"] == 1, "n_train_rows"].iloc[0] > 0


def test_a_model_with_no_compliant_answer_is_measured_not_fatal(tiny):
    """The tiny model never answers the numbers task compliantly: a collapsed round, recorded as such."""
    items = round_items(_config(tasks=("numbers",), properties=("is_even",), n_items=6), 1)
    measures, per_item, gt = measure_model(tiny, None, items, ["is_even"], behaviour_config(16, 0), 2, None)
    row = measures.set_index("measure").loc["object_compliance"]
    assert row["value"] == 0.0 and row["n"] == 6 and row["round"] == 2
    assert "self_accuracy" not in set(measures["measure"]) and per_item.empty and gt.empty
