"""What a probe run returns: :class:`ProbeResult`, and its typed summary :class:`ProbeSummary`.

:class:`ProbeResult` follows the result protocol of :mod:`innerprobe.core.result`:

* ``.table``: the tidy per-layer table (one row per probe × split × items × layer, with
  Wilson CIs and the controls beside the task accuracy; columns in :mod:`~innerprobe.probes.table`);
* ``.summary``: a :class:`ProbeSummary`, one :class:`BestLayer` per (probe, split, items),
  every number an :class:`~innerprobe.core.stats.Estimate` with its interval and ``n``;
* ``.figure()``: the layer curves (:func:`~innerprobe.probes.figures.layer_curves`);
* ``.save(dir)`` / ``ProbeResult.load(dir)``: ``table.parquet``; ``arrays.safetensors`` with
  the directions (``directions/<probe>/<run>``, ``[layer, n_class, d_model]``) and the per-item
  correctness the summary is computed from (``correct/<probe>/<view>/<train>/<test>/<items>``);
  ``result.json`` with everything else (config, classes, control-task report, provenance, the
  summary). Never pickle.

**Why a best layer needs two halves.** The max over layers of noisy accuracies is biased upwards
(with 30 pure-noise layers it sits ~2 standard errors above chance). Each :class:`BestLayer` is
selected on one random half of the items (whole groups; split A) and every number it reports
(task accuracy, controls, selectivity) is estimated on the other half (split B), where the choice
did not look; the naive max over all items is kept beside it, labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Bool, Float
from torch import Tensor

from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate
from innerprobe.probes.config import ProbeConfig
from innerprobe.probes.figures import layer_curves

__all__ = ["BestLayer", "ProbeSummary", "ProbeResult"]

_CONTROLS = ("majority", "shuffled", "random_proj", "control_task", "selectivity")


@dataclass(frozen=True)
class BestLayer:
    """The best layer of one (probe, split, items), chosen on split A and estimated on split B.

    ``accuracy`` is the task accuracy at ``layer`` on split B (Wilson CI); ``naive`` is the
    usual max over layers on all items, at ``naive_layer`` (optimistic). The controls at
    ``layer`` are on split B too: ``majority``, ``shuffled`` and ``random_proj`` accuracies,
    ``control_task`` accuracy on the split-B items that have a type, and ``selectivity``, task
    minus control-task accuracy on those same items (paired bootstrap). A control is ``None``
    when it was not fitted. ``selection`` says in words what was done.
    """

    probe: str
    split: str
    train_run: str
    test_run: str
    items: str
    layer: int
    accuracy: Estimate
    naive_layer: int
    naive: Estimate
    majority: Estimate
    selection: str
    shuffled: Estimate | None = None
    random_proj: Estimate | None = None
    control_task: Estimate | None = None
    selectivity: Estimate | None = None


@dataclass
class ProbeSummary(Summary):
    """The headline of a probe run: one honest :class:`BestLayer` per (probe, split, items)."""

    target: str
    n_items: int
    n_classes: int
    best: list[BestLayer] = field(default_factory=list)

    def find(self, probe: str, split: str, items: str = "held_out") -> BestLayer:
        """The :class:`BestLayer` of one (probe, split, items); ``KeyError`` if there is none."""
        for b in self.best:
            if (b.probe, b.split, b.items) == (probe, split, items):
                return b
        raise KeyError((probe, split, items))

    @property
    def table(self) -> pd.DataFrame:
        """One row per (best layer, measure): ``probe, split, items, layer, measure, value,
        ci_low, ci_high, n, method`` (measures: accuracy, naive, and each fitted control)."""
        rows = []
        for b in self.best:
            where = {"probe": b.probe, "split": b.split, "train_run": b.train_run, "test_run": b.test_run,
                     "items": b.items}
            for measure in ("accuracy", "naive", *_CONTROLS):
                est: Estimate | None = getattr(b, measure)
                if est is not None:
                    layer = b.naive_layer if measure == "naive" else b.layer
                    rows.append({**where, "layer": layer, "measure": measure, "value": est.value,
                                 "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n, "method": est.method})
        return pd.DataFrame(rows)


@dataclass(eq=False)
class ProbeResult(Result):
    """Probe accuracies per (layer, probe, split) beside their controls, plus fitted directions.

    ``directions["<probe>/<run>"]`` is a ``[layer, n_class, d_model]`` tensor of per-class weight
    vectors of the all-items fit, centred over classes, in raw activation units (for two classes
    ``directions[..., 1, :] − directions[..., 0, :]`` is the probe's axis). ``correct`` holds the
    per-item out-of-fold correctness ``[layer, n]`` of every fit (keys from
    :func:`~innerprobe.probes.table.correct_key`; ``control_task`` fits cover only the items in
    ``control_rows``); ``majority`` the majority baseline's per item. ``control`` reports the
    Hewitt–Liang control task (types, recurring items, and why it was not fitted, if so).
    """

    stage: ClassVar[str] = "probe"

    target: str
    classes: list[str]
    layers: list[int]
    runs: list[str]
    table: pd.DataFrame
    summary: ProbeSummary
    directions: dict[str, Float[Tensor, "layer n_class d"]]
    correct: dict[str, Bool[np.ndarray, "layer n"]]
    majority: Bool[np.ndarray, " n"]
    n_items: int
    n_dropped: int
    dropped_classes: dict[str, int]
    config: ProbeConfig
    control: dict[str, Any] = field(default_factory=dict)
    control_rows: Bool[np.ndarray, " n"] | None = None
    warnings: list[str] = field(default_factory=list)
    groups: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def figure(self, probe: str | None = None, items: str = "held_out") -> go.Figure:
        """Layer curves of one probe (default: the first) on held-out (or ``"same"``) items."""
        return layer_curves(self.table, probe=probe, items=items)
