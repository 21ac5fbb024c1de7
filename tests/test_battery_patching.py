"""Battery adapters E4 (O vs H patching maps) and E5 (O→H transplant): synthetic maps, tiny model, SmolLM2."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from innerprobe.core.errors import DataError
from innerprobe.core.stats import Estimate
from innerprobe.patching import PatchStudyConfig
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.decision import read_rows
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_patching import (
    STUDY,
    e4_patching_maps,
    e5_transplant,
    late_layers,
    map_similarity,
    patching_study,
)

os.environ.setdefault("TQDM_DISABLE", "1")


def _maps(seed: int, n: int = 24, layers: int = 6, cells: int = 5, noise: float = 0.1) -> np.ndarray:
    """A map where information moves from the word (cell 0) to the last cell with depth, plus noise."""
    rng = np.random.default_rng(seed)
    base = np.zeros((layers, cells))
    for layer in range(layers):
        base[layer, min(cells - 1, layer * cells // layers)] = 1.0
    return base[None] + noise * rng.standard_normal((n, layers, cells))


def test_map_similarity_finds_mirrored_maps_above_the_permutation_null() -> None:
    effect, control = map_similarity(_maps(0), _maps(1), n_boot=200, seed=0)
    assert effect.value > 0.9 and effect.ci_low > control.ci_high
    assert effect.n == 24 and control.n == 24


def test_map_similarity_of_unrelated_maps_is_not_above_null() -> None:
    rng = np.random.default_rng(0)
    o = rng.standard_normal((24, 6, 5))
    h = rng.standard_normal((24, 6, 5))
    effect, control = map_similarity(o, h, n_boot=200, seed=0)
    assert effect.ci_low < control.ci_high
    assert abs(effect.value) < 0.5


def test_map_similarity_skips_pairs_without_recovery_and_rejects_constant_maps() -> None:
    o, h = _maps(0, n=10), _maps(1, n=10)
    o[3] = np.nan
    effect, _ = map_similarity(o, h, n_boot=100)
    assert effect.n == 9
    assert map_similarity(np.ones((5, 3, 3)), _maps(2, n=5, layers=3, cells=3), n_boot=50) is None


def test_late_layers_skips_the_embedding_layers() -> None:
    assert late_layers([0, 3, 6, 9, 12, 15, 18, 21, 24, 27], 30, 0.33) == [4, 5, 6, 7, 8, 9]
    assert late_layers([0], 2, 0.33) == [0]  # none deep enough: the deepest patched layer


@pytest.fixture(scope="module")
def tiny_ctx(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = BatteryConfig(model="tiny-random", patch_pairs=4, patch_items=40, patch_layers="all", patch_p_tokens=2,
                        patch_last=2, patch_min_gap=-1e9, n_boot=100)
    return StepContext(cfg, 12, "M", work_dir=tmp_path_factory.mktemp("work"))


def test_e4_e5_rows_on_tiny_model_are_well_formed(tiny_ctx) -> None:
    e4 = e4_patching_maps(tiny_ctx)
    e5 = e5_transplant(tiny_ctx)
    assert [r.experiment for r in e4] == ["E4"] and [r.experiment for r in e5] == ["E5"] * 6
    for row in e4 + e5:
        assert isinstance(row.effect, Estimate) and np.isfinite(row.effect.value)
        assert row.effect.ci_low <= row.effect.value <= row.effect.ci_high
        assert row.n == 4 and row.model == "M"
    assert isinstance(e4[0].control, Estimate) and e4[0].unit == "recovery" and -1 <= e4[0].effect.value <= 1
    assert [r.primary for r in e5] == [True] + [False] * 5 and all(r.unit == "logits" for r in e5)
    assert "o_last → h_last" in e5[0].name and e5[0].sub == "O->H transplant vs other task"
    assert "word + P end" in e5[3].name and e5[3].sub.endswith("(word)")
    # the tiny model's 4 pairs are below min_n: read, but inconclusive, and saying why
    assert all("below min_n" in r.why for r in read_rows(e4 + e5))


def test_patching_study_is_run_once_and_reloaded_from_the_work_dir(tiny_ctx) -> None:
    first = patching_study(tiny_ctx)
    assert (tiny_ctx.work_dir / STUDY / "result.json").exists()
    # maps at every patched layer, the transplant only where E5 reads it (>= 1/3 of 2 layers)
    assert first.h_map.layers == [0, 1] and first.transplant.layers == [1]
    assert first.o_map.site == "resid_post" and first.h_atp is None
    fresh = StepContext(tiny_ctx.config, 12, "M", work_dir=tiny_ctx.work_dir)
    again = patching_study(fresh)
    assert fresh._model is None  # loaded from disk: the model was never needed
    np.testing.assert_allclose(again.h_map.recovery, first.h_map.recovery)


def test_patch_config_checks_its_new_knobs() -> None:
    with pytest.raises(DataError, match="greedy_max_new_tokens"):
        PatchStudyConfig(greedy_max_new_tokens=0)
    with pytest.raises(DataError, match="layers"):
        PatchStudyConfig(transplant_layers="1:x")


def test_no_pairs_is_an_explicit_not_run_row(tmp_path) -> None:
    cfg = BatteryConfig(model="tiny-random", patch_pairs=2, patch_items=4, patch_min_gap=1e9, n_boot=100)
    ctx = StepContext(cfg, 12, "M", work_dir=tmp_path)
    for row in e4_patching_maps(ctx) + e5_transplant(ctx):
        assert row.effect is None and "could not run" in row.why
