"""Evidence rows from a paired comparison: the paired difference (voted), its two sides (shown).

Most battery comparisons are paired: the same items with the answer subspace ablated and with a
random one, steered along the answer direction and along a random vector, injected and not. The
honest test is the paired difference (bootstrap CI, exact McNemar for 0/1 scores), so that is
the row the decision rule reads (``control=None``: the difference is already against its
control). Beside it, a secondary row shows the two sides as effect and control, each with its
own interval, so the report shows what was compared and not only by how much.
"""

from __future__ import annotations

from innerprobe.core.stats import Estimate, PairedDiff
from innerprobe.study.evidence import Evidence


def negated(est: Estimate) -> Estimate:
    """``-est`` (a drop read as a positive number): value and interval flipped."""
    return Estimate(-est.value, -est.ci_high, -est.ci_low, est.n, f"negated: {est.method}")


def paired_rows(experiment: str, sub: str, name: str, diff: PairedDiff | None, *, model: str, primary: bool = True,
                unit: str = "proportion", sides: str = "") -> list[Evidence]:
    """The paired difference ``a − b`` as a row (``name``, voted when ``primary``), and, when
    ``sides`` names it, a secondary row with ``a`` as the effect and ``b`` as its control."""
    if diff is None:
        return []
    rows = [Evidence(experiment, sub, name, diff.diff, None, diff.diff.n, model=model, unit=unit, primary=primary)]
    if sides:
        rows.append(Evidence(experiment, sub, sides, diff.a, diff.b, diff.a.n, model=model, unit=unit, primary=False))
    return rows


__all__ = ["negated", "paired_rows"]
