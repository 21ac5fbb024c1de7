"""One row of the battery's verdict table: what an experiment measured, beside its control.

Every experiment of the battery (``interp_methods.md`` §3, E1-E8 and E3b) is reduced to one or a
few :class:`Evidence` rows: an ``effect`` (an :class:`~innerprobe.core.stats.Estimate` with its
95% interval over items) and the ``control`` it must be read against (mode baseline, random
direction, shuffled labels, peer model, ...), on ``n`` items. The decision rule
(:mod:`innerprobe.study.decision`) turns each row into the hypothesis it supports and the
battery's verdict; a row whose experiment could not run carries ``effect=None`` and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from innerprobe.core.errors import check_choice
from innerprobe.core.stats import Estimate

EXPERIMENTS = ("E1", "E2", "E3", "E3b", "E4", "E5", "E6", "E7", "E8")
HYPOTHESES = ("self-simulation", "privileged", "inconclusive")
#: What an effect is measured in; each unit has its own minimum effect in ``DecisionConfig``.
UNITS = ("proportion", "layers", "recovery", "logits")


@dataclass(frozen=True)
class Evidence:
    """One measured comparison of one experiment.

    Attributes:
        experiment: ``E1`` .. ``E8`` or ``E3b``.
        sub: which sub-experiment (``"self vs text-only"``, ``"O->H transfer"``, ...).
        name: a short human name of the measure.
        effect: the measured quantity with its interval (``None``: not run, see ``why``).
        control: what the effect must exceed (``None`` when the effect is already a
            difference against its control, e.g. a paired self − peer gap; then 0 is the control).
        n: items the effect is estimated on.
        supports: the hypothesis the row supports (set by the decision rule).
        why: one line saying why.
        model: which model the row is about (``M``, ``M1``).
        unit: what ``effect`` is measured in (one of :data:`UNITS`).
        primary: whether the decision rule reads this row for the experiment's verdict (a
            secondary row, e.g. a third-person framing, is reported but not voted).
    """

    experiment: str
    sub: str
    name: str
    effect: Estimate | None
    control: Estimate | None
    n: int
    supports: str = "inconclusive"
    why: str = ""
    model: str = "M"
    unit: str = "proportion"
    primary: bool = True

    def __post_init__(self) -> None:
        check_choice("experiment", self.experiment, EXPERIMENTS)
        check_choice("hypothesis", self.supports, HYPOTHESES)
        check_choice("unit", self.unit, UNITS)

    @property
    def ran(self) -> bool:
        return self.effect is not None

    def with_reading(self, supports: str, why: str) -> Evidence:
        return replace(self, supports=supports, why=why)


def not_run(experiment: str, sub: str, why: str, *, model: str = "M") -> Evidence:
    """An explicit inconclusive row for an experiment that did not run, saying why."""
    return Evidence(experiment, sub, "not run", None, None, 0, "inconclusive", why, model)


__all__ = ["EXPERIMENTS", "HYPOTHESES", "UNITS", "Evidence", "not_run"]
