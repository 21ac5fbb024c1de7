"""What a behaviour run returns: the per-item table and a typed summary (the result protocol).

:class:`BehaviorResult` follows :mod:`innerprobe.core.result`: ``.table`` is the per-item
DataFrame (prompts, answers, property values, predictions, ``correct``, ``scored``),
``.summary`` a :class:`BehaviorSummary` whose numbers are
:class:`~innerprobe.core.stats.Estimate`\\ s (value, interval, ``n``, method),
``.figure()`` a plotly figure, and ``.save(dir)`` / ``BehaviorResult.load(dir)`` a directory of
open formats. Reading a summary::

    s = result.summary
    s.self.accuracy            # Estimate: self-prediction accuracy, Wilson 95% CI, n = s.n_scored
    s.mode_baseline.estimate   # always guessing the model's most common value, same items
    s.cross.accuracy           # None-safe: s.cross is None without a cross-predictor
    s.self_minus_cross.diff    # paired bootstrap CI; .mcnemar_p the exact McNemar p-value

Every estimate of one summary sits on the same scored items (``result.scored_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go

from innerprobe.core.errors import UnknownNameError
from innerprobe.core.io import write_json
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, ModeBaseline, PairedDiff

INTERVALS = "proportions: Wilson score; self − cross: paired bootstrap + exact McNemar"
TABLE_FILE = "behavior.parquet"
SUMMARY_FILE = "summary.json"
FIGURES = ("accuracy", "confusion")


@dataclass
class PredictorSummary(Summary):
    """How one predictor (self or cross) did on the scored items.

    Attributes:
        n: scored items (the ``n`` of both estimates).
        accuracy: exact-match accuracy against the object model's behaviour (Wilson CI).
        compliance: share of hypothetical answers that were well formed (1 in forced mode).
        mean_label_mass: forced mode: mean next-token probability the labels got (None in free
            mode); near 0 means the forced choice was far from what the model would say.
        predictor: the predictor's model fingerprint (short form).
        spec: its prompt spec, as recorded by :func:`~innerprobe.behavior.config.spec_record`.
    """

    n: int
    accuracy: Estimate
    compliance: Estimate
    mean_label_mass: float | None = None
    predictor: str = ""
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass
class BehaviorSummary(Summary):
    """The numbers of one behaviour run, typed (see the module docstring for reading them).

    Counts: ``n_items`` asked, ``n_scored`` scored; the rest were dropped, as
    ``n_object_noncompliant`` (answer unreadable), ``n_skipped_too_long`` (no room in the
    context) and ``n_value_outside_labels`` (forced mode: the value is no label, unreachable for
    every predictor), itemised by reason in ``dropped_reasons``. ``object_compliance`` is over all
    items; every other estimate is over the scored ones. ``calibration_mad`` (percentage points)
    needs ``calibration_samples`` in forced mode, else None. ``items_digest`` names the items
    (:func:`~innerprobe.protocol.tasks.items_digest`), ``config`` records the settings.
    """

    property: str
    mode: str
    tasks: list[str]
    n_items: int
    n_scored: int
    n_object_noncompliant: int
    n_skipped_too_long: int
    n_value_outside_labels: int
    dropped_reasons: dict[str, int]
    object_compliance: Estimate
    mode_baseline: ModeBaseline
    self: PredictorSummary
    labels: list[str]
    cross: PredictorSummary | None = None
    self_minus_cross: PairedDiff | None = None
    calibration_mad: float | None = None
    items_digest: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    intervals: str = INTERVALS

    @property
    def table(self) -> pd.DataFrame:
        """One row per measure (``measure, value, ci_low, ci_high, n, method``), cross included."""
        estimates: list[tuple[str, Estimate | None]] = [
            ("object_compliance", self.object_compliance),
            ("mode_baseline", self.mode_baseline.estimate),
            ("self_accuracy", self.self.accuracy),
            ("self_compliance", self.self.compliance),
            ("cross_accuracy", self.cross.accuracy if self.cross else None),
            ("cross_compliance", self.cross.compliance if self.cross else None),
            ("self_minus_cross", self.self_minus_cross.diff if self.self_minus_cross else None),
        ]
        rows: list[dict[str, Any]] = [{"measure": "n_items", "value": self.n_items},
                                      {"measure": "n_scored", "value": self.n_scored}]
        rows += [{"measure": name, **est.to_dict()} for name, est in estimates if est is not None]
        if self.calibration_mad is not None:
            rows.append({"measure": "calibration_mad", "value": self.calibration_mad})
        return pd.DataFrame(rows)


@dataclass
class BehaviorResult(Result):
    """One behaviour run: the per-item table (field ``behavior``), its summary, its provenance.

    ``save(dir)`` writes ``behavior.parquet`` (the table), ``result.json`` (everything,
    loadable by :meth:`load`) and ``summary.json`` (the summary and provenance as plain JSON,
    for reading with any tool).
    """

    behavior: pd.DataFrame
    summary: BehaviorSummary
    provenance: dict[str, Any] = field(default_factory=dict)

    stage: ClassVar[str] = "behave"

    @property
    def table(self) -> pd.DataFrame:
        """The per-item table: one row per item, ``scored`` marking the items every number is on."""
        return self.behavior

    @property
    def self_accuracy(self) -> Estimate:
        return self.summary.self.accuracy

    @property
    def scored_ids(self) -> list[str]:
        """Ids of the items every accuracy, baseline and paired difference of this run is on."""
        return [str(i) for i in self.table["id"][self.table["scored"].to_numpy(bool)]]

    def summary_json(self) -> dict[str, Any]:
        """The plain-JSON view written to ``summary.json``: the summary's fields and provenance."""
        return {**self.summary.to_dict(), "provenance": self.provenance}

    def save(self, directory: str | Path) -> Path:
        out = super().save(directory)
        write_json(out / SUMMARY_FILE, self.summary_json())
        return out

    def figure(self, kind: str = "accuracy") -> go.Figure:
        """``"accuracy"``: mode baseline, self and cross with 95% intervals on the scored items;
        ``"confusion"``: scored items by object-level value (rows) and self-prediction (columns)."""
        if kind not in FIGURES:
            raise UnknownNameError("figure", kind, FIGURES)
        s = self.summary
        if kind == "confusion":
            scored = self.table[self.table["scored"].to_numpy(bool)]
            counts = pd.crosstab(scored["object_value"], scored["prediction_clean"])
            fig = go.Figure(go.Heatmap(z=counts.to_numpy(), x=list(counts.columns), y=list(counts.index),
                                       colorscale="Blues", colorbar={"title": "items"}))
            fig.update_layout(title=f"{s.property}: object value vs self-prediction (n={s.n_scored})",
                              xaxis_title="self-prediction", yaxis_title="object-level value",
                              template="plotly_white")
            return fig
        bars = {f"mode baseline ({s.mode_baseline.mode!r})": s.mode_baseline.estimate, "self": s.self.accuracy}
        if s.cross is not None:
            bars[f"cross ({s.cross.predictor})"] = s.cross.accuracy
        ests = list(bars.values())
        fig = go.Figure(go.Bar(
            x=list(bars), y=[e.value for e in ests],
            error_y={"type": "data", "symmetric": False, "array": [e.ci_high - e.value for e in ests],
                     "arrayminus": [e.value - e.ci_low for e in ests]},
        ))
        diff = ""
        if s.self_minus_cross is not None:
            d = s.self_minus_cross
            diff = f"; self − cross {d.diff.value:+.3f} [{d.diff.ci_low:+.3f}, {d.diff.ci_high:+.3f}], p={d.p_value:.3g}"
        fig.update_layout(title=f"{s.property} · {s.mode} (n={s.n_scored} scored; Wilson 95% CI{diff})",
                          yaxis_title="accuracy", yaxis_range=[0, 1.02], template="plotly_white")
        return fig


__all__ = ["FIGURES", "BehaviorResult", "BehaviorSummary", "PredictorSummary"]
