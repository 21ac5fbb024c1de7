"""The patching study in one call, on a bridge and items the caller built themselves."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from datasets import Dataset

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.stats import Estimate
from innerprobe.patching import (
    PatchResult,
    PatchStudyConfig,
    PatchStudyResult,
    patch_grid,
    run_patching_study,
)
from innerprobe.patching.cells import cell_names, grid_cells
from innerprobe.protocol.tasks import items_digest, load_items

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def study(tiny):
    items = Dataset.from_list(load_items("animals", n=40, split="test", seed=0).to_list())
    other = load_items("colors", n=4, split="test", seed=0).to_list()  # a list of dicts
    cfg = PatchStudyConfig(n_pairs=3, n_controls=2, n_items=40, min_gap=-1e9, n_boot=50, p_tokens=2, last=2)
    return items, run_patching_study(tiny.bridge, items, "second_character", cfg, other_items=other)


def test_study_runs_on_own_bridge_and_dataset(study):
    items, res = study
    s = res.summary
    assert s.n_pairs == 3 and s.n_controls == 2 and s.task == "animals"
    assert set(res.maps()) == {"o_map", "h_map", "o_map_controls"}
    assert res.h_map.patched.shape == (3, 2, len(cell_names(2, 2)))
    assert isinstance(s.h_map_best, Estimate) and isinstance(s.transplant_donor, Estimate)
    assert res.provenance["items_digest"] == items_digest(items) and res.provenance["items_source"] == "Dataset"
    assert isinstance(res.figure(), go.Figure)
    assert set(res.table["map"]) == {"o_map", "h_map", "o_map_controls"}


def test_study_maps_are_the_grids_patch_grid_computes(study, tiny):
    _, res = study
    pairs, toks = res.pairs.h_inputs()
    cells = [[tuple(c) for c in _h_cells(p, res.config)] for p in res.pairs.pairs]
    direct = patch_grid(tiny, pairs, toks, cells=cells, cell_labels=cell_names(2, 2), n_boot=50)
    np.testing.assert_allclose(direct.patched, res.h_map.patched, atol=1e-6)


def _h_cells(p, config):
    return grid_cells(p.h_span, p.h_a.positions["quote_end"], len(p.h_a), config.p_tokens, config.last)


def test_study_round_trips_through_disk(study, tmp_path):
    _, res = study
    back = PatchStudyResult.load(res.save(tmp_path / "study"))
    pd.testing.assert_frame_equal(back.table, res.table)
    assert isinstance(back.h_map, PatchResult) and back.summary.h_map_best == res.summary.h_map_best
    for name in ("o_map.parquet", "h_map.parquet", "transplant.parquet", "pairs.parquet", "summary.json", "o_vs_h.html"):
        assert (tmp_path / "study" / name).exists(), name
    with pytest.raises(DataError, match="not a PatchStudyResult"):
        PatchStudyResult.load(tmp_path / "study" / "h_map")


def test_study_config_names_bad_values():
    with pytest.raises(UnknownNameError, match="resid_pre"):
        PatchStudyConfig(site="resid_middle")
    with pytest.raises(DataError, match="n_pairs"):
        PatchStudyConfig(n_pairs=0)
    with pytest.raises(DataError, match="layers|slice"):
        PatchStudyConfig(layers="0:x")
