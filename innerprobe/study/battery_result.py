"""``BatteryResult``: the verdict table of a battery, its per-model verdicts and stage times."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go

from innerprobe.core.result import Result, Summary
from innerprobe.study.decision import Verdict
from innerprobe.study.evidence import Evidence

COLUMNS = ("model", "experiment", "sub", "name", "effect", "ci_low", "ci_high", "control", "n", "supports", "why")


@dataclass
class BatterySummary(Summary):
    """Per model its :class:`Verdict`; the settings' digest; wall seconds per stage."""

    verdicts: list[Verdict]
    config_digest: str
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class BatteryResult(Result):
    """Every Evidence row (read by the decision rule), the verdicts, config and provenance."""

    rows: list[Evidence]
    summary: BatterySummary
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    stage: ClassVar[str] = "battery"

    @property
    def table(self) -> pd.DataFrame:
        """The verdict table: model, experiment, effect, its 95% CI, control, n, supports, why."""
        recs = []
        for r in self.rows:
            e, c = r.effect, r.control
            recs.append({"model": r.model, "experiment": r.experiment, "sub": r.sub, "name": r.name,
                         "effect": None if e is None else e.value, "ci_low": None if e is None else e.ci_low,
                         "ci_high": None if e is None else e.ci_high,
                         "control": None if e is None else (0.0 if c is None else c.value),
                         "n": r.n, "supports": r.supports, "why": r.why})
        return pd.DataFrame(recs, columns=list(COLUMNS))

    def figure(self) -> go.Figure:
        """Effect (with its CI) beside its control, one marker per row that ran."""
        t = self.table.dropna(subset=["effect"])
        label = t["model"] + " " + t["experiment"] + " " + t["sub"]
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=t["effect"], y=label, mode="markers", name="effect",
                                 error_x={"type": "data", "symmetric": False, "array": t["ci_high"] - t["effect"],
                                          "arrayminus": t["effect"] - t["ci_low"]}))
        fig.add_trace(go.Scatter(x=t["control"], y=label, mode="markers", name="control", marker={"symbol": "x"}))
        fig.update_layout(title="Battery: each effect (95% CI) beside its control", height=200 + 30 * len(t),
                          xaxis_title="effect (own units per row)")
        return fig


__all__ = ["BatteryResult", "BatterySummary", "COLUMNS"]
