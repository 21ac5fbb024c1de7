"""Concept injection (E8): no-op identity, exact injected positions per timing (also under cached
generation), controls in every result, bad input, save/load, the trained detector beating the
yes-bias control on held-out vectors, and the CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.interventions.concepts import ConceptSet, concept_vectors
from innerprobe.interventions.edits import AddVector
from innerprobe.interventions.hooks import Intervention, intervene
from innerprobe.interventions.injection import Condition, readout, run_injection
from innerprobe.interventions.injection_config import TIMINGS, InjectionConfig, timing_selector
from innerprobe.interventions.injection_result import InjectionResult
from innerprobe.interventions.trials import DETECT, build_trial
from innerprobe.training.detector import DetectorConfig, inject_rows, injection_mask, train_detector
from innerprobe.training.encode import IGNORE, Encoded, collate
from innerprobe.training.finetune import lora_model

WORDS = ["ocean", "music", "bread"]  # distinct first tokens in the tiny tokenizer
LAYER = 1  # at layer 0 the last token's residual is its embedding: no concept signal


@pytest.fixture(scope="module")
def concepts(tiny):
    return concept_vectors(tiny, WORDS, LAYER)


@pytest.fixture(scope="module")
def result(tiny, concepts):
    return run_injection(tiny, concepts, InjectionConfig(scales=(2.0,), timing="trial", n_trials=2, n_boot=200))


def _trial(tiny, k=3):
    return build_trial(tiny.tokenizer, "detect", k, DETECT)


def _read(tiny, trials, cond, timing, **kw):
    cfg = InjectionConfig(timing=timing, **kw)
    return readout(tiny, trials, list(range(40)), cond, LAYER, "resid_pre", lambda t: timing_selector(cfg, t), 4)


def _trial_token(tiny, trial):
    """Index of the first token of "Trial k" in the trial's text, found from the offsets alone."""
    enc = tiny.tokenizer(trial.text, add_special_tokens=False, return_offsets_mapping=True)
    at = trial.text.rfind(f"Trial {trial.variant}")
    return next(i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > at)


def test_zero_vector_changes_nothing_bit_exactly(tiny):
    trials = [_trial(tiny, k) for k in (1, 2, 10)]
    zero = Condition("concept", "zero", 8.0, torch.zeros(tiny.d_model))
    for timing in TIMINGS:
        base, _ = _read(tiny, trials, Condition("none"), timing)
        same, touched = _read(tiny, trials, zero, timing)
        assert torch.equal(base, same), timing
        assert all(touched), timing  # the hook did fire at the requested positions


def test_zero_vectors_give_zero_shift_in_a_whole_run(tiny):
    zeros = ConceptSet(WORDS, torch.zeros(len(WORDS), tiny.d_model), LAYER)
    r = run_injection(tiny, zeros, InjectionConfig(scales=(3.0,), n_trials=2, identification=False,
                                                   localisation=False, n_boot=50))
    assert (r.conditions["detection_shift"] == 0).all() and (r.conditions["yes_shift"] == 0).all()


def test_injected_positions_are_exactly_the_requested_ones_per_timing(tiny, concepts):
    t = _trial(tiny)
    n, L = len(t.ids), t.prompt_len
    k = _trial_token(tiny, t)
    want = {"prompt": list(range(n)), "trial": list(range(k - 1, n)), "generation": list(range(L, n)),
            "single": [L - 1]}
    cond = Condition("concept", "ocean", 2.0, concepts.vector("ocean"))
    for timing, expected in want.items():
        _, touched = _read(tiny, [t], cond, timing)
        assert touched[0] == expected, timing
    _, touched = _read(tiny, [t], cond, "single", single_token=5)
    assert touched[0] == [5]


def test_injected_positions_under_cached_generation(tiny, concepts):
    """HF generate with its key/value cache: each decoding step feeds one token; the selectors'
    real-token indices keep counting, so generation-only injection starts exactly at L."""
    t = _trial(tiny)
    L, new = t.prompt_len, 5
    ids = torch.tensor([list(t.prompt_ids)])
    k = _trial_token(tiny, t)
    for timing, expected in (("generation", list(range(L, L + new - 1))), ("trial", list(range(k - 1, L + new - 1))),
                             ("single", [L - 1])):
        sel = timing_selector(InjectionConfig(timing=timing), t)
        iv = Intervention(AddVector(concepts.vector("ocean"), 2.0), layers=(LAYER,), positions=sel)
        with intervene(tiny, iv) as log:
            tiny.hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                   min_new_tokens=new, do_sample=False, pad_token_id=tiny.tokenizer.pad_token_id)
        assert log.touched(0, LAYER, list(t.prompt_ids)) == expected, timing


def test_run_records_the_requested_positions(result):
    det = result.table[(result.table.kind == "detect") & (result.table.condition == "concept")]
    for _, row in det.iterrows():
        assert list(row["positions"]) == list(range(row["positions"][0], row["positions"][-1] + 1))
    loc = result.table[(result.table.kind == "localise") & (result.table.condition == "concept")]
    assert loc.groupby("target")["positions"].first().map(lambda p: tuple(p)).nunique() == 4  # one span each


def test_every_control_is_in_the_result(result, concepts):
    t = result.table
    assert set(t.kind) == {"detect", "impossible", "twin", "identify", "twin_identify", "leak", "localise"}
    assert set(t.condition) == {"none", "concept", "random", "twin"}
    s = result.summary
    for name in ("detect_yes_concept", "detect_yes_random", "detect_yes_none", "impossible_yes_concept",
                 "impossible_yes_none", "twin_yes", "detection_shift_concept", "yes_shift_concept", "twin_shift",
                 "concept_vs_none", "concept_vs_random", "detect_vs_impossible", "detection_beyond_yes_shift",
                 "identification_concept", "identification_leak", "identification_vs_leak",
                 "identification_twin", "localisation_concept", "localisation_random", "localisation_none",
                 "localisation_concept_vs_random"):
        assert getattr(s, name) is not None, name
    assert s.identification_chance == pytest.approx(1 / 3) and s.localisation_chance == pytest.approx(1 / 4)
    assert s.detect_yes_none.method.startswith("Wilson") and s.concept_vs_none.mcnemar_p is not None
    assert s.shift_correlation is None or -1 <= s.shift_correlation.value <= 1
    assert torch.allclose(result.random_vectors.norm(dim=-1), concepts.vectors.norm(dim=-1), rtol=1e-5)
    assert not torch.allclose(result.random_vectors, concepts.vectors)
    assert len(result.conditions) == 2 * len(WORDS)
    assert "P(yes)" in result.figure().layout.annotations[0].text


def test_bad_input_names_the_valid_options(tiny, concepts):
    with pytest.raises(DataError, match="d_model"):
        run_injection(tiny, ConceptSet(["a"], torch.ones(1, tiny.d_model + 3), LAYER))
    with pytest.raises(DataError, match="NaN"):
        ConceptSet(["a"], torch.full((1, tiny.d_model), float("nan")), LAYER)
    with pytest.raises(DataError, match=r"0\.\.1"):
        concept_vectors(tiny, WORDS, 7)
    with pytest.raises(DataError, match=r"0\.\.1"):
        run_injection(tiny, ConceptSet(["a"], torch.ones(1, tiny.d_model), 5))
    with pytest.raises(UnknownNameError, match="generation.*prompt.*single.*trial"):
        InjectionConfig(timing="later")
    with pytest.raises(DataError, match="single_token"):
        timing_selector(InjectionConfig(timing="single", single_token=10_000), _trial(tiny))
    with pytest.raises(DataError, match="scales"):
        InjectionConfig(scales=(float("inf"),))
    with pytest.raises(DataError, match="share a first token"):
        run_injection(tiny, concept_vectors(tiny, ["dog", "dogs"], LAYER), InjectionConfig(n_trials=1))
    with pytest.raises(DataError, match="concepts: ocean, music, bread"):
        concepts.vector("zebra")


def test_save_load_round_trip(result, tmp_path):
    result.save(tmp_path / "inj")
    back = InjectionResult.load(tmp_path / "inj")
    assert back.summary == result.summary
    assert back.config == result.config and back.words == result.words
    assert back.table["score"].equals(result.table["score"])
    assert [list(p) for p in back.table["positions"]] == [list(p) for p in result.table["positions"]]
    assert torch.equal(back.concept_vectors, result.concept_vectors)
    assert back.conditions.equals(result.conditions)


def test_training_time_injection_equals_evaluation_time_injection(tiny, concepts):
    """The detector trains on a plain peft copy (a pre-hook on the HF decoder layer); a fresh LoRA
    (B = 0) with that hook must give the logits ``intervene`` gives on the bridge."""
    t = _trial(tiny)
    cfg = InjectionConfig(timing="trial")
    cond = Condition("concept", "ocean", 2.0, concepts.vector("ocean"))
    want, _ = readout(tiny, [t], list(range(tiny.tokenizer.vocab_size)), cond, LAYER, "resid_pre",
                      lambda x: timing_selector(cfg, x), 1)
    peft = lora_model(tiny, DetectorConfig(train_words=("a",), test_words=("b",)).lora(), "cpu")
    ids, mask, pos, _ = collate([Encoded(list(t.ids) + [0], [IGNORE] * len(t.ids) + [0])], 0)
    with torch.no_grad(), inject_rows(peft, LAYER, 2.0 * concepts.vector("ocean")[None],
                                      injection_mask(cfg, t, ids.shape[1])[None]):
        got = torch.log_softmax(peft(input_ids=ids, attention_mask=mask, position_ids=pos).logits[0, -2], -1)
    assert torch.allclose(got, want[0], atol=1e-4)


def _planted(tiny, words):
    """Concept vectors sharing one direction (as real ones share a 'concept' component) plus
    word-specific noise: a detector trained on some can generalise to the others."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(tiny.d_model, generator=g)
    v = 100 * u / u.norm() + 4 * torch.randn(len(words), tiny.d_model, generator=g)
    return ConceptSet(list(words), v, LAYER, provenance={"method": "planted shared direction + noise"})


def test_trained_detector_beats_the_yes_bias_control_on_held_out_vectors(tiny):
    words = [f"w{i}" for i in range(20)]
    cfg = DetectorConfig(train_words=tuple(words[:16]), test_words=tuple(words[16:]), steps=120, scale=2.0, lr=5e-3,
                         eval_trials=6, n_boot=500)
    r = train_detector(tiny, _planted(tiny, words), cfg)
    s = r.summary
    assert s.loss_last < s.loss_first
    d = s.trained_detect_vs_impossible
    assert s.beats_yes_bias and d.diff.ci_low > 0 and d.mcnemar_p < 0.05
    assert s.trained_detect_yes.ci_low > s.trained_impossible_yes.ci_high  # the intervals do not overlap
    assert s.trained_detect_yes.ci_low > s.trained_false_positive.ci_high
    assert set(r.table["model"]) == {"trained", "untrained"}
    assert set(r.table[r.table.condition == "concept"]["word"]) == set(words[16:])  # held-out vectors only


def test_cli_inject_smoke(tmp_path):
    out = tmp_path / "inject"
    r = CliRunner().invoke(app, ["inject", "--model", "tiny-random", "--words", "ocean,music", "--layer", "1",
                                 "--scales", "2", "--n-trials", "1", "--timing", "generation", "--out", str(out)])
    assert r.exit_code == 0, r.output
    back = InjectionResult.load(out)
    assert back.summary.timing == "generation" and back.summary.detect_yes_none is not None
    bad = CliRunner().invoke(app, ["inject", "--model", "tiny-random", "--timing", "later", "--out",
                                   str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "generation" in bad.output


def test_no_injection_runs_its_own_larger_set_of_variants(result):
    """The false-positive rate gets 20 distinct no-injection prompts ('Trial 1'..'Trial 20'),
    while the injected conditions keep n_trials; pairing with 'none' stays by variant."""
    t = result.table
    for kind in ("detect", "impossible"):
        none = t[(t.kind == kind) & (t.condition == "none")]
        assert sorted(none.variant) == list(range(1, 21))
        assert sorted(set(t[(t.kind == kind) & (t.condition == "concept")].variant)) == [1, 2]
    assert result.summary.detect_yes_none.n == 20
    assert result.summary.concept_vs_none.diff.n == 2 * len(WORDS)
    with pytest.raises(DataError, match="n_control_trials"):
        InjectionConfig(n_control_trials=0)
