"""Run one cell where it lands: load its model once per process, run its stage, catch its error.

:class:`ModelCache` keeps one :class:`~innerprobe.models.loaded.LoadedModel` per model name in
the process that runs cells (the main process, a pool worker or a Ray actor), so a model is
loaded once and reused by every cell of that model that lands there. :func:`run_cell` is what
every executor calls: it validates the cell's options again with its stage
(:mod:`innerprobe.study.registry`), runs it, and returns a
:class:`~innerprobe.study.cells.CellOutcome`: rows, or the error's type and message. An
``Exception`` in one cell never escapes (the sweep goes on); ``KeyboardInterrupt`` and
``SystemExit`` do (a killed sweep stops, and resumes later).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.study.cells import Cell, CellOutcome
from innerprobe.study.registry import Where, get_kind

log = logging.getLogger(__name__)


class ModelCache:
    """Models by name, loaded on first use (on ``device``) and kept for the process's lifetime."""

    def __init__(self, device: str | None = "cpu"):
        self.device = device
        self.models: dict[str, LoadedModel] = {}

    def get(self, name: str) -> LoadedModel:
        if name not in self.models:
            log.info("loading %s", name)
            self.models[name] = load_model(name, device=self.device)
        return self.models[name]


def run_cell(cell: Cell, models: ModelCache) -> CellOutcome:
    """Run ``cell`` on its model from ``models``; any ``Exception`` becomes a failed outcome."""
    start = time.perf_counter()
    fingerprint: Any = None
    try:
        kind = get_kind(cell.kind)
        config = kind.build(cell.options, cell.mode, cell.seed, Where(f"cell {cell.id}", None, ("experiments", cell.experiment)))
        model = models.get(cell.model)
        fingerprint = model.fingerprint.short
        rows = kind.run(model, cell, config)
    except Exception as error:  # noqa: BLE001 - a failed cell is recorded, the sweep goes on
        log.warning("cell %s (%s) failed: %s: %s", cell.id, cell.experiment, type(error).__name__, error)
        return CellOutcome(cell.id, None, fingerprint, type(error).__name__, str(error), time.perf_counter() - start)
    return CellOutcome(cell.id, rows, fingerprint, wall_s=time.perf_counter() - start)


__all__ = ["ModelCache", "run_cell"]
