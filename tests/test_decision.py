"""The battery's decision rule on synthetic Evidence: each outcome and each threshold's edge."""

from __future__ import annotations

import pytest

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.stats import Estimate
from innerprobe.study.decision import DecisionConfig, decide, read_rows, reading
from innerprobe.study.evidence import Evidence, not_run


def est(v: float, lo: float, hi: float, n: int = 100) -> Estimate:
    return Estimate(v, lo, hi, n, "test")


def row(exp: str, v: float, lo: float, hi: float, *, ctrl: float | None = 0.0, n: int = 100,
        sub: str = "main", unit: str = "proportion", model: str = "M") -> Evidence:
    c = None if ctrl is None else est(ctrl, ctrl, ctrl)
    return Evidence(exp, sub, exp, est(v, lo, hi, n), c, n, unit=unit, model=model)


POS = {"E2": ("layers", 3.0, 2.0, 4.0), "E3": ("proportion", 0.5, 0.4, 0.6),
       "E5": ("recovery", 0.4, 0.3, 0.5), "E6": ("proportion", 0.3, 0.2, 0.4)}


def test_all_four_positive_is_self_simulation() -> None:
    rows = [row(e, v, lo, hi, unit=u) for e, (u, v, lo, hi) in POS.items()]
    v = decide(rows)
    assert v.hypothesis == "self-simulation"
    assert v.readings == {"E2": "positive", "E3": "positive", "E5": "positive", "E6": "positive"}


def test_no_answer_code_and_self_advantage_is_privileged() -> None:
    rows = [row("E3", 0.01, -0.02, 0.03), row("E1", 0.2, 0.1, 0.3, sub="self vs text-only")]
    v = decide(rows)
    assert v.hypothesis == "privileged"
    assert "E3" in v.why and "E1" in v.why


def test_e3b_self_advantage_also_counts() -> None:
    rows = [row("E6", 0.0, -0.03, 0.03), row("E3b", 0.15, 0.08, 0.22, ctrl=None)]
    assert decide(rows).hypothesis == "privileged"


def test_beating_only_the_weakest_outside_reader_is_no_self_advantage() -> None:
    code_free = row("E3", 0.01, -0.02, 0.03)
    beats_text = row("E1", 0.6, 0.45, 0.75, sub="self vs text-only")
    peer_ties = row("E1", 0.06, 0.0, 0.15, sub="self vs cross-model (peer)")
    v = decide([code_free, beats_text, peer_ties])
    assert v.hypothesis == "inconclusive" and "self-advantage (no)" in v.why
    assert decide([code_free, beats_text, peer_ties], DecisionConfig(advantage="any")).hypothesis == "privileged"
    beats_peer = row("E1", 0.3, 0.2, 0.4, sub="self vs cross-model (peer)")
    assert decide([code_free, beats_text, beats_peer]).hypothesis == "privileged"
    skipped = not_run("E1", "self vs cross-model (peer)", "no peer")  # not measured: neither helps nor blocks
    assert decide([code_free, beats_text, skipped]).hypothesis == "privileged"
    with pytest.raises(UnknownNameError, match="valid advantages: all, any"):
        DecisionConfig(advantage="most")


def test_no_code_without_self_advantage_is_inconclusive() -> None:
    rows = [row("E3", 0.01, -0.02, 0.03), row("E1", 0.01, -0.05, 0.07, sub="self vs text-only")]
    v = decide(rows)
    assert v.hypothesis == "inconclusive"
    assert "self-advantage (no)" in v.why


def test_one_missing_self_simulation_experiment_is_inconclusive() -> None:
    rows = [row(e, v, lo, hi, unit=u) for e, (u, v, lo, hi) in POS.items() if e != "E5"]
    rows.append(not_run("E5", "transplant", "patching skipped"))
    v = decide(rows)
    assert v.hypothesis == "inconclusive"
    assert "E5" in v.why


def test_min_effect_edge() -> None:
    cfg = DecisionConfig(min_proportion=0.1)
    assert reading(row("E3", 0.11, 0.05, 0.2), cfg)[0] == "positive"
    assert reading(row("E3", 0.09, 0.05, 0.2), cfg)[0] == "inconclusive"


def test_ci_must_exclude_control_edge() -> None:
    assert reading(row("E3", 0.3, 0.001, 0.5))[0] == "positive"
    assert reading(row("E3", 0.3, -0.001, 0.5))[0] == "inconclusive"


def test_negative_edge() -> None:
    cfg = DecisionConfig(min_proportion=0.05)
    assert reading(row("E6", 0.0, -0.05, 0.049), cfg)[0] == "negative"
    assert reading(row("E6", 0.0, -0.05, 0.051), cfg)[0] == "inconclusive"


def test_min_n_edge() -> None:
    cfg = DecisionConfig(min_n=30)
    assert reading(row("E3", 0.5, 0.4, 0.6, n=30), cfg)[0] == "positive"
    r, why = reading(row("E3", 0.5, 0.4, 0.6, n=29), cfg)
    assert r == "inconclusive" and "min_n" in why


def test_units_have_their_own_minimum() -> None:
    cfg = DecisionConfig(min_layers=2.0)
    assert reading(row("E2", 2.1, 1.0, 3.0, unit="layers"), cfg)[0] == "positive"
    assert reading(row("E2", 1.9, 1.0, 3.0, unit="layers"), cfg)[0] == "inconclusive"


def test_effect_is_read_against_its_control() -> None:
    assert reading(row("E1", 0.5, 0.45, 0.55, ctrl=0.48, sub="self vs mode baseline"))[0] == "inconclusive"
    assert reading(row("E1", 0.6, 0.55, 0.65, ctrl=0.48, sub="self vs mode baseline"))[0] == "positive"


def test_represented_but_not_read_out() -> None:
    rows = [row("E3", 0.5, 0.4, 0.6), row("E1", 0.4, 0.3, 0.5, ctrl=0.42, sub="self vs mode baseline")]
    assert any("represented but not read out" in f for f in decide(rows).findings)
    rows[1] = row("E1", 0.8, 0.7, 0.9, ctrl=0.42, sub="self vs mode baseline")
    assert decide(rows).findings == []
    # an E1 that could not be measured (e.g. no object answer has a property label) says nothing
    rows[1] = not_run("E1", "not measurable", "DataError: no scorable items")
    assert decide(rows).findings == []
    assert decide(rows[:1]).findings == []


def test_models_are_decided_apart() -> None:
    rows = [row(e, v, lo, hi, unit=u, model="M1") for e, (u, v, lo, hi) in POS.items()]
    assert decide(rows, model="M1").hypothesis == "self-simulation"
    assert decide(rows, model="M").hypothesis == "inconclusive"


def test_read_rows_fills_supports() -> None:
    out = read_rows([row("E3", 0.01, -0.02, 0.03), row("E2", 3.0, 2.0, 4.0, unit="layers"), not_run("E8", "x", "why")])
    assert [r.supports for r in out] == ["privileged", "self-simulation", "inconclusive"]
    assert out[2].why.endswith("why")


def test_bad_config_value_names_the_field() -> None:
    with pytest.raises(DataError, match="min_n"):
        DecisionConfig(min_n=0)


def test_a_secondary_row_is_read_but_supports_no_hypothesis() -> None:
    check = Evidence("E7", "steering moves O", "O moved", est(0.9, 0.8, 0.95), est(0.1, 0.1, 0.1), 100,
                     primary=False)
    (read,) = read_rows([check])
    assert read.supports == "inconclusive" and "positive" in read.why and read.why.startswith("secondary")
    assert "E7" not in decide([check]).readings
