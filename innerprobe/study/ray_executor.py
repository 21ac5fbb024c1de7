"""``--executor ray``: cells on a Ray cluster, with model-holding actors.

Ray is the common engine for Python ML sweeps; innerprobe uses it rather than its own glue.
:class:`RayExecutor`

* connects to a running cluster (``address="ray://host:10001"`` or ``"auto"``) or, with no
  address and no Ray already initialised, starts a local one (``ray.init(num_cpus=...)``, no
  dashboard) and shuts it down afterwards;
* starts **model-holding actors**: per model (and resource shape) as many as the cluster's CPUs
  hold at the cells' CPU request, at most one per cell (``actors_per_model`` to fix the number);
  each loads its model once and runs every cell of that model sent to it, in turn: no model
  reload per cell, and the cells of a one-model sweep still run side by side.
  The actor asks Ray for the cell's ``num_cpus`` and ``num_gpus`` (``[experiments.<name>]``
  ``num_cpus = 2``, ``num_gpus = 1``) and loads its model on ``cuda`` when it holds a GPU. It runs
  with as many torch threads as CPUs it holds (Ray also sets ``OMP_NUM_THREADS`` so);
* yields each cell's outcome as it completes (``ray.wait``), so the sweep records it at once.

Ray is an optional dependency (``pip install "ray[default]"``): it is imported here only, and
the rest of innerprobe works without it; asking for this executor without Ray raises a
``DataError`` that says how to install it. Workers must be able to import innerprobe (a local
cluster inherits this process's environment; a remote one needs innerprobe installed).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from innerprobe.core.errors import DataError
from innerprobe.study.cells import Cell, CellOutcome
from innerprobe.study.runner import ModelCache, run_cell

try:  # optional dependency
    import ray
except ImportError:  # pragma: no cover - exercised where ray is absent
    ray = None


class ModelActor:
    """Holds one model (loaded on first use) and runs that model's cells (a Ray actor's body)."""

    def __init__(self, num_cpus: float, num_gpus: float):
        torch.set_num_threads(max(1, math.floor(num_cpus)))
        self.models = ModelCache("cuda" if num_gpus > 0 else "cpu")

    def run(self, cell: dict[str, Any]) -> CellOutcome:
        return run_cell(Cell.from_dict(cell), self.models)


def _require_ray() -> Any:
    if ray is None:
        raise DataError('--executor ray needs Ray: pip install "ray[default]" (or use --executor local | pool)')
    return ray


@dataclass
class RayExecutor:
    """Cells on a Ray cluster (see the module docstring).

    Attributes:
        address: a running cluster's address (``"auto"``, ``"ray://host:10001"``); ``None``
            starts a local cluster unless Ray is already initialised in this process.
        num_cpus: CPUs of a local cluster started here (default: all).
        actors_per_model: model-holding actors per (model, resource shape); None: as many as
            the cluster's CPUs hold at the cells' CPU request, at most one per cell (one actor
            per model would run a single-model sweep one cell at a time).
    """

    address: str | None = None
    num_cpus: int | None = None
    actors_per_model: int | None = None

    def _n_actors(self, cell: Cell, n_cells: int) -> int:
        if self.actors_per_model is not None:
            return max(1, self.actors_per_model)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        fit = int(cpus // cell.num_cpus) if cell.num_cpus > 0 else n_cells
        return max(1, min(fit, n_cells))

    def _init(self) -> bool:
        """Connect or start; True when this call started Ray (and should shut it down)."""
        r = _require_ray()
        if r.is_initialized():
            return False
        if self.address:
            r.init(address=self.address, log_to_driver=False)
        else:
            r.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
        return True

    def _actors(self, cells: Sequence[Cell]) -> dict[tuple[str, float, float], list[Any]]:
        remote = ray.remote(ModelActor)
        actors: dict[tuple[str, float, float], list[Any]] = {}
        counts = Counter((c.model, c.num_cpus, c.num_gpus) for c in cells)
        for cell in cells:
            key = (cell.model, cell.num_cpus, cell.num_gpus)
            if key not in actors:
                opts = remote.options(num_cpus=cell.num_cpus, num_gpus=cell.num_gpus)
                actors[key] = [opts.remote(cell.num_cpus, cell.num_gpus) for _ in range(self._n_actors(cell, counts[key]))]
        return actors

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, CellOutcome]]:
        if not cells:
            return
        started = self._init()
        try:
            actors = self._actors(cells)
            turn: dict[tuple[str, float, float], int] = {}
            pending: dict[Any, Cell] = {}
            for cell in cells:
                key = (cell.model, cell.num_cpus, cell.num_gpus)
                k = turn.get(key, 0)
                turn[key] = k + 1
                pending[actors[key][k % len(actors[key])].run.remote(cell.to_dict())] = cell
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
            for group in actors.values():
                for actor in group:
                    ray.kill(actor)
        finally:
            if started:
                ray.shutdown()


__all__ = ["RayExecutor", "ModelActor"]
