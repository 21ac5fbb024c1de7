"""What the battery *should* say about a zoo model, written down before it is run.

A zoo model (:mod:`innerprobe.zoo`) carries a planted route from its hypothetical prompt H to its
answer, so each experiment of the battery has an expected reading, and the battery as a whole an
expected verdict. This module states them, one table, derived from the construction alone (it
reads no measurement):

==========================  =======================  ============================
row (experiment · sub)      simulation route         direct route
==========================  =======================  ============================
E1 · self vs mode baseline  positive                 positive
E1 · self vs cross (peer)   memorised: positive;     memorised: positive;
                            text: not positive       text: not positive
E2 · property after answer  positive                 not positive
E3 · O→H transfer           positive                 not positive
E5 · O→H transplant         positive                 not positive
E6 · answer ablation        positive                 negative
==========================  =======================  ============================

Why, row by row:

* **E1 self vs mode.** Both constructions train H to predict the property of the model's own
  answer; the route check (:func:`innerprobe.zoo.check.run_zoo_check`) requires it above the mode.
* **E1 self vs peer.** The peer is the same construction at another seed. A memorised model's
  answers are a per-seed random association, so the peer cannot know them (the privileged
  information is there by construction); a text model's answer is P's last word for every
  seed, so the peer knows it as well as the model does.
* **E2, E3, E5.** The simulation model's H forms the answer at ``h_last`` (stage 1 trains exactly
  that), so the answer code is there (E3), is formed before the property is written by the last
  MLP (E2), and transplanting O's answer code into H moves the self-prediction (E5). The direct
  model is trained with O's answer subspace projected out of H, so none of these should hold.
* **E6.** Ablating O's answer subspace in H removes what the simulation model reads; the direct
  model was trained to answer with that subspace removed, so the drop is ruled out (negative).
* E1's other rows (third person, text-only), E3b, E4, E7 and E8 have no prediction the
  construction fixes (E3b's disagreement items, for instance, depend on how often two seeds
  disagree); they are reported, not scored.

The **expected verdict**: ``self-simulation`` for the simulation route; ``privileged`` for a
direct route on a memorised task (no answer code in H, and a self-advantage over the peer);
``inconclusive`` for a direct route on a text task (no answer code, but the information is
public: nothing in the decision rule may call that privileged, nor self-simulation).

Matching a reading: ``positive`` and ``negative`` must be met exactly; ``not positive`` is met
by ``negative`` or ``inconclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass

from innerprobe.core.errors import check_choice
from innerprobe.zoo.config import ROUTES, TASK_KINDS

POSITIVE, NEGATIVE, NOT_POSITIVE = "positive", "negative", "not positive"
#: The rows whose reading the construction fixes, as (experiment, sub) of the battery's Evidence.
#: ``None`` as sub: the experiment's reading (any primary row positive → positive).
SCORED_ROWS: tuple[tuple[str, str | None], ...] = (
    ("E1", "self vs mode baseline"),
    ("E1", "self vs cross-model (peer)"),
    ("E2", None),
    ("E3", None),
    ("E5", None),
    ("E6", None),
)


@dataclass(frozen=True)
class Expectation:
    """The expected reading of one row for one planted mechanism, and why."""

    experiment: str
    sub: str | None
    expected: str
    why: str

    @property
    def label(self) -> str:
        return self.experiment if self.sub is None else f"{self.experiment} · {self.sub}"


def _expect(experiment: str, sub: str | None, task_kind: str, route: str) -> Expectation:
    sim = route == "simulation"
    if (experiment, sub) == ("E1", "self vs mode baseline"):
        return Expectation(experiment, sub, POSITIVE, "both routes are trained to predict the own answer's property")
    if experiment == "E1":
        if task_kind == "memorised":
            return Expectation(experiment, sub, POSITIVE, "the peer (another seed) has other planted answers")
        return Expectation(experiment, sub, NOT_POSITIVE, "the peer computes the same public rule (P's last word)")
    if experiment == "E6":
        return Expectation(experiment, sub, POSITIVE if sim else NEGATIVE,
                           "H reads the answer code" if sim else "H was trained with the answer code removed")
    what = {"E2": "the answer forms in H before the last MLP writes the property",
            "E3": "H carries O's answer code at h_last", "E5": "O's answer code, put into H, is what H reads"}[experiment]
    return Expectation(experiment, sub, POSITIVE if sim else NOT_POSITIVE,
                       what if sim else "H was trained with O's answer subspace projected out")


def expectations(task_kind: str, route: str) -> list[Expectation]:
    """The expected readings of :data:`SCORED_ROWS` for one planted mechanism (module docstring)."""
    check_choice("task_kind", task_kind, TASK_KINDS)
    check_choice("route", route, ROUTES)
    return [_expect(e, s, task_kind, route) for e, s in SCORED_ROWS]


def expected_verdict(task_kind: str, route: str) -> str:
    """``self-simulation`` / ``privileged`` / ``inconclusive``, as the module docstring derives it."""
    check_choice("task_kind", task_kind, TASK_KINDS)
    check_choice("route", route, ROUTES)
    if route == "simulation":
        return "self-simulation"
    return "privileged" if task_kind == "memorised" else "inconclusive"


def matches(expected: str, observed: str) -> bool:
    """Whether an observed reading (positive / negative / inconclusive) meets an expected one."""
    if expected == NOT_POSITIVE:
        return observed != POSITIVE
    return observed == expected


__all__ = ["NEGATIVE", "NOT_POSITIVE", "POSITIVE", "SCORED_ROWS", "Expectation", "expectations",
           "expected_verdict", "matches"]
