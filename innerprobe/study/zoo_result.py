"""``ZooStudyResult``: the confusion table of planted mechanism vs the battery's verdict.

One row per (zoo model, scored row of :data:`~innerprobe.study.zoo_expectations.SCORED_ROWS`):
the planted task kind, route and seed, the expected reading, the battery's reading with the
effect, its 95% CI, control and ``n``, and whether they match; plus one ``verdict`` row per model
(expected vs battery verdict). The summary counts matches over models and over held-out seeds,
per experiment, and records each model's independent route check (``route_verified``): a
verdict on a model whose planted route did not take is a statement about a broken build, and is
counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go

from innerprobe.core import stats
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate

COLUMNS = ("model", "task_kind", "route", "seed", "held_out", "route_verified", "row", "expected", "observed",
           "match", "effect", "ci_low", "ci_high", "control", "n", "why")

_FLOATS = ("effect", "ci_low", "ci_high", "control")


def frame(records: list[dict]) -> pd.DataFrame:
    """The confusion table from its records, typed (numbers as floats, NaN where a row has none)."""
    df = pd.DataFrame(records, columns=list(COLUMNS))
    return df.astype({c: float for c in _FLOATS} | {"seed": int, "n": int, "held_out": bool,
                                                      "route_verified": bool, "match": bool})


@dataclass
class ZooModelOutcome:
    """One zoo model: its planted mechanism, the route check, and the battery's verdict."""

    name: str
    task_kind: str
    route: str
    seed: int
    path: str
    route_verified: bool
    check_why: str
    expected_verdict: str
    verdict: str
    verdict_why: str
    build_seconds: float
    check_seconds: float
    battery_seconds: float


@dataclass
class ZooStudySummary(Summary):
    """Verdict matches (all models, held-out seeds, route-verified models) and per-row match rates."""

    verdict_match: Estimate
    verdict_match_held_out: Estimate
    verdict_match_verified: Estimate | None
    row_match: dict[str, Estimate]
    outcomes: list[ZooModelOutcome]
    held_out_seeds: list[int]
    config: dict[str, Any] = field(default_factory=dict)


def _rate(flags: list[bool]) -> Estimate | None:
    return stats.accuracy([float(f) for f in flags]) if flags else None


def summarise(table: pd.DataFrame, outcomes: list[ZooModelOutcome], held_out: list[int],
              config: dict[str, Any]) -> ZooStudySummary:
    """Match rates with Wilson intervals (over models for the verdict, per scored row)."""
    verdicts = table[table["row"] == "verdict"]
    rows = table[table["row"] != "verdict"]
    held = verdicts[verdicts["held_out"]]
    verified = verdicts[verdicts["route_verified"]]
    per_row = {str(name): _rate(list(part["match"])) for name, part in rows.groupby("row", sort=False)}
    return ZooStudySummary(
        verdict_match=_rate(list(verdicts["match"])), verdict_match_held_out=_rate(list(held["match"])),
        verdict_match_verified=_rate(list(verified["match"])), row_match={k: v for k, v in per_row.items() if v},
        outcomes=outcomes, held_out_seeds=held_out, config=config,
    )


@dataclass
class ZooStudyResult(Result):
    """The confusion table (``table``), its summary, and every model's battery verdict."""

    table: pd.DataFrame
    summary: ZooStudySummary

    stage: ClassVar[str] = "zoo_study"

    def confusion(self) -> pd.DataFrame:
        """Planted mechanism (task kind / route) × battery verdict: how many models landed where."""
        v = self.table[self.table["row"] == "verdict"]
        planted = v["task_kind"] + "/" + v["route"] + " (expect " + v["expected"] + ")"
        return pd.crosstab(planted, v["observed"]).rename_axis(index="planted", columns="verdict")

    def markdown(self) -> str:
        """Per model: each scored row's expected vs observed reading (✓/✗), and the verdict."""
        t = self.table
        labels = list(dict.fromkeys(t["row"]))
        lines = ["| model | verified | " + " | ".join(labels) + " |", "|---" * (len(labels) + 2) + "|"]
        for model, part in t.groupby("model", sort=False):
            by = {r.row: r for r in part.itertuples()}
            cells = []
            for lab in labels:
                r = by.get(lab)
                cells.append("—" if r is None else f"{'✓' if r.match else '✗'} {r.observed} (exp. {r.expected})")
            lines.append(f"| {model} | {'yes' if part['route_verified'].iloc[0] else 'no'} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        """A grid: zoo model × scored row, green where the battery matched the planted mechanism."""
        t = self.table
        models = list(dict.fromkeys(t["model"]))
        labels = list(dict.fromkeys(t["row"]))
        z, text = [], []
        for m in models:
            part = t[t["model"] == m].set_index("row")
            z.append([float(part.loc[lab, "match"]) if lab in part.index else None for lab in labels])
            text.append([f"{part.loc[lab, 'observed']}<br>(exp. {part.loc[lab, 'expected']})" if lab in part.index
                         else "" for lab in labels])
        fig = go.Figure(go.Heatmap(z=z, x=labels, y=models, text=text, texttemplate="%{text}", zmin=0, zmax=1,
                                   colorscale=[[0, "#f4a6a6"], [1, "#9fd89f"]], showscale=False))
        s = self.summary
        fig.update_layout(title=f"Zoo: battery vs planted mechanism (verdicts matched {s.verdict_match})",
                          height=160 + 48 * len(models))
        return fig


__all__ = ["COLUMNS", "frame", "ZooModelOutcome", "ZooStudyResult", "ZooStudySummary", "summarise"]
