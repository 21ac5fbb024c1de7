"""The ablation experiment on the tiny model: the identity arm, a real answer code, bad input, I/O."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from steer_toys import own_answer_store
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.result import Result
from innerprobe.interventions.ablation import (
    INPUT_CONTROL,
    AblationConfig,
    AblationResult,
    _centres,
    run_ablation,
)
from innerprobe.interventions.directions import orthonormal_rows, outside_span, store_class_means
from innerprobe.interventions.experiment import prepare_trials
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

PROP = get_property("second_character")


@pytest.fixture(scope="module")
def test_items():
    return load_items("animals", n=24, split="test")


@pytest.fixture(scope="module")
def own_store(tiny, tmp_path_factory):
    store = own_answer_store(tiny, tmp_path_factory.mktemp("abl") / "store")
    assert len([c for c, k in Counter(store.rows["object_answer"]).items() if k >= 2]) >= 4
    return store


@pytest.fixture(scope="module")
def ablated(tiny, own_store, test_items):
    return run_ablation(tiny, own_store, test_items, PROP, AblationConfig(layer=-1, n_boot=200, min_count=2))


def test_rank_zero_ablation_changes_nothing_bit_exactly(tiny, own_store, test_items):
    r = run_ablation(tiny, own_store, test_items, PROP, AblationConfig(layer=0, k=0, n_boot=50, min_count=2))
    t = r.table
    none = t[t["arm"] == "none"].set_index(["reading", "id"])
    for (arm, mode), part in t[t["arm"] != "none"].groupby(["arm", "mode"]):
        part = part.set_index(["reading", "id"]).loc[none.index]
        assert np.array_equal(part["logp_truth"].to_numpy(), none["logp_truth"].to_numpy()), (arm, mode)
        assert (part["dlogp"] == 0).all()
    assert r.summary.rank == 0 and not r.subspaces[0]["rank"]


def test_answer_subspace_ablation_breaks_the_object_answer_more_than_a_matched_random_one(ablated):
    by = {(e.reading, e.mode): e for e in ablated.summary.effects}
    for mode in ("zero", "mean"):
        e = by[("object", mode)]
        assert e.unablated.value == 1.0  # the truth of O is its own unablated answer
        assert e.answer.value < e.unablated.value - 0.4
        assert e.dlogp_answer.value < e.dlogp_random.value - 0.5, mode
    e = by[("object", "zero")]
    assert e.answer_vs_random.diff.ci_high < 0 and e.answer_vs_random.mcnemar_p < 0.05
    # the random control is drawn outside the answer subspace, matched in variance as far as that allows
    randoms = [s for s in ablated.subspaces if s["kind"] == "random"]
    assert randoms and all(s["provenance"]["outside_rank"] == s["rank"] for s in randoms)
    assert all(r <= 1.02 for r in ablated.summary.variance_ratio)
    assert ablated.summary.mode_baseline is not None
    assert {e.reading for e in ablated.summary.effects} == {"hypothetical", "object", "control"}


def test_a_whole_space_random_control_matches_the_variance(tiny, own_store, test_items):
    r = run_ablation(tiny, own_store, test_items, PROP,
                     AblationConfig(layer=-1, n_boot=50, min_count=2, modes=("zero",), random_outside=False))
    assert all(v == pytest.approx(1.0, abs=0.02) for v in r.summary.variance_ratio)
    assert not any("outside_rank" in s["provenance"] for s in r.subspaces if s["kind"] == "random")


def test_the_control_question_needs_no_answer(tiny, test_items):
    trials = prepare_trials(tiny, test_items, INPUT_CONTROL, PromptSpec(), [])
    assert 'last word in the text of that question' in trials.h_prompts[0].text
    assert INPUT_CONTROL.extract("cat dog zebra") == "z"


def test_ablation_result_round_trips(ablated, tmp_path):
    ablated.save(tmp_path / "a")
    back = Result.load(tmp_path / "a")
    assert isinstance(back, AblationResult)
    assert back.summary == ablated.summary and back.table.equals(ablated.table)
    assert back.figure().data


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"modes": ("zero", "half")}, UnknownNameError, "valid ablation modes: mean, zero"),
        ({"modes": ()}, DataError, "valid modes: zero, mean"),
        ({"k": -1}, DataError, "k must be an integer >= 0"),
        ({"site": "hook_resid"}, UnknownNameError, "valid sites"),
        ({"h_position": "nowhere"}, UnknownNameError, "quote_onward"),
    ],
)
def test_bad_ablation_config_names_the_valid_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        AblationConfig(**kwargs)


def test_a_rank_above_the_classes_is_refused(tiny, own_store, test_items):
    with pytest.raises(DataError, match=r"k=500 needs 501 classes"):
        run_ablation(tiny, own_store, test_items, PROP, AblationConfig(layer=-1, k=500, min_count=2))


def test_ablate_cli_writes_a_loadable_result(own_store, tmp_path):
    out = tmp_path / "ablate"
    r = CliRunner().invoke(app, ["ablate", "--store", str(own_store.path), "--model", "tiny-random", "--n", "12",
                                 "--layer", "-1", "--modes", "zero", "--n-boot", "50", "--out", str(out)])
    assert r.exit_code == 0, r.output
    back = Result.load(out)
    assert isinstance(back, AblationResult) and back.summary.n_items == 12
    assert {e.mode for e in back.summary.effects} == {"zero"}
    assert (out / "table.parquet").exists() and (out / "figure.html").exists()
    bad = CliRunner().invoke(app, ["ablate", "--store", str(own_store.path), "--model", "tiny-random",
                                   "--modes", "half", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "valid ablation modes: mean, zero" in bad.output


def test_mean_mode_restores_h_to_the_h_run_mean(tiny, own_store, tmp_path):
    """In H the mean ablation recentres on the H runs' own mean, not O's (an O mean would push H
    toward O's distribution); a store without H runs falls back to O's mean and says so."""
    layers = [0, 1]
    means = store_class_means(own_store, layers, min_count=2)
    centres, source = _centres(own_store, means, "resid_post")
    assert source.startswith("object_mean")
    assert all(torch.equal(centres[layer], means[layer].grand_mean) for layer in layers)

    with_h = own_answer_store(tiny, tmp_path / "store_h", n=40, hypothetical_positions=("h_last",))
    means_h = store_class_means(with_h, layers, min_count=2)
    centres_h, source_h = _centres(with_h, means_h, "resid_post")
    assert source_h == "hypothetical_mean@h_last"
    h_acts = with_h.read("hypothetical", "resid_post", "h_last", layers=layers)
    for i, layer in enumerate(layers):
        assert torch.allclose(centres_h[layer], h_acts[:, i].mean(0))
        assert not torch.allclose(centres_h[layer], means_h[layer].grand_mean, atol=1e-3)
    r = run_ablation(tiny, with_h, load_items("animals", n=10, split="test"), PROP,
                     AblationConfig(layer=-1, modes=("mean",), n_boot=50, min_count=2, control=False))
    assert r.summary.mean_source == {"object": "object_mean", "hypothetical": "hypothetical_mean@h_last",
                                     "control": "hypothetical_mean@h_last"}


def test_outside_span_keeps_what_lies_outside_the_spared_span():
    g = torch.Generator().manual_seed(0)
    basis = orthonormal_rows(torch.randn(6, 20, generator=g, dtype=torch.float64))
    spared = orthonormal_rows(torch.randn(2, 6, generator=g, dtype=torch.float64) @ basis)  # inside span(basis)
    rest = outside_span(basis, spared)
    assert rest.shape == (4, 20)
    torch.testing.assert_close(rest @ rest.T, torch.eye(4, dtype=torch.float64))
    assert float((rest @ spared.T).abs().max()) < 1e-10  # nothing of the spared span is left
    torch.testing.assert_close(rest @ basis.T @ basis, rest)  # and nothing outside the basis is added
    assert outside_span(basis, basis).shape[0] == 0


def test_ablation_sparing_the_property_removes_a_lower_rank_answer_identity(tiny, test_items, tmp_path):
    store = own_answer_store(tiny, tmp_path / "store", with_property=True)
    cfg = AblationConfig(layer=-1, n_boot=50, min_count=2, modes=("zero",), spare="answer_property")
    r = run_ablation(tiny, store, test_items, PROP, cfg)
    answer = [s for s in r.subspaces if s["kind"] == "answer"]
    random = [s for s in r.subspaces if s["kind"] == "random"]
    full = store_class_means(store, [tiny.n_layers - 1], min_count=2)[tiny.n_layers - 1]
    prop = store_class_means(store, [tiny.n_layers - 1], label_column="answer_property", min_count=2)[tiny.n_layers - 1]
    assert answer[0]["provenance"]["spared"] == "answer_property"
    assert answer[0]["rank"] == len(full.classes) - len(prop.classes)  # property means are averages of answer means
    assert [s["rank"] for s in random] == [s["rank"] for s in answer] and r.summary.rank == answer[0]["rank"]
    with pytest.raises(DataError, match="object_answer"):
        run_ablation(tiny, store, test_items, PROP, AblationConfig(layer=-1, n_boot=50, min_count=2, spare="colour"))
