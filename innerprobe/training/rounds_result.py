"""The self-training loop's result: :class:`SelfTrainResult`, its summary, figures and HTML report.

``.table`` is the long table of :mod:`innerprobe.training.rounds_measure` over every round
(round 0 is the base model M_0); ``.rounds`` one row per finished round (rows trained, items kept
by the policy, epochs, held-out loss, wall seconds per phase); ``.summary`` the first and last
round's key estimates; ``.figure()`` one subplot per measure over rounds (mean of tasks ×
properties when several, each with its interval); :meth:`SelfTrainResult.write_report` the HTML
page (``HtmlPage``: plotly inline, tables, the numbers as a JSON block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from innerprobe.core.html import HtmlPage
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate

MEASURE_ORDER = (
    "self_accuracy", "mode_baseline", "cross_accuracy", "text_only", "self_minus_cross", "calibration_mad", "calibration_floor",
    "changed_share", "answer_entropy", "distinct_answers", "object_compliance", "gt_accuracy",
)
PANELS = {
    "self-prediction vs controls": ("self_accuracy", "mode_baseline", "cross_accuracy", "text_only"),
    "self − cross": ("self_minus_cross",),
    "calibration MAD (pp) vs its noise floor": ("calibration_mad", "calibration_floor"),
    "drift: share changed vs M_0": ("changed_share",),
    "answer entropy (bits)": ("answer_entropy",),
    "distinct answers": ("distinct_answers",),
    "object compliance": ("object_compliance",),
    "ground-truth accuracy": ("gt_accuracy",),
}


@dataclass
class SelfTrainSummary(Summary):
    """First (M_0) and last round of the headline measures, pooled over tasks × properties
    only when one combination exists (else the first combination's; read ``table`` for all).

    Attributes:
        policy, rounds_done, rounds: the data policy and how many finetuning rounds finished of how many.
        self_accuracy_first, self_accuracy_last: self-prediction accuracy of M_0 and M_last.
        mode_baseline_last, cross_accuracy_last, text_only_last: M_last's controls, same items.
        changed_share_last: share of eval answers whose property differs from M_0's.
        gt_accuracy_first, gt_accuracy_last: accuracy on the first ground-truth task.
        seconds: wall seconds of the whole run, summed over rounds' phases.
    """

    policy: str
    rounds_done: int
    rounds: int
    self_accuracy_first: Estimate | None
    self_accuracy_last: Estimate | None
    mode_baseline_last: Estimate | None
    cross_accuracy_last: Estimate | None
    text_only_last: Estimate | None
    changed_share_last: Estimate | None
    gt_accuracy_first: Estimate | None
    gt_accuracy_last: Estimate | None
    seconds: float


def _estimate(table: pd.DataFrame, measure: str, k: int) -> Estimate | None:
    rows = table[(table["measure"] == measure) & (table["round"] == k)]
    if rows.empty or not math.isfinite(float(rows["value"].iloc[0])):
        return None
    r = rows.iloc[0]
    return Estimate(float(r["value"]), float(r["ci_low"]), float(r["ci_high"]), int(r["n"]), str(r["method"]))


@dataclass(eq=False)
class SelfTrainResult(Result):
    """Every round's measurements of a self-training run (see the module docstring)."""

    stage: ClassVar[str] = "selftrain"

    table: pd.DataFrame
    rounds: pd.DataFrame
    policy: str = ""
    n_rounds: int = 0
    out_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> SelfTrainSummary:
        t = self.table
        last = int(t["round"].max()) if len(t) else 0
        return SelfTrainSummary(
            policy=self.policy, rounds_done=max(0, len(self.rounds) - 1), rounds=self.n_rounds,
            self_accuracy_first=_estimate(t, "self_accuracy", 0), self_accuracy_last=_estimate(t, "self_accuracy", last),
            mode_baseline_last=_estimate(t, "mode_baseline", last), cross_accuracy_last=_estimate(t, "cross_accuracy", last),
            text_only_last=_estimate(t, "text_only", last), changed_share_last=_estimate(t, "changed_share", last),
            gt_accuracy_first=_estimate(t, "gt_accuracy", 0), gt_accuracy_last=_estimate(t, "gt_accuracy", last),
            seconds=float(self.rounds["seconds_total"].sum()) if "seconds_total" in self.rounds else 0.0,
        )

    def figure(self) -> go.Figure:
        """One subplot per measurement over rounds; a line per (task, property[, measure]) with its CI."""
        names = list(PANELS)
        cols = 2
        fig = make_subplots(rows=math.ceil(len(names) / cols), cols=cols, subplot_titles=names)
        for i, name in enumerate(names):
            r, c = i // cols + 1, i % cols + 1
            for measure in PANELS[name]:
                sub = self.table[self.table["measure"] == measure]
                for (task, prop), g in sub.groupby(["task", "property"], sort=True):
                    g = g.sort_values("round")
                    label = f"{measure} · {task}" + (f"/{prop}" if prop else "")
                    fig.add_scatter(
                        x=g["round"], y=g["value"], mode="lines+markers", name=label, row=r, col=c,
                        error_y=dict(type="data", symmetric=False, array=g["ci_high"] - g["value"],
                                     arrayminus=g["value"] - g["ci_low"]),
                    )
            fig.update_xaxes(title_text="round (0 = base model)", dtick=1, row=r, col=c)
        fig.update_layout(title=f"Self-training ({self.policy}): measures over rounds", height=300 * math.ceil(len(names) / cols))
        return fig

    def _cross_words(self) -> str:
        peer = self.config.get("cross_model") or "the base model M_0"
        if self.config.get("cross", "untrained") == "trained":
            return f"{peer} finetuned on M_k's own behaviour (other fresh items; same LoRA config and early stopping)"
        return f"the untrained {peer} predicting M_k's behaviour"

    def write_report(self, path: str | Path) -> Path:
        """The HTML page: figure, the tidy table, the rounds' phases, the numbers as JSON."""
        page = HtmlPage(f"Self-training rounds · policy {self.policy}")
        page.text(
            "Round 0 is the base model M_0; round k is M_k, trained on M_{k-1}'s own data. The cross-predictor is "
            f"{self._cross_words()}. Proportions: Wilson; self − cross: paired "
            "bootstrap + exact McNemar p; entropy and distinct answers: jackknife; calibration MAD: bootstrap over items; its noise floor: "
            "the MAD of a perfect predictor given the same samples (simulated from the Jeffreys posterior of each item's counts; it errs low).",
            css_class="note",
        )
        page.heading("Measures over rounds")
        page.figure(self.figure())
        page.heading("Rounds: data, training, wall time per phase")
        page.table(self.rounds)
        page.heading("All measurements")
        order = {m: i for i, m in enumerate(MEASURE_ORDER)}
        page.table(self.table.sort_values(["task", "property", "measure", "round"], key=lambda s: s.map(order) if s.name == "measure" else s))
        page.json_block({"summary": self.summary.to_dict(), "table": self.table.to_dict("records"),
                         "rounds": self.rounds.to_dict("records"), "config": self.config})
        return page.write(path)


__all__ = ["MEASURE_ORDER", "PANELS", "SelfTrainResult", "SelfTrainSummary"]
