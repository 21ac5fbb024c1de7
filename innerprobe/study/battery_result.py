"""``BatteryResult``: the verdict table of a battery, its per-model verdicts and stage times."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from innerprobe.core.result import Result, Summary
from innerprobe.study.decision import Verdict
from innerprobe.study.evidence import Evidence

#: Longest row name shown in a figure label (the table has the whole name).
LABEL_NAME = 40
COLUMNS = ("model", "experiment", "sub", "name", "effect", "ci_low", "ci_high", "control", "n", "supports", "why")


@dataclass
class BatterySummary(Summary):
    """Per model its :class:`Verdict`; the settings' digest; wall seconds per stage."""

    verdicts: list[Verdict]
    config_digest: str
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _labels(part: pd.DataFrame) -> pd.Series:
    """One y label per row: model, experiment and sub-experiment, plus the row's name where
    several rows share those (a paired difference and its two sides)."""
    base = part["model"] + " " + part["experiment"] + " " + part["sub"]
    shared = base.duplicated(keep=False)
    name = part["name"].map(lambda s: s if len(s) <= LABEL_NAME else s[: LABEL_NAME - 1] + "…")
    return base.where(~shared, base + " · " + name)


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

    def markdown(self, *, primary_only: bool = True) -> str:
        """The verdict table as Markdown (for a note or a results file): one row per Evidence row
        (``primary_only``: the rows the decision rule votes on), effect with its 95% CI beside the
        control (0 for a paired difference) and the hypothesis it supports. A row with no effect
        estimate (the experiment ran but had nothing to measure, e.g. E6 when self-prediction is
        not above its baseline) shows why in its effect cell."""
        lines = ["| model | exp | sub | effect [95% CI] | control | n | supports |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if primary_only and not r.primary:
                continue
            e, c = r.effect, r.control
            effect = _no_effect(r.why) if e is None else f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"
            control = "—" if e is None else "0" if c is None else f"{c.value:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]"
            lines.append(f"| {r.model} | {r.experiment} | {r.sub} | {effect} | {control} | {r.n} | {r.supports} |")
        return "\n".join(lines)

    def figure(self, experiment: str | None = None) -> go.Figure:
        """Effect (with its CI) beside its control, one marker per row that ran, one panel per unit.

        Rows are measured in different units (proportions, layers, recovery, logits); each unit
        gets its own x axis so a layer gap does not flatten every proportion to a dot.
        ``experiment`` (e.g. ``"E3"``) keeps only that experiment's rows (the report's sections).
        """
        t = self.table.assign(unit=[r.unit for r in self.rows]).dropna(subset=["effect"])
        if experiment is not None:
            t = t[t["experiment"] == experiment]
        units = list(dict.fromkeys(t["unit"])) or ["proportion"]
        heights = [max(1, int((t["unit"] == u).sum())) for u in units]
        fig = make_subplots(rows=len(units), cols=1, row_heights=heights, vertical_spacing=0.12,
                            subplot_titles=[f"unit: {u}" for u in units])
        for i, unit in enumerate(units, start=1):
            part = t[t["unit"] == unit]
            label = _labels(part)
            fig.add_trace(go.Scatter(
                x=part["effect"], y=label, mode="markers", name="effect", legendgroup="effect",
                showlegend=i == 1, marker={"color": "#1f77b4"},
                error_x={"type": "data", "symmetric": False, "array": part["ci_high"] - part["effect"],
                         "arrayminus": part["effect"] - part["ci_low"]}), row=i, col=1)
            fig.add_trace(go.Scatter(x=part["control"], y=label, mode="markers", name="control",
                                     legendgroup="control", showlegend=i == 1,
                                     marker={"symbol": "x", "color": "#d62728"}), row=i, col=1)
        what = f"{experiment}" if experiment is not None else "Battery"
        fig.update_layout(title=f"{what}: each effect (95% CI) beside its control",
                          height=220 + 34 * len(t) + 60 * len(units))
        return fig

def _no_effect(why: str) -> str:
    """The effect cell of a row without an estimate: its reason, short, Markdown-safe."""
    reason = why.split(": ", 1)[-1].split(" (")[0].replace("|", "/")
    return f"no estimate: {reason[:120]}" if reason else "no estimate"


__all__ = ["BatteryResult", "BatterySummary", "COLUMNS"]
