"""The ablation experiment's result: accuracy with the answer subspace removed, beside its controls.

One :class:`AblationEffect` per reading (``hypothetical``: the self-prediction; ``object``: O's
own answer; ``control``: an H question that needs no answer) and ablation mode (``zero`` /
``mean``): accuracy unablated, with the answer subspace projected out and with a random
subspace of equal rank and matched variance projected out (Wilson intervals), the paired
differences answer − random and answer − unablated (exact McNemar), and the mean change of
the log-probability of the correct label (bootstrap CIs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go

from innerprobe.core import stats
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, PairedDiff

__all__ = ["AblationEffect", "AblationResult", "AblationSummary", "ablation_effect"]


@dataclass
class AblationEffect:
    """Accuracy of one reading under one ablation mode: answer subspace vs random vs none."""

    reading: str
    mode: str
    n: int
    unablated: Estimate
    answer: Estimate
    random: Estimate
    answer_vs_random: PairedDiff
    answer_vs_unablated: PairedDiff
    dlogp_answer: Estimate
    dlogp_random: Estimate


@dataclass
class AblationSummary(Summary):
    """Counts, the setting, the mode baseline of the self-prediction and one effect per cell."""

    property: str
    start_layer: int
    layers: list[int]
    rank: int
    site: str
    n_items: int
    n_scored: int
    dropped: dict[str, int]
    mode_baseline: Estimate | None
    variance_ratio: list[float] = field(default_factory=list)
    mean_source: dict[str, str] = field(default_factory=dict)
    effects: list[AblationEffect] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        """One row per estimate: ``reading, mode, measure, value, ci_low, ci_high, n, p``."""
        rows = []
        for e in self.effects:
            for name in ("unablated", "answer", "random", "dlogp_answer", "dlogp_random"):
                rows.append({"reading": e.reading, "mode": e.mode, "measure": name, **getattr(e, name).to_dict(),
                             "p": None})
            for name in ("answer_vs_random", "answer_vs_unablated"):
                d = getattr(e, name)
                rows.append({"reading": e.reading, "mode": e.mode, "measure": name, **d.diff.to_dict(),
                             "p": d.mcnemar_p if d.mcnemar_p is not None else d.p_value})
        return pd.DataFrame(rows)


def ablation_effect(rows: pd.DataFrame, reading: str, mode: str, *, n_boot: int, seed: int) -> AblationEffect:
    """The :class:`AblationEffect` of one reading and mode from the per-item table (paired by id)."""
    sub = rows[rows["reading"] == reading]
    none = sub[sub["arm"] == "none"].set_index("id")
    ans = sub[(sub["arm"] == "answer") & (sub["mode"] == mode)].set_index("id").loc[none.index]
    rnd = sub[(sub["arm"] == "random") & (sub["mode"] == mode)].set_index("id").loc[none.index]
    c0, ca, cr = (f["correct"].to_numpy(float) for f in (none, ans, rnd))
    n = len(none)
    return AblationEffect(
        reading=reading, mode=mode, n=n,
        unablated=stats.proportion(int(c0.sum()), n),
        answer=stats.proportion(int(ca.sum()), n),
        random=stats.proportion(int(cr.sum()), n),
        answer_vs_random=stats.paired_bootstrap_diff(ca, cr, n_boot=n_boot, seed=seed),
        answer_vs_unablated=stats.paired_bootstrap_diff(ca, c0, n_boot=n_boot, seed=seed),
        dlogp_answer=stats.bootstrap_ci(ans["dlogp"].to_numpy(float), n_boot=n_boot, seed=seed),
        dlogp_random=stats.bootstrap_ci(rnd["dlogp"].to_numpy(float), n_boot=n_boot, seed=seed),
    )


@dataclass
class AblationResult(Result):
    """Projecting the answer subspace out of H (and O) from a layer on, against random subspaces (E6).

    ``table``: one row per item × reading × arm (``none`` / ``answer`` / ``random``) × mode with
    the truth, the prediction, ``correct`` and ``dlogp`` (change of log p of the truth label).
    ``subspaces``: the record (rank, layer, classes, matched variance) of every subspace used.
    """

    stage: ClassVar[str] = "ablate"

    table: pd.DataFrame
    summary: AblationSummary
    subspaces: list[dict[str, Any]]
    config: dict[str, Any]
    provenance: dict[str, Any]

    def figure(self) -> go.Figure:
        """Accuracy per reading and mode: unablated, answer subspace removed, random removed."""
        fig = go.Figure()
        cells = [f"{e.reading}/{e.mode}" for e in self.summary.effects]
        for arm, name in (("unablated", "unablated"), ("answer", "answer subspace removed"),
                          ("random", "random subspace removed (matched variance)")):
            ests = [getattr(e, arm) for e in self.summary.effects]
            fig.add_trace(go.Bar(
                x=cells, y=[e.value for e in ests], name=name,
                error_y={"type": "data", "symmetric": False, "array": [e.ci_high - e.value for e in ests],
                         "arrayminus": [e.value - e.ci_low for e in ests]},
            ))
        mb = self.summary.mode_baseline
        if mb is not None:
            fig.add_hline(y=mb.value, line_dash="dot", annotation_text="mode baseline (self-prediction)")
        fig.update_layout(barmode="group", yaxis_title="accuracy (Wilson 95% CI)",
                          title=f"ablation of a rank-{self.summary.rank} answer subspace from layer "
                                f"{self.summary.start_layer} ({self.summary.site}), n={self.summary.n_scored}")
        return fig
