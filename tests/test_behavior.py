"""Behaviour, forced-choice/free self-prediction, cross-prediction and batching parity."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from innerprobe.behavior import elicitation, inference
from innerprobe.behavior.config import (
    TASK_DEFAULT,
    BehaviorConfig,
    config_record,
    object_settings,
)
from innerprobe.behavior.elicitation import per_budget
from innerprobe.behavior.inference import (
    continuation_logprobs,
    generate,
    label_distribution,
    label_logprobs,
    left_pad,
    next_token_logprobs,
)
from innerprobe.behavior.labels import property_labels
from innerprobe.behavior.prediction import Predictions, score
from innerprobe.behavior.result import BehaviorResult, BehaviorSummary
from innerprobe.behavior.run import behave
from innerprobe.core.errors import DataError, NotApplicableError, UnknownNameError
from innerprobe.protocol.prompts import LabelTokens, PromptSpec, label_tokens, object_prompt
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import items_digest, load_items, load_release


@pytest.fixture(scope="module")
def items():
    return load_items("animals", n=12, split="test", seed=0)


def test_left_padding_matches_single_rows(tiny, items):
    """A padded batch gives the same next-token distribution as each row alone."""
    rows = [object_prompt(tiny.tokenizer, q).input_ids for q in items["question"][:5]]
    rows[0] = rows[0][:-7]  # make lengths differ
    batched = next_token_logprobs(tiny.hf_model, rows, tiny.tokenizer.pad_token_id, batch_size=5)
    single = torch.cat(
        [next_token_logprobs(tiny.hf_model, [r], tiny.tokenizer.pad_token_id) for r in rows]
    )
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)


def test_left_pad_shapes():
    ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_batched_generation_equals_one_by_one(tiny, items):
    rows = [object_prompt(tiny.tokenizer, q).input_ids for q in items["question"][:4]]
    rows[1] = rows[1][:-5]
    together = generate(tiny.hf_model, tiny.tokenizer, rows, max_new_tokens=6, batch_size=4)
    alone = [generate(tiny.hf_model, tiny.tokenizer, [r], max_new_tokens=6)[0] for r in rows]
    assert together == alone


def test_sequence_mode_scoring_agrees_with_first_token(tiny, items):
    """Multi-token label scoring reduces to first-token scoring for single-token labels."""
    tok = tiny.tokenizer
    rows = [object_prompt(tok, q).input_ids for q in items["question"][:3]]
    text = object_prompt(tok, items["question"][0]).text
    lt = label_tokens(tok, list("abcde"), text, "Answer:")
    assert lt.mode == "first_token"
    p1, _ = label_distribution(tiny.hf_model, rows, lt, tok.pad_token_id)
    lt_seq = type(lt)(labels=lt.labels + ("ab",), token_ids=lt.token_ids + (lt.token_ids[0] + lt.token_ids[1],), separator=" ")
    assert lt_seq.mode == "sequence"
    p2, _ = label_distribution(tiny.hf_model, rows, lt_seq, tok.pad_token_id)
    ratio = p2[:, :5] / p2[:, :5].sum(-1, keepdims=True)
    np.testing.assert_allclose(ratio, p1, atol=1e-5)


def test_forced_behave_table_and_summary(tiny, items):
    prop = get_property("second_character")
    res = behave(tiny, items, prop, BehaviorConfig(mode="forced"))
    t, s = res.table, res.summary
    assert len(t) == len(items) and s.n_items == len(items)
    scored = t[t.scored]
    assert s.n_scored == len(scored) > 0
    assert s.self.accuracy.value == pytest.approx(scored.correct.mean())
    assert s.mode_baseline.estimate.value == pytest.approx(
        (scored.object_value == s.mode_baseline.mode).mean()
    )
    dist = np.array(t.distribution.tolist())
    assert dist.shape == (len(items), 36)
    np.testing.assert_allclose(dist.sum(-1), 1, atol=1e-6)
    assert (t.prediction == [s.labels[i] for i in dist.argmax(-1)]).all()
    est = s.self.accuracy
    assert est.ci_low <= est.value <= est.ci_high


def test_free_mode_counts_noncompliant_as_wrong(tiny, items):
    prop = get_property("second_character")
    res = behave(tiny, items, prop, BehaviorConfig(mode="free", hypothetical_max_new_tokens=3))
    t = res.table
    assert not (t.correct & ~t.prediction_compliant).any()
    assert "distribution" not in t


def test_cross_prediction_with_third_person_variant(tiny, items):
    prop = get_property("first_character")
    res = behave(
        tiny, items, prop, BehaviorConfig(mode="forced"), predictor_spec=PromptSpec(variant="third_person")
    )
    s = res.summary
    keep = res.table.scored
    diff = res.table.correct[keep].mean() - res.table.cross_correct[keep].mean()
    assert s.self_minus_cross.diff.value == pytest.approx(diff)
    assert "another AI" in res.table.cross_hypothetical_prompt[0]


def test_same_seed_same_numbers(tiny, items):
    prop = get_property("first_character")
    a = behave(tiny, items, prop, BehaviorConfig(seed=3)).summary.self.accuracy
    b = behave(tiny, items, prop, BehaviorConfig(seed=3)).summary.self.accuracy
    assert a == b


def test_property_that_does_not_apply(tiny, items):
    with pytest.raises(NotApplicableError, match="is_even"):
        behave(tiny, items, get_property("is_even"))


def test_unknown_mode():
    with pytest.raises(UnknownNameError, match="forced"):
        BehaviorConfig(mode="sometimes")


def test_word_labels_come_from_task_vocabulary(items):
    labels = property_labels(get_property("first_word"), items, [None])
    assert "cat" in labels or "dog" in labels
    assert len(labels) >= 20


def test_score_rules():
    pred = Predictions([], ["a", "b", "c"], ["a", "b", "c"], np.array([True, False, True]))
    assert score(["a", "b", None], pred).tolist() == [True, False, False]


def test_prefix_trie_scoring_equals_brute_force(tiny, items):
    """Shared-prefix label scoring equals scoring each full continuation separately."""
    tok = tiny.tokenizer
    rows = [object_prompt(tok, q).input_ids for q in items["question"][:3]]
    lt = LabelTokens(labels=("x", "xy", "xz", "w"), token_ids=((5,), (5, 9), (5, 11, 3), (7,)), separator="")
    fast = label_logprobs(tiny.hf_model, rows, lt, tok.pad_token_id)
    brute = continuation_logprobs(
        tiny.hf_model, [r for r in rows for _ in lt.labels], [c for _ in rows for c in lt.token_ids],
        tok.pad_token_id,
    ).reshape(3, 4)
    np.testing.assert_allclose(fast, brute, atol=1e-4)
    # more rows than a batch, fewer continuation slots than prefixes: same numbers
    rows5 = [object_prompt(tok, q).input_ids for q in items["question"][:5]]
    small = label_logprobs(tiny.hf_model, rows5, lt, tok.pad_token_id, batch_size=2, max_rows=3)
    whole = label_logprobs(tiny.hf_model, rows5, lt, tok.pad_token_id)
    np.testing.assert_allclose(small, whole, atol=1e-5)
    np.testing.assert_allclose(small[:3], fast, atol=1e-5)


def test_object_answers_are_decoded_once_per_model(tiny, items, monkeypatch):
    behavior = elicitation
    calls = []
    real = behavior.generate
    monkeypatch.setattr(behavior, "generate", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    tiny.greedy_cache.clear()
    a = behavior.elicit_object(tiny, items, get_property("first_character"))
    b = behavior.elicit_object(tiny, items, get_property("second_character"))
    assert calls == [len(items)]
    assert a.responses == b.responses


def test_calibration_samples_are_drawn_once_per_item_set(tiny, items):
    """Two properties of the same items share one seeded sampling call; the cached samples are
    exactly what sampling again gives."""
    cfg = BehaviorConfig(calibration_samples=3, object_max_new_tokens=6)
    tiny.sample_cache.clear()
    a = behave(tiny, items, get_property("first_character"), cfg)
    behave(tiny, items, get_property("second_character"), cfg)
    assert len(tiny.sample_cache) == 1
    tiny.sample_cache.clear()
    again = behave(tiny, items, get_property("first_character"), cfg)
    assert list(a.table["object_distribution_sampled"]) == list(again.table["object_distribution_sampled"])
    assert a.summary.calibration_mad == again.summary.calibration_mad


def test_next_token_logprobs_last_only_equals_full_logits(tiny, items, monkeypatch):
    """Unembedding only the last position (``logits_to_keep=1``) changes nothing."""
    rows = [object_prompt(tiny.tokenizer, q, PromptSpec()).input_ids for q in items["question"][:5]]
    fast = next_token_logprobs(tiny.hf_model, rows, tiny.tokenizer.pad_token_id, batch_size=3)
    monkeypatch.setattr(inference, "_last_only", lambda m: {})
    full = next_token_logprobs(tiny.hf_model, rows, tiny.tokenizer.pad_token_id, batch_size=3)
    assert torch.allclose(fast, full, atol=1e-5)


# --------------------------------------------------------------------------- the config, checked once


@pytest.mark.parametrize(
    "kwargs, error, needles",
    [
        (dict(mode="sometimes"), UnknownNameError, ["'sometimes'", "forced, free"]),
        (dict(batch_size=0), DataError, ["BehaviorConfig.batch_size", ">= 1, got 0"]),
        (dict(batch_size=True), DataError, ["batch_size", "integer", "True"]),
        (dict(calibration_samples=-1), DataError, ["calibration_samples", ">= 0, got -1"]),
        (dict(object_max_new_tokens=0), DataError, ["object_max_new_tokens", ">= 1, got 0"]),
        (dict(object_max_new_tokens=2.5), DataError, ["object_max_new_tokens", "integer", "2.5"]),
        (dict(hypothetical_max_new_tokens=0), DataError, ["hypothetical_max_new_tokens", ">= 1, got 0"]),
        (dict(seed=-1), DataError, ["seed", ">= 0, got -1"]),
        (dict(spec="previously"), DataError, ["spec must be a PromptSpec", "str"]),
    ],
)
def test_config_names_the_bad_value_and_what_is_allowed(kwargs, error, needles):
    with pytest.raises(error) as info:
        BehaviorConfig(**kwargs)
    for needle in needles:
        assert needle in str(info.value)


def test_task_defaults_are_resolved_in_one_place_and_recorded_as_such():
    default = BehaviorConfig()
    assert object_settings(default, "arc_challenge_non_cot").max_new_tokens == 2  # the option letter
    assert object_settings(default, "stories_sentences").prefill == ""  # no prefill for stories
    assert object_settings(default, "animals") == object_settings(default, None)  # "Answer:", 24
    assert default.object_tokens_for("arc_challenge_non_cot") == 2
    record = config_record(default)
    assert record["object_max_new_tokens"] == TASK_DEFAULT and record["spec"]["object_prefill"] == TASK_DEFAULT
    chosen = BehaviorConfig(object_max_new_tokens=24, spec=PromptSpec(object_prefill="Answer:"))
    assert object_settings(chosen, "arc_challenge_non_cot").max_new_tokens == 24
    assert object_settings(chosen, "stories_sentences").prefill == "Answer:"
    assert config_record(chosen)["object_max_new_tokens"] == 24
    assert config_record(chosen)["spec"]["object_prefill"] == "Answer:"


def test_per_budget_calls_once_per_budget_in_item_order():
    calls = []

    def run(index, budget):
        calls.append((index, budget))
        return [f"{budget}:{i}" for i in index]

    out = per_budget([24, 2, 24, 2], run, fill="-", keep=[True, True, False, True])
    assert calls == [([1, 3], 2), ([0], 24)]
    assert out == ["24:0", "2:1", "-", "2:3"]


# --------------------------------------------------------------------------- the result protocol


@pytest.fixture(scope="module")
def crossed(tiny, items):
    """A forced run with a third-person cross-predictor, shared by the protocol tests."""
    return behave(tiny, items, get_property("first_character"), BehaviorConfig(),
                  predictor_spec=PromptSpec(variant="third_person"))


def test_summary_is_typed_and_records_items_and_config(crossed, items):
    s = crossed.summary
    assert isinstance(s, BehaviorSummary)
    assert s.property == "first_character" and s.mode == "forced" and s.tasks == ["animals"]
    assert s.items_digest == items_digest(items) == crossed.provenance["items_digest"]
    assert s.config["object_max_new_tokens"] == TASK_DEFAULT
    assert s.cross is not None and s.cross.spec["variant"] == "third_person"
    assert s.self.n == s.cross.n == s.n_scored == len(crossed.scored_ids)
    assert crossed.self_accuracy == s.self.accuracy
    rows = s.table.set_index("measure")
    assert rows.loc["self_accuracy", "value"] == s.self.accuracy.value
    assert rows.loc["cross_accuracy", "ci_high"] == s.cross.accuracy.ci_high
    assert rows.loc["n_scored", "value"] == s.n_scored


def test_result_saves_and_loads_back(crossed, tmp_path):
    crossed.save(tmp_path / "run")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"behavior.parquet", "summary.json", "result.json"}
    back = BehaviorResult.load(tmp_path / "run")
    pd.testing.assert_frame_equal(back.table, crossed.table)
    assert back.summary == crossed.summary
    assert isinstance(back.summary.self_minus_cross.diff, type(crossed.summary.self.accuracy))
    assert back.provenance == crossed.provenance
    plain = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert plain["self"]["accuracy"]["value"] == crossed.summary.self.accuracy.value
    assert plain["provenance"]["items_digest"] == crossed.summary.items_digest


def test_figures(crossed):
    bars = crossed.figure().data[0]
    assert len(bars.x) == 3 and bars.y[1] == crossed.summary.self.accuracy.value
    heat = crossed.figure("confusion").data[0]
    assert heat.type == "heatmap" and np.asarray(heat.z).sum() == crossed.summary.n_scored
    with pytest.raises(UnknownNameError, match="accuracy, confusion"):
        crossed.figure("pie")


def test_items_as_list_of_dicts_or_task_name_equal_the_dataset(tiny, items):
    prop, config = get_property("second_character"), BehaviorConfig()
    from_dataset = behave(tiny, items, prop, config)
    for other in (behave(tiny, [dict(r) for r in items], prop, config),
                  behave(tiny, "animals", "second_character", config, n=len(items))):
        pd.testing.assert_frame_equal(other.table, from_dataset.table)
        assert other.summary == from_dataset.summary
        assert other.provenance["items_digest"] == from_dataset.provenance["items_digest"]


@pytest.mark.integration
def test_smollm2_behaviour_end_to_end(smol, shared_data):
    """Real weights: object answers comply, forced choice is well formed, release prompts run."""
    items = load_items("animals", n=8, split="test", seed=0)
    res = behave(smol, items, get_property("first_character"), BehaviorConfig(mode="forced"))
    s, t = res.summary, res.table
    assert s.object_compliance.value >= 0.75  # "Answer:" prefill makes answers usable
    assert s.n_scored >= 4
    assert (t.label_mass[t.scored] > 0.01).all()  # the labels are plausible continuations
    rel = load_release(shared_data / "test" / "animals_long_starts_with_vowel.jsonl").select(range(6))
    res2 = behave(smol, rel, get_property("starts_with_vowel"), BehaviorConfig(mode="free"))
    assert res2.table.hypothetical_prompt[0].count("Previously, you were asked") == 1
    assert res2.summary.self.compliance.value > 0
