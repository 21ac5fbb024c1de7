"""Directions and the steering experiment on the tiny model: no-ops, a planted toy, bad input, I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from steer_toys import own_answer_store, planted_store
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, StoreMismatchError, UnknownNameError
from innerprobe.core.result import Result
from innerprobe.interventions.directions import (
    Direction,
    Subspace,
    class_means,
    norm_matched,
    orthonormal_rows,
    projected_variance,
    random_subspace,
    store_class_means,
)
from innerprobe.interventions.edits import AddVector
from innerprobe.interventions.experiment import prepare_trials
from innerprobe.interventions.hooks import Intervention
from innerprobe.interventions.readout import choice_logprobs
from innerprobe.interventions.steering import SteeringConfig, SteeringResult, run_steering
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

PROP = get_property("second_character")


@pytest.fixture(scope="module")
def items():
    return load_items("animals", n=24, split="test")


@pytest.fixture(scope="module")
def planted(tiny, items):
    return planted_store(tiny, items, PROP)


@pytest.fixture(scope="module")
def steered(tiny, planted, items):
    cfg = SteeringConfig(layer=-1, h_positions=("last", "quote"), n_boot=200)
    return run_steering(tiny, planted, items, PROP, cfg)


# ------------------------------------------------------------------------------ directions


def test_class_means_and_difference_of_means_are_the_means():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0], [9.0, 9.0]])
    m = class_means(x, ["a", "a", "b", "b", None], layer=3, label_column="object_answer")
    assert m.classes == ("a", "b") and m.counts == (2, 2) and m.n == 4
    assert torch.allclose(m.means, torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    d = m.difference("b", "a")
    assert torch.allclose(d.vector, torch.tensor([-2.0, 3.0])) and d.label == "b-a" and d.n == 4
    assert d.layer == 3 and d.provenance["label_column"] == "object_answer"
    assert torch.allclose(m.mean("a").vector, torch.tensor([2.0, 0.0]) - torch.tensor([1.0, 1.5]))


def test_store_directions_record_the_store_and_read_only_the_o_run(planted):
    means = store_class_means(planted, [1], min_count=3)[1]
    assert planted.reads[-1] == ("object", "resid_post", "o_last")
    d = means.difference(means.classes[1], means.classes[0])
    assert d.record()["provenance"]["manifest_sha256"] == "planted"
    assert d.record()["provenance"]["weights_sha256"] == planted.manifest["model"]["weights_sha256"]


def test_norm_matched_random_has_the_norm_and_is_seeded():
    d = Direction(torch.arange(8.0), "diff_means", "x-y", 10)
    r1, r2, r3 = norm_matched(d, 1), norm_matched(d, 1), norm_matched(d, 2)
    assert r1.norm == pytest.approx(d.norm, rel=1e-6)
    assert torch.equal(r1.vector, r2.vector) and not torch.equal(r1.vector, r3.vector)
    assert abs(float(r1.vector @ d.vector)) < d.norm * r1.norm  # not the direction itself


def test_random_subspace_matches_the_variance_and_is_not_the_answer_subspace():
    g = torch.Generator().manual_seed(0)
    scales = torch.ones(32)
    scales[:4] = 10.0  # anisotropic: four outlier directions
    acts = torch.randn(400, 32, generator=g) * scales
    answer = orthonormal_rows(torch.eye(32)[[5, 6]] + 0.5 * torch.eye(32)[[0, 1]])
    target = projected_variance(acts, answer)
    r = random_subspace(2, 32, seed=3, acts=acts, target_variance=target)
    assert r.provenance["variance_ratio"] == pytest.approx(1.0, abs=0.02)
    overlap = torch.linalg.svdvals(r.basis @ answer.T)
    assert float(overlap.max()) < 0.9
    uniform = random_subspace(2, 32, seed=3)
    assert projected_variance(acts, uniform.basis) != pytest.approx(target, rel=0.02)


def test_random_subspace_outside_the_answer_shares_no_direction_with_it():
    g = torch.Generator().manual_seed(1)
    scales = torch.ones(16)
    scales[:6] = 10.0  # the answer code carries most of the variance, as in a tiny model
    acts = torch.randn(300, 16, generator=g) * scales
    answer = orthonormal_rows(torch.eye(16)[:6] + 0.1 * torch.randn(6, 16, generator=g))
    target = projected_variance(acts, answer)
    whole = random_subspace(6, 16, seed=0, acts=acts, target_variance=target)
    assert float(torch.linalg.svdvals(whole.basis @ answer.T).max()) > 0.9  # matched → overlaps the code
    out = random_subspace(6, 16, seed=0, acts=acts, target_variance=target, outside=answer)
    assert float((out.basis @ answer.T).abs().max()) < 1e-5 and out.provenance["outside_rank"] == 6
    assert torch.allclose(out.basis @ out.basis.T, torch.eye(6), atol=1e-5)
    assert out.provenance["variance_ratio"] < 0.2  # as close as the complement allows, and recorded
    with pytest.raises(DataError, match="does not fit outside a rank-6 subspace"):
        random_subspace(11, 16, seed=0, outside=answer)


def test_variance_matching_survives_a_rank_deficient_covariance():
    g = torch.Generator().manual_seed(2)
    acts = torch.randn(40, 16, generator=g)[:, :10] @ torch.randn(10, 16, generator=g)  # rank 10 of 16
    target = 0.5 * projected_variance(acts, torch.eye(16)[:12])
    r = random_subspace(12, 16, seed=0, acts=acts, target_variance=target)  # more rows than the rank of Σ
    assert r.basis.shape == (12, 16) and torch.allclose(r.basis @ r.basis.T, torch.eye(12), atol=1e-4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Direction(torch.full((4,), float("nan")), "diff_means", "x", 1), "non-finite"),
        (lambda: Direction(torch.ones(2, 4), "diff_means", "x", 1), "1-D"),
        (lambda: random_subspace(0, 8, seed=0), "rank 0 is not between 1 and d_model=8"),
        (lambda: random_subspace(9, 8, seed=0), "rank 9 is not between 1 and d_model=8"),
        (lambda: orthonormal_rows(torch.zeros(0, 8)), "rank 0"),
        (lambda: orthonormal_rows(torch.ones(2, 8)), "rank 1"),
        (lambda: Subspace(torch.zeros(9, 8), "answer"), "above d_model=8"),
        (lambda: class_means(torch.ones(3, 4), ["a", "a", "a"]), ">= 2 classes"),
        (lambda: class_means(torch.tensor([[float("nan")] * 2] * 2), ["a", "b"]), "non-finite rows"),
        (lambda: class_means(torch.ones(3, 4), ["a", "b"]), "3 activation rows but 2 labels"),
    ],
)
def test_bad_directions_name_the_problem(make, match):
    with pytest.raises(DataError, match=match):
        make()


def test_a_missing_label_column_or_class_names_the_valid_ones(planted):
    with pytest.raises(DataError, match="label columns: object_answer, object_compliant"):
        store_class_means(planted, [1], label_column="answer")
    means = store_class_means(planted, [1])[1]
    with pytest.raises(DataError, match="no class 'unicorn' among"):
        means.difference("unicorn", means.classes[0])


# ------------------------------------------------------------------------------ steering


def test_a_zero_vector_changes_no_reading_bit_exactly(tiny, items):
    trials = prepare_trials(tiny, items, PROP, PromptSpec(), [])
    for prompts, choice in ((trials.h_prompts, trials.properties), (trials.o_prompts, trials.objects)):
        base = choice_logprobs(tiny, prompts, choice, batch_size=8)
        iv = Intervention(AddVector(torch.zeros(tiny.d_model), 3.0), layers=(0, 1), positions="all")
        assert np.array_equal(base, choice_logprobs(tiny, prompts, choice, [iv], batch_size=8))


def test_planted_direction_moves_the_label_and_a_norm_matched_random_vector_does_not(steered):
    by = {e.condition: e for e in steered.summary.effects}
    for cond in ("h:last", "o:last"):
        e = by[cond]
        assert e.toward_direction.value >= 0.4 and e.toward_random.value <= 0.1, cond
        assert e.direction_vs_random.mcnemar_p < 0.01, cond
        assert e.shift_direction.ci_low > 2.0 and abs(e.shift_random.value) < 1.0, cond
    # at the last layer the quote's residual cannot reach h_last's logits: steering it moves nothing
    assert abs(by["h:quote"].shift_direction.value) < 1e-4
    random_norms = [r["norm"] for r in steered.directions if r["kind"] == "random"]
    diff_norms = {r["label"]: r["norm"] for r in steered.directions if r["kind"] == "diff_means"}
    assert min(random_norms) == pytest.approx(min(diff_norms.values()), rel=1e-4)


def test_behaviour_shift_tracks_only_where_h_is_steered(steered):
    by = {t.predictor: t for t in steered.summary.tracking}
    assert by["h:unsteered"].n_changed > 5
    assert by["h:last"].new_minus_old.diff.value > 0.2 and by["h:last"].new_minus_old.mcnemar_p < 0.05
    assert by["h:unsteered"].new_minus_old.diff.value <= 0.0


def test_steering_result_round_trips(steered, tmp_path):
    steered.save(tmp_path / "s")
    back = Result.load(tmp_path / "s")
    assert isinstance(back, SteeringResult)
    assert back.summary == steered.summary
    assert back.table.equals(steered.table) and back.tracking.equals(steered.tracking)
    assert back.figure().data


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"site": "resid_side"}, UnknownNameError, "valid sites"),
        ({"scale": float("nan")}, DataError, "finite non-zero"),
        ({"scale": 0.0}, DataError, "finite non-zero"),
        ({"h_positions": ("middle",)}, UnknownNameError, "valid positions: after_quote, all, before_prefill"),
        ({"batch_size": 0}, DataError, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_steering_config_names_the_valid_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        SteeringConfig(**kwargs)


def test_a_store_of_other_weights_or_width_is_refused(tiny, planted, items):
    other = planted_store(tiny, items, PROP)
    other.manifest["model"]["weights_sha256"] = "0" * 64
    with pytest.raises(StoreMismatchError, match="captured from other weights"):
        run_steering(tiny, other, items, PROP)
    with pytest.raises(DataError, match="outside the model's layers 0..1"):
        run_steering(tiny, planted, items, PROP, SteeringConfig(layer=5))
    with pytest.raises(DataError, match="per-item labels"):
        run_steering(tiny, planted, items, "first_word")


def test_steer_cli_writes_a_loadable_result(tiny, tmp_path):
    store = own_answer_store(tiny, tmp_path / "store")
    out = tmp_path / "steer"
    r = CliRunner().invoke(app, ["steer", "--store", str(store.path), "--model", "tiny-random", "--n", "16",
                                 "--layer", "-1", "--h-positions", "last", "--n-boot", "50", "--out", str(out)])
    assert r.exit_code == 0, r.output
    back = Result.load(out)
    assert isinstance(back, SteeringResult) and back.summary.n_items == 16
    assert [e.condition for e in back.summary.effects] == ["h:last", "o:last"]
    assert "steering at layer 1" in r.output and (out / "figure.html").exists()
    bad = CliRunner().invoke(app, ["steer", "--store", str(tmp_path / "nowhere"), "--model", "tiny-random",
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "not an activation store" in bad.output
