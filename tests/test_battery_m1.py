"""M1 in the battery: trained once on train items only, cached, loaded by later contexts, run like M."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from innerprobe.study import m1_model
from innerprobe.study.battery import run_battery
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.m1_model import (
    M1_META,
    m1_dir,
    m1_info,
    m1_training_data,
    measured_questions,
    train_items,
)
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_patching import e4_patching_maps, e5_transplant

os.environ.setdefault("TQDM_DISABLE", "1")

CFG = BatteryConfig(model="tiny-random", task="colors", property="first_character", experiments=("E1", "E2"),
                    models=("M", "M1"), n_items=12, quick_n_items=12, patch_items=40, m1_steps=3,
                    m1_train_items=16, m1_lr=1e-2, n_boot=100, peer="tiny-random")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INNERPROBE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def trained(cache):
    """M1 trained through a first StepContext, with every ``finetune`` call counted."""
    calls: list[int] = []
    real = m1_model.finetune

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(m1_model, "finetune", counting)
        ctx = StepContext(CFG, 12, "M1")
        m1 = ctx.model
        yield m1, calls


def test_m1_is_trained_once_then_loaded_from_cache(trained, tiny) -> None:
    m1, calls = trained
    assert calls == [1]
    where = m1_dir(CFG, tiny)
    assert (where / M1_META).exists() and m1.fingerprint.source == str(where.resolve())
    assert m1.fingerprint.weights_sha256 != tiny.fingerprint.weights_sha256  # trained weights, not M's
    info = m1_info(where)
    assert info["steps"] == 3 and info["n_rows"] >= 1 and info["m1_digest"] == CFG.m1_digest()
    stamp = (where / M1_META).stat().st_mtime_ns
    again = StepContext(CFG, 12, "M1").model
    assert calls == [1]  # the second context trained nothing
    assert (where / M1_META).stat().st_mtime_ns == stamp
    assert again.fingerprint.weights_sha256 == m1.fingerprint.weights_sha256


def test_m1_cache_key_ignores_settings_training_does_not_read(tiny) -> None:
    other = replace(CFG, n_boot=200, experiments=("E1",))
    assert m1_dir(other, tiny) == m1_dir(CFG, tiny)
    retrain = replace(CFG, m1_steps=4)
    assert m1_dir(retrain, tiny) != m1_dir(CFG, tiny)


def test_m1_training_data_is_train_split_and_never_a_test_item(tiny) -> None:
    rows, items, dropped = m1_training_data(tiny, CFG)
    test = measured_questions(CFG)
    assert len(test) >= CFG.patch_items // 2
    assert not set(items["question"]) & test
    assert set(rows["item_id"]) <= set(items["id"])
    assert not any(q in prompt for prompt in rows["prompt"] for q in test)
    assert dropped == 0


def test_train_items_drop_any_question_shared_with_test(monkeypatch) -> None:
    first, _ = train_items(CFG)
    planted = set(first["question"][:3])
    monkeypatch.setattr(m1_model, "measured_questions", lambda config: planted)
    kept, dropped = train_items(CFG)
    assert dropped == 3 and len(kept) == len(first) - 3 and not set(kept["question"]) & planted


def test_battery_runs_every_step_for_m_and_m1(trained, tmp_path) -> None:
    _, calls = trained
    result = run_battery(CFG, tmp_path, quick=True)
    t = result.table
    assert set(t["model"]) == {"M", "M1"}
    for role in ("M", "M1"):
        e1 = t[(t.model == role) & (t.experiment == "E1")]
        assert len(e1) >= 1 and e1["effect"].notna().all()
        assert not t[t.model == role]["why"].str.contains("not wired").any()
    assert [v.model for v in result.summary.verdicts] == ["M", "M1"]
    assert calls == [1]  # the battery's M1 came from the cache


@pytest.mark.integration
@pytest.mark.slow
def test_m1_on_smollm2_trains_once_and_runs_e4_e5(smol, cache, tmp_path) -> None:
    """Real weights: a 2-step M1 is trained, cached and loaded by a fresh context; E4/E5 run on it."""
    cfg = BatteryConfig(models=("M", "M1"), m1_steps=2, m1_train_items=8, n_items=20, patch_pairs=3, patch_layers="::10",
                        patch_items=16, patch_p_tokens=2, patch_last=1, n_boot=100)
    m1 = m1_model.load_m1(cfg, smol)
    info = m1_info(m1_dir(cfg, smol))
    assert info["steps"] == 2 and info["n_rows"] >= 4 and info["first_loss"] > 0
    assert m1.fingerprint.weights_sha256 != smol.fingerprint.weights_sha256
    ctx = StepContext(cfg, 20, "M1", work_dir=tmp_path)
    assert ctx.model.fingerprint.weights_sha256 == m1.fingerprint.weights_sha256  # from the cache
    e4, e5 = e4_patching_maps(ctx), e5_transplant(ctx)
    assert e4[0].model == e5[0].model == "M1"
    assert e4[0].effect is not None and e4[0].effect.value > e4[0].control.value  # O and H maps share structure
    assert e5[0].effect is not None and e5[0].n >= 2
