"""The stage kinds a sweep cell can run, each as one function ``(model, cell, options) -> rows``.

Each function calls the stage exactly as a notebook would (the stage's own config dataclass, the
stage's own entry point) and turns its typed summary into metric rows
(:data:`innerprobe.study.cells.METRIC_COLUMNS`). Nothing here measures anything new.

* ``behave`` (:func:`behave_cell`): :func:`innerprobe.behavior.behave` under a
  :class:`~innerprobe.behavior.config.BehaviorConfig` whose ``mode`` and ``seed`` are the cell's.
  Rows: ``self_accuracy``, ``mode_baseline`` (its control, on the same scored items),
  ``self_minus_baseline`` (paired bootstrap over those items), ``self_compliance`` and
  ``object_compliance`` (Wilson intervals), ``n_scored``.
* ``probes`` (:func:`probes_cell`): object answers as labels, a capture of O and H into a
  temporary store (:func:`innerprobe.activations.capture.capture`), then
  :func:`innerprobe.probes.probe_store`. Rows: ``transfer_accuracy`` (the O→H transfer peak:
  layer selected on one half of the items, accuracy estimated on the other), ``transfer_layer``,
  ``transfer_majority`` (its control) and the within-O peak ``object_accuracy`` with
  ``object_layer``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerprobe.activations.capture import capture
from innerprobe.activations.config import CaptureConfig
from innerprobe.behavior import BehaviorConfig, behave, elicit_object
from innerprobe.behavior.answers import answer_columns, items_vocabulary
from innerprobe.core import stats
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.models.loaded import LoadedModel
from innerprobe.probes import ProbeConfig, probe_store
from innerprobe.probes.config import PROBES
from innerprobe.probes.table import run_name, split_name
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.study.cells import Cell, estimate_row, metric_row


def _items(cell: Cell) -> Any:
    return load_items(cell.task, n=cell.n, split=cell.split, seed=cell.seed)


def behave_cell(model: LoadedModel, cell: Cell, config: BehaviorConfig) -> list[dict[str, Any]]:
    """Self-prediction accuracy beside its mode baseline, and compliance (see the module docstring)."""
    result = behave(model, _items(cell), cell.property, config)
    s = result.summary
    table = result.behavior
    rows = [
        estimate_row("self_accuracy", s.self.accuracy),
        estimate_row("mode_baseline", s.mode_baseline.estimate),
        estimate_row("self_compliance", s.self.compliance),
        estimate_row("object_compliance", s.object_compliance),
        metric_row("n_scored", s.n_scored, n=s.n_scored),
    ]
    scored = table[table["scored"]]
    if len(scored):
        base = (scored["object_value"] == s.mode_baseline.mode).to_numpy(float)
        diff = stats.paired_bootstrap_diff(scored["correct"].to_numpy(float), base, seed=config.seed).diff
        rows.append(estimate_row("self_minus_baseline", diff))
    return rows


@dataclass(frozen=True)
class ProbeCellOptions:
    """Options of a ``probes`` cell: what to probe, and the capture and probe configs.

    Attributes:
        target: the row-table label to probe (``property_value``: the property of the model's own
            object answer; ``object_answer``: the answer word).
        site: the hook site probed (must be captured).
        position: the H position the O probe is transferred to (must be captured).
        probe: the probe family whose transfer is reported (one of ``probes.probes``).
        capture: a :class:`~innerprobe.activations.config.CaptureConfig` (the
            ``[experiments.<name>.capture]`` table; only ``h_last`` is captured by default).
        probes: a :class:`~innerprobe.probes.ProbeConfig` (the ``[experiments.<name>.probes]``
            table).
    """

    target: str = "property_value"
    site: str = "resid_post"
    position: str = "h_last"
    probe: str = "ridge"
    capture: CaptureConfig = field(default_factory=lambda: CaptureConfig(hypothetical_positions=("h_last",)))
    probes: ProbeConfig = ProbeConfig()

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise UnknownNameError("probe", self.probe, PROBES)
        if self.probe not in self.probes.probes:
            raise DataError(f"probe {self.probe!r} is not fitted: probes.probes = {list(self.probes.probes)}")
        if self.site not in self.capture.sites:
            raise DataError(f"site {self.site!r} is not captured: capture.sites = {list(self.capture.sites)}")
        if self.position not in self.capture.hypothetical_positions:
            raise DataError(
                f"position {self.position!r} is not captured: "
                f"capture.hypothetical_positions = {list(self.capture.hypothetical_positions)}"
            )


def _best(result: Any, probe: str, src: str, tgt: str) -> Any:
    split = split_name(src, tgt)
    for b in result.summary.best:
        if b.probe == probe and b.split == split and b.items == "held_out":
            return b
    raise DataError(f"probe result has no held-out {probe} fit for {split}")


def probes_cell(model: LoadedModel, cell: Cell, options: ProbeCellOptions) -> list[dict[str, Any]]:
    """The O→H transfer peak and its layer, beside the majority control (see the module docstring)."""
    items = _items(cell)
    prop = get_property(cell.property)
    cap = options.capture
    obj = elicit_object(model, items, prop, BehaviorConfig(spec=cap.spec, batch_size=cap.batch_size, seed=cell.seed))
    labels = answer_columns(obj, prop, items_vocabulary(items))
    with tempfile.TemporaryDirectory(prefix="innerprobe-sweep-store-") as tmp:
        store = capture(model, items, prop, cap, out=Path(tmp) / "store", labels=labels)
        result = probe_store(store, options.target, site=options.site, hypothetical_positions=(options.position,),
                             config=options.probes)
    o, h = run_name("object", "o_last"), run_name("hypothetical", options.position)
    transfer, within = _best(result, options.probe, o, h), _best(result, options.probe, o, o)
    return [
        estimate_row("transfer_accuracy", transfer.accuracy),
        metric_row("transfer_layer", transfer.layer, n=transfer.accuracy.n),
        estimate_row("transfer_majority", transfer.majority),
        estimate_row("object_accuracy", within.accuracy),
        metric_row("object_layer", within.layer, n=within.accuracy.n),
        metric_row("n_probed", result.n_items, n=result.n_items),
    ]


__all__ = ["behave_cell", "probes_cell", "ProbeCellOptions"]
