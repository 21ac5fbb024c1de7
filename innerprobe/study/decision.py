"""The battery's decision rule, as pure code over :class:`~innerprobe.study.evidence.Evidence`.

**Each row's reading.** A row compares an ``effect`` with its ``control`` (no control: 0, the
row is already a paired difference). With ``delta = effect − control`` and ``m`` the minimum
effect for the row's unit (``min_proportion``, ``min_layers``, ``min_recovery``, ``min_logits``):

* fewer than ``min_n`` items, or not run → *inconclusive* (says so);
* *positive* when ``delta ≥ m`` **and** the effect's 95% interval excludes the control
  (``ci_low > control``);
* *negative* when the interval rules out an effect of size ``m`` (``ci_high < control + m``);
* otherwise *inconclusive* (the interval is too wide to tell).

**The verdict per model** (``interp_methods.md`` §3):

* **self-simulation** when E2 (answer before property in H), E3 (the O answer code transfers to
  H), E5 (an O→H transplant or steering moves the self-prediction) and E6 (ablating the O
  answer subspace drops the self-prediction more than a matched random subspace) are all
  positive;
* **privileged** when the property is read in H without the O answer code (E3 or E6 negative)
  **and** the model has a self-advantage: E1's self-prediction beats *every* outside predictor
  that was measured (text-only, third-person, cross-model peer; ``advantage = "all"``), or E3b's
  self-probe beats the peer-probe on disagreement items. Beating only the weakest reader is no
  evidence of privileged access (a bag-of-words text-only predictor cannot compute "the last word
  of P", so a model on a public text rule beats it; the zoo's text models did exactly that);
  ``advantage = "any"`` restores the looser reading for comparison.
* otherwise **inconclusive**, with the experiments that were missing or disagreed.

**A finding, not a verdict:** *represented but not read out*: the answer is decodable in H (E3
positive) while self-prediction sits at its mode baseline (E1's self vs mode row measured and not
positive; an E1 that could not be measured states nothing about the read-out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from innerprobe.core.errors import check_at_least, check_choice
from innerprobe.study.evidence import Evidence

POSITIVE, NEGATIVE, UNCLEAR = "positive", "negative", "inconclusive"
SELF_SIM = ("E2", "E3", "E5", "E6")


@dataclass(frozen=True)
class DecisionConfig:
    """Every threshold of the decision rule (see the module docstring).

    Attributes:
        min_n: fewest items a row must rest on to be read at all.
        min_proportion: smallest accuracy/rate difference that counts (E1, E3, E3b, E6, E7, E8 rates).
        min_layers: smallest layer gap that counts (E2: property emerges this many layers after the answer).
        min_recovery: smallest normalised recovery / transplant shift that counts (E4, E5).
        min_logits: smallest logit shift that counts (E8 detection shifts, steering shifts).
        advantage: ``all``: E1's self-advantage needs every measured outside-predictor row positive
            (at least one); ``any``: one positive row suffices (the looser, earlier rule).
    """

    min_n: int = 20
    min_proportion: float = 0.05
    min_layers: float = 1.0
    min_recovery: float = 0.1
    min_logits: float = 0.5
    advantage: str = "all"

    def __post_init__(self) -> None:
        check_choice("advantage", self.advantage, ("all", "any"))
        check_at_least("min_n", self.min_n, 1)
        for name in ("min_proportion", "min_layers", "min_recovery", "min_logits"):
            check_at_least(name, getattr(self, name), 0.0)

    def minimum(self, unit: str) -> float:
        return float(getattr(self, f"min_{unit}"))


def reading(ev: Evidence, config: DecisionConfig = DecisionConfig()) -> tuple[str, str]:
    """``(positive | negative | inconclusive, why)`` of one row."""
    if ev.effect is None:
        return UNCLEAR, ev.why or "not run"
    if ev.n < config.min_n:
        return UNCLEAR, f"n={ev.n} below min_n={config.min_n}"
    ctrl = 0.0 if ev.control is None else ev.control.value
    m = config.minimum(ev.unit)
    delta = ev.effect.value - ctrl
    what = f"effect {ev.effect.value:.3g} [{ev.effect.ci_low:.3g}, {ev.effect.ci_high:.3g}] vs control {ctrl:.3g}"
    if delta >= m and ev.effect.ci_low > ctrl:
        return POSITIVE, f"{what}: above by {delta:.3g} >= {m:g}, CI excludes the control"
    if ev.effect.ci_high < ctrl + m:
        return NEGATIVE, f"{what}: CI rules out an effect of {m:g}"
    return UNCLEAR, f"{what}: CI too wide to tell (min effect {m:g})"


#: The hypothesis a positive / negative reading of an experiment supports.
_POSITIVE_SUPPORTS = {"E1": "privileged", "E3b": "privileged", "E2": "self-simulation", "E3": "self-simulation",
                      "E4": "self-simulation", "E5": "self-simulation", "E6": "self-simulation",
                      "E7": "self-simulation", "E8": "privileged"}
_NEGATIVE_SUPPORTS = {"E3": "privileged", "E6": "privileged"}


def read_rows(rows: Sequence[Evidence], config: DecisionConfig = DecisionConfig()) -> list[Evidence]:
    """Each row with ``supports`` and ``why`` filled in by :func:`reading`.

    A secondary row (``primary=False``: a harness check such as "steering moves O's answer", a
    third-person framing) is read and its reading reported, but it supports no hypothesis: it is
    not voted, and labelling it with its experiment's hypothesis would misstate what it shows.
    """
    out = []
    for ev in rows:
        r, why = reading(ev, config)
        if not ev.primary:
            out.append(ev.with_reading("inconclusive", f"secondary (not voted); {r}: {why}"))
            continue
        if r == POSITIVE:
            sup = _POSITIVE_SUPPORTS[ev.experiment]
        elif r == NEGATIVE:
            sup = _NEGATIVE_SUPPORTS.get(ev.experiment, "inconclusive")
        else:
            sup = "inconclusive"
        out.append(ev.with_reading(sup, f"{r}: {why}"))
    return out


@dataclass(frozen=True)
class Verdict:
    """The battery's answer for one model: the hypothesis, why, and the findings beside it."""

    model: str
    hypothesis: str
    why: str
    readings: dict[str, str] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def experiment_readings(rows: Sequence[Evidence], config: DecisionConfig = DecisionConfig()) -> dict[str, str]:
    """Per experiment: positive if any primary row is positive, negative if all primary rows are, else inconclusive."""
    by: dict[str, list[str]] = {}
    for ev in rows:
        if ev.primary:
            by.setdefault(ev.experiment, []).append(reading(ev, config)[0])
    out = {}
    for exp, rs in by.items():
        out[exp] = POSITIVE if POSITIVE in rs else NEGATIVE if all(r == NEGATIVE for r in rs) else UNCLEAR
    return out


def _row(rows: Sequence[Evidence], experiment: str, sub: str) -> Evidence | None:
    return next((r for r in rows if r.experiment == experiment and r.sub == sub), None)


def e1_advantage(rows: Sequence[Evidence], config: DecisionConfig = DecisionConfig()) -> bool:
    """Whether E1 shows a self-advantage over outside predictors (``config.advantage``, class docstring).

    The rows read are E1's primary paired comparisons (every sub but "self vs mode baseline")
    that were measured; a row that did not run neither helps nor blocks.
    """
    measured = [r for r in rows if r.experiment == "E1" and r.primary and r.sub != "self vs mode baseline"
                and r.effect is not None]
    pos = [reading(r, config)[0] == POSITIVE for r in measured]
    return bool(pos) and (all(pos) if config.advantage == "all" else any(pos))


def decide(rows: Sequence[Evidence], config: DecisionConfig = DecisionConfig(), *, model: str = "M") -> Verdict:
    """The verdict for one model's rows (see the module docstring)."""
    mine = [r for r in rows if r.model == model]
    ex = experiment_readings(mine, config)
    findings = []
    e1_mode = _row(mine, "E1", "self vs mode baseline")
    measured = e1_mode is not None and e1_mode.effect is not None
    if ex.get("E3") == POSITIVE and measured and reading(e1_mode, config)[0] != POSITIVE:
        findings.append("represented but not read out: the object answer is decodable in H (E3 transfer above "
                        "control) while self-prediction is not above its mode baseline (E1)")
    e1_adv = e1_advantage(mine, config)
    advantage = e1_adv or ex.get("E3b") == POSITIVE
    if all(ex.get(e) == POSITIVE for e in SELF_SIM):
        return Verdict(model, "self-simulation", "E2, E3, E5 and E6 all positive", ex, findings)
    no_code = [e for e in ("E3", "E6") if ex.get(e) == NEGATIVE]
    if no_code and advantage:
        return Verdict(model, "privileged",
                       f"{' and '.join(no_code)} negative (no O answer code in H) and a self-advantage "
                       f"({'E1' if e1_adv else 'E3b'})", ex, findings)
    missing = [e for e in SELF_SIM if ex.get(e) != POSITIVE]
    why = (f"self-simulation needs E2, E3, E5, E6 positive; not positive: {', '.join(missing)}. "
           f"privileged needs E3/E6 negative ({'yes' if no_code else 'no'}) and an E1/E3b self-advantage "
           f"({'yes' if advantage else 'no'})")
    return Verdict(model, "inconclusive", why, ex, findings)


__all__ = ["DecisionConfig", "Verdict", "decide", "e1_advantage", "experiment_readings", "read_rows", "reading"]
