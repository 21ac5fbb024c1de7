"""The battery's E3, E6, E7, E8 adapters: the shared store, planted signals, rows the rule can read."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from steer_toys import planted_store

from innerprobe.core.stats import Estimate, PairedDiff
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.study import steps_store
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.battery_steps import STEPS
from innerprobe.study.decision import DecisionConfig, read_rows, reading
from innerprobe.study.evidence import Evidence
from innerprobe.study.step_context import StepContext
from innerprobe.study.step_rows import negated, paired_rows
from innerprobe.study.steps_interventions import (
    _untestable,
    e6_ablation,
    e7_steering,
    e8_injection,
    e8_trials,
)
from innerprobe.study.steps_probes import e3_probe_transfer, surface_feature

RULE = DecisionConfig(min_n=5)
CFG = BatteryConfig(model="tiny-random", n_items=12, quick_n_items=12, n_boot=200, batch_size=8, decision=RULE)


def _ctx(tiny, work: Path, **shared) -> StepContext:
    return StepContext(CFG, CFG.n_items, "M", work_dir=work, shared=dict(shared), _model=tiny)


def _well_formed(rows: list[Evidence], experiment: str) -> None:
    assert rows and all(r.experiment == experiment for r in rows)
    assert any(r.primary for r in rows)
    for r in rows:
        if r.effect is not None:
            assert r.n > 0 and r.effect.ci_low <= r.effect.value <= r.effect.ci_high, r
            assert r.effect.n == r.n, r


# ------------------------------------------------------------------------------ the shared store


@pytest.fixture(scope="module")
def own_store_dir(tiny, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("battery_work")
    steps_store.shared_store(_ctx(tiny, work))
    return work


def test_the_store_holds_own_answers_on_train_items_and_is_reused(tiny, own_store_dir, monkeypatch):
    ctx = _ctx(tiny, own_store_dir)
    store = steps_store.shared_store(ctx)
    assert store.n_items == steps_store.MIN_STORE_ITEMS == steps_store.store_items(ctx)
    train = load_items("animals", n=store.n_items, split="train", seed=0)
    assert store.rows["id"].tolist() == [str(i) for i in train["id"]]
    prop = get_property("second_character")
    assert store.rows["object_answer"].tolist() == steps_store.own_answers(tiny, train, prop, steps_store.CAPTURE.spec, 8)
    assert set(store.keys()) == {("object", "resid_post", "o_last"), ("hypothetical", "resid_post", "h_last"),
                                 ("hypothetical", "resid_post", "quote_last")}
    assert store.layers == list(range(tiny.n_layers))
    # a resumed battery reopens it (no capture), and later steps get the same object
    monkeypatch.setattr(steps_store, "capture", lambda *a, **k: pytest.fail("captured again"))
    again = _ctx(tiny, own_store_dir)
    assert steps_store.shared_store(again).path == store.path
    assert steps_store.shared_store(again) is again.shared["store"]


# ------------------------------------------------------------------------------ E3 on planted stores


class _Store:
    """A store-shaped toy: answers coded in O (and in H when ``h_code``), last animal random."""

    def __init__(self, h_code: bool, n: int = 160, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        classes = ["cat", "dog", "owl", "bee"]
        animals = ["cat", "dog", "owl", "bee", "elk", "emu", "yak", "ant"]
        answers = [classes[i % 4] for i in range(n)]
        groups = [" ".join(rng.choice(animals, 6)) for _ in range(n)]  # the last animal: 8 recurring types
        self.rows = pd.DataFrame({"object_answer": answers, "group": groups})
        self.layers = [0, 1, 2]
        code = torch.randn(4, 32, generator=g) * 3
        y = torch.tensor([classes.index(a) for a in answers])
        self._o = code[y][:, None].repeat(1, 3, 1) + torch.randn(n, 3, 32, generator=g)
        h = code[y] if h_code else torch.zeros(n, 32)
        self._h = h[:, None].repeat(1, 3, 1) + torch.randn(n, 3, 32, generator=g)

    def read(self, run: str, site: str, position: str, *, layers: list[int] | None = None) -> torch.Tensor:
        return self._o if run == "object" else self._h


def test_e3_finds_a_planted_transfer_and_reads_a_null_as_no_transfer(tiny, tmp_path):
    rule = DecisionConfig()
    coded = e3_probe_transfer(_ctx(tiny, tmp_path, store=_Store(h_code=True)))
    null = e3_probe_transfer(_ctx(tiny, tmp_path, store=_Store(h_code=False)))
    for rows in (coded, null):
        _well_formed(rows, "E3")
        assert [r.sub for r in rows if r.primary] == ["O->H transfer, answer != last animal of P"]
        assert any(r.sub == "surface-feature probe O->H" for r in rows)
    p_coded, p_null = (next(r for r in rows if r.primary) for rows in (coded, null))
    assert p_coded.effect.value > 0.8 and p_coded.control.value < 0.5 and reading(p_coded, rule)[0] == "positive"
    assert abs(p_null.effect.value - p_null.control.value) < 0.15 and reading(p_null, rule)[0] != "positive"
    # the control is the stricter of the majority baseline and the control task, on the same items
    assert p_null.control.n == p_null.n and p_null.name.startswith("transfer accuracy vs ")
    sel = next(r for r in coded if r.sub == p_coded.sub and r.name.startswith("selectivity"))
    assert sel.control is None and not sel.primary and sel.effect.value > 0.4


def test_surface_feature_is_the_last_word_of_the_sequence():
    assert surface_feature(["cat dog owl", "bee", None]) == ["owl", "bee", None]


# ------------------------------------------------------------------------------ E6 / E7 / E8 on the tiny model


def test_e6_on_the_own_answer_store_keeps_an_unreadable_drop_out_of_the_vote(tiny, own_store_dir):
    rows = e6_ablation(_ctx(tiny, own_store_dir))
    _well_formed(rows, "E6")
    primary = [r for r in rows if r.primary]
    # the tiny model's self-prediction sits below its mode baseline: nothing to remove, not voted
    assert len(primary) == 1 and primary[0].effect is None and "mode baseline" in primary[0].why
    drop = next(r for r in rows if r.name.startswith("self-prediction drop: answer"))
    sides = next(r for r in rows if r.name.startswith("self-prediction drop under answer"))
    assert not drop.primary and drop.n == sides.n == CFG.n_items
    # the paired drop is the answer-subspace drop minus the random-subspace drop, item for item
    assert drop.effect.value == pytest.approx(sides.effect.value - sides.control.value)
    subs = {r.sub for r in rows}
    assert {"O ablation (confirms the subspace is the answer code)",
            "control question (needs no answer; should not drop)"} <= subs
    # the reference's arm (from the quote on) is measured beside the voted one (after the quote), never voted
    quote_on = [r for r in rows if r.sub == "answer-subspace ablation (quote_onward)"]
    assert len(quote_on) == 2 and not any(r.primary for r in quote_on) and "H quote_onward" in quote_on[0].name
    assert "H after_quote" in drop.name


def test_an_unreadable_ablation_is_not_voted():
    est = lambda v, lo, hi: Estimate(v, lo, hi, 30, "t")  # noqa: E731
    diff = lambda v: PairedDiff(est(0, 0, 0), est(0, 0, 0), est(v, v - 0.1, v + 0.1), 0.01)  # noqa: E731

    breaks_o, keeps_o = SimpleNamespace(answer_vs_random=diff(-0.5), n=30), SimpleNamespace(answer_vs_random=diff(0.0), n=30)
    assert "mode baseline" in _untestable(est(0.0, 0.0, 0.1), est(0.5, 0.4, 0.6), breaks_o, RULE)
    assert _untestable(est(0.9, 0.8, 0.95), est(0.5, 0.4, 0.6), breaks_o, RULE) is None
    assert "answer code" in _untestable(est(0.9, 0.8, 0.95), est(0.5, 0.4, 0.6), keeps_o, RULE)


def test_e7_on_a_planted_store_moves_o_beyond_random_and_tracks_nothing_unsteered(tiny, tmp_path):
    items = load_items("animals", n=24, split="test")
    store = planted_store(tiny, items, get_property("second_character"))
    rows = e7_steering(_ctx(tiny, tmp_path, store=store))
    _well_formed(rows, "E7")
    read = {(r.sub, r.control is None): r for r in read_rows(rows, RULE)}
    o = read[("steering o:last vs norm-matched random", True)]
    assert o.effect.value > 0.4 and "positive" in o.why and o.supports == "inconclusive"  # a check: not voted
    o_sides = read[("steering o:last vs norm-matched random", False)]
    assert o_sides.effect.value > o_sides.control.value  # direction beside its norm-matched random vector
    harness = read[("harness: unsteered H (cannot know the new behaviour)", True)]
    assert harness.effect.value <= 0.0 and "; positive" not in harness.why
    assert next(r for r in rows if r.primary).sub == "behaviour shift by steering"


def test_e8_sizes_trials_to_min_n_and_reads_detection_beside_its_controls(tiny, tmp_path):
    ctx = _ctx(tiny, tmp_path)
    assert e8_trials(ctx, 5, 1) == 1 and e8_trials(StepContext(BatteryConfig(), 60), 5, 1) == 4
    rows = e8_injection(ctx)
    _well_formed(rows, "E8")
    primary = next(r for r in rows if r.primary)
    assert primary.control is None and primary.n >= RULE.min_n
    fp = next(r for r in rows if r.name.startswith("P(yes) with a concept injected vs no-injection"))
    assert fp.control.n == 20 and fp.n == primary.n  # the false-positive rate has its own 20 trials
    assert {r.sub for r in rows} >= {"concept vs norm-matched random vector", "detection beyond the yes-shift"}
    assert next(r for r in rows if r.sub == "detection beyond the yes-shift").unit == "logits"


def test_e8_on_a_base_model_is_an_inconclusive_row_naming_the_missing_chat_template(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny.tokenizer, "chat_template", None)
    rows = e8_injection(_ctx(tiny, tmp_path))
    assert len(rows) == 1 and rows[0].effect is None and rows[0].supports == "inconclusive"
    assert "no chat template" in rows[0].why
    from innerprobe.interventions.concepts import (
        carrier_rows,  # concept vectors still work on a base model
    )

    ids = carrier_rows(tiny, "ocean", ["Think about {w}."])[0]
    assert tiny.tokenizer.decode(ids).strip() == "Think about ocean."


def test_the_adapters_are_registered():
    assert STEPS["E3"] is e3_probe_transfer and STEPS["E6"] is e6_ablation
    assert STEPS["E7"] is e7_steering and STEPS["E8"] is e8_injection


def test_paired_rows_vote_the_difference_and_show_both_sides():
    d = PairedDiff(Estimate(0.6, 0.4, 0.8, 25, "w"), Estimate(0.2, 0.1, 0.4, 25, "w"), Estimate(0.4, 0.2, 0.6, 25, "b"),
                   0.001)
    voted, sides = paired_rows("E7", "s", "diff", d, model="M", sides="a vs b")
    assert voted.primary and voted.control is None and voted.effect.value == 0.4
    assert not sides.primary and (sides.effect.value, sides.control.value) == (0.6, 0.2)
    assert negated(d.diff).ci_low == -0.6 and negated(d.diff).ci_high == -0.2


# ------------------------------------------------------------------------------ real weights


@pytest.mark.integration
@pytest.mark.slow
def test_e3_on_smollm2_reads_own_answers(smol, tmp_path):
    cfg = BatteryConfig(n_items=20, n_boot=200)
    ctx = StepContext(cfg, 20, "M", work_dir=tmp_path, _model=smol)
    rows = e3_probe_transfer(ctx)
    _well_formed(rows, "E3")
    assert steps_store.shared_store(ctx).n_items == steps_store.MIN_STORE_ITEMS
    acc = next(r for r in rows if r.sub == "O->H transfer, all items" and r.control is not None)
    assert acc.n >= 10 and 0.0 <= acc.control.value < 1.0
