"""The steering experiment's result: per-item readings, the effect beside its control, tracking.

:class:`SteeringResult` follows the result protocol (``.table``, ``.summary``, ``.figure()``,
``.save()``/``.load()``). Its summary holds one :class:`SteeringEffect` per steered place (H's
quote, all of H, O's last token): how often the reading moved to the target with the answer
direction, with a norm-matched random vector, and unsteered (Wilson intervals), the paired
McNemar test direction vs random, and the logit shifts with bootstrap intervals. The white-box
behaviour shift is one :class:`Tracking` per predictor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from innerprobe.core import stats
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, PairedDiff

__all__ = ["SteeringEffect", "SteeringResult", "SteeringSummary", "Tracking", "effect_of", "tracking_of"]


@dataclass
class SteeringEffect:
    """One steered place: the answer direction against a norm-matched random vector, same items.

    ``toward_*``: share of items whose forced choice is the target label after steering along
    the direction, along the random vector, and unsteered. ``direction_vs_random``: paired
    difference of those 0/1 outcomes (exact McNemar p). ``shift_*``: mean change of
    ``log p(target) − log p(source)`` (steered minus unsteered) with bootstrap CIs;
    ``shift_diff``: direction minus random, paired.
    """

    condition: str
    reading: str
    n: int
    toward_direction: Estimate
    toward_random: Estimate
    toward_unsteered: Estimate
    direction_vs_random: PairedDiff
    shift_direction: Estimate
    shift_random: Estimate
    shift_diff: PairedDiff


@dataclass
class Tracking:
    """Does a self-prediction follow O's *new* (steered) behaviour or its old one?

    Over the ``n_changed`` items whose object answer's property changed when O was steered:
    ``follows_new`` / ``follows_old`` are the shares of self-predictions equal to the new / old
    property, ``new_minus_old`` their paired difference with the exact McNemar p-value.
    """

    predictor: str
    n_changed: int
    follows_new: Estimate | None
    follows_old: Estimate | None
    new_minus_old: PairedDiff | None


@dataclass
class SteeringSummary(Summary):
    """Counts, the setting, one effect per steered place and the behaviour-shift tracking."""

    property: str
    layer: int
    site: str
    scale: float
    n_items: int
    n_steered: int
    dropped: dict[str, int]
    mean_direction_norm: float
    effects: list[SteeringEffect] = field(default_factory=list)
    tracking: list[Tracking] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        """One row per estimate: ``condition, measure, value, ci_low, ci_high, n, p``."""
        rows = []
        for e in self.effects:
            for name in ("toward_direction", "toward_random", "toward_unsteered", "shift_direction", "shift_random"):
                est = getattr(e, name)
                rows.append({"condition": e.condition, "measure": name, **est.to_dict(), "p": None})
            for name in ("direction_vs_random", "shift_diff"):
                d = getattr(e, name)
                p = d.mcnemar_p if d.mcnemar_p is not None else d.p_value
                rows.append({"condition": e.condition, "measure": name, **d.diff.to_dict(), "p": p})
        for t in self.tracking:
            for name in ("follows_new", "follows_old"):
                est = getattr(t, name)
                if est is not None:
                    rows.append({"condition": f"tracking:{t.predictor}", "measure": name, **est.to_dict(), "p": None})
            if t.new_minus_old is not None:
                rows.append({"condition": f"tracking:{t.predictor}", "measure": "new_minus_old",
                             **t.new_minus_old.diff.to_dict(), "p": t.new_minus_old.mcnemar_p})
        return pd.DataFrame(rows)


def effect_of(rows: pd.DataFrame, condition: str, *, n_boot: int, seed: int) -> SteeringEffect:
    """The :class:`SteeringEffect` of one condition from the per-item table (items paired by id)."""
    d = rows[(rows["condition"] == condition) & (rows["arm"] == "direction")].set_index("id")
    r = rows[(rows["condition"] == condition) & (rows["arm"] == "random")].set_index("id").loc[d.index]
    hit_d, hit_r = d["hit"].to_numpy(bool), r["hit"].to_numpy(bool)
    n = len(d)
    return SteeringEffect(
        condition=condition,
        reading=str(d["reading"].iloc[0]),
        n=n,
        toward_direction=stats.proportion(int(hit_d.sum()), n),
        toward_random=stats.proportion(int(hit_r.sum()), n),
        toward_unsteered=stats.proportion(int(d["hit_before"].to_numpy(bool).sum()), n),
        direction_vs_random=stats.paired_bootstrap_diff(hit_d.astype(float), hit_r.astype(float), n_boot=n_boot, seed=seed),
        shift_direction=stats.bootstrap_ci(d["shift"].to_numpy(float), n_boot=n_boot, seed=seed),
        shift_random=stats.bootstrap_ci(r["shift"].to_numpy(float), n_boot=n_boot, seed=seed),
        shift_diff=stats.paired_bootstrap_diff(d["shift"].to_numpy(float), r["shift"].to_numpy(float),
                                               n_boot=n_boot, seed=seed),
    )


def tracking_of(frame: pd.DataFrame, predictor: str, *, n_boot: int, seed: int) -> Tracking:
    """:class:`Tracking` of one predictor from the tracking table (changed items only)."""
    sub = frame[(frame["predictor"] == predictor) & frame["changed"]]
    if sub.empty:
        return Tracking(predictor, 0, None, None, None)
    new, old = sub["follows_new"].to_numpy(float), sub["follows_old"].to_numpy(float)
    n = len(sub)
    return Tracking(predictor, n, stats.proportion(int(new.sum()), n), stats.proportion(int(old.sum()), n),
                    stats.paired_bootstrap_diff(new, old, n_boot=n_boot, seed=seed))


@dataclass
class SteeringResult(Result):
    """Steering along answer directions vs norm-matched random vectors (E5/E7).

    ``table``: one row per item × condition × arm (``direction`` / ``random``) with the
    current and target answers, the labels read before and after, ``hit`` and ``shift``.
    ``tracking``: one row per changed-or-not item × predictor (the behaviour-shift test).
    ``directions``: the record (provenance, norm, layer) of every vector used.
    """

    stage: ClassVar[str] = "steer"

    table: pd.DataFrame
    tracking: pd.DataFrame
    summary: SteeringSummary
    directions: list[dict[str, Any]]
    config: dict[str, Any]
    provenance: dict[str, Any]

    def figure(self) -> go.Figure:
        """Share moved to the target per steered place: direction beside random and unsteered."""
        fig = go.Figure()
        conds = [e.condition for e in self.summary.effects]
        for arm, name in (("toward_direction", "answer direction"), ("toward_random", "norm-matched random"),
                          ("toward_unsteered", "unsteered")):
            ests = [getattr(e, arm) for e in self.summary.effects]
            fig.add_trace(go.Bar(
                x=conds, y=[e.value for e in ests], name=name,
                error_y={"type": "data", "symmetric": False, "array": [e.ci_high - e.value for e in ests],
                         "arrayminus": [e.value - e.ci_low for e in ests]},
            ))
        fig.update_layout(barmode="group", yaxis_title="share at the target label (Wilson 95% CI)",
                          title=f"steering at layer {self.summary.layer} ({self.summary.site}), "
                                f"scale {self.summary.scale:g}: n={self.summary.n_steered}")
        return fig

    def shifts(self) -> pd.DataFrame:
        """Mean logit shift per condition and arm (a glance; the summary has the CIs)."""
        return self.table.groupby(["condition", "arm"])["shift"].agg(["mean", "count"]).reset_index()


def mean_norm(records: list[dict[str, Any]]) -> float:
    norms = [r["norm"] for r in records if r.get("kind") == "diff_means"]
    return float(np.mean(norms)) if norms else 0.0
