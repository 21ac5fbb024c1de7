"""Where a sweep's cells run: in this process, or in a local process pool (Ray: ``ray_executor``).

An executor has one method, ``run(cells)``, which yields ``(cell, outcome)`` as each cell
finishes (in any order); the sweep records each outcome as it arrives, so a kill loses only the
cells still running.

* :class:`LocalExecutor` runs the cells one after another in this process, with one
  :class:`~innerprobe.study.runner.ModelCache` (each model loaded once).
* :class:`PoolExecutor` runs them in a pool of worker processes sized to the cores, each with
  **one torch thread** (``torch.set_num_threads(1)`` and ``OMP_NUM_THREADS=1``): with several
  processes each spinning a full OpenMP team, the threads spin-wait on each other and torch was
  measured ~20× slower. On Linux workers are forked from this process (innerprobe is already
  imported: a fresh interpreter would spend ~5-15 s importing torch and transformers per worker;
  torch resets its thread pool in a forked child, as DataLoader workers rely on), elsewhere they
  come from a ``forkserver``/``spawn``. Each keeps its own model cache, so a worker loads a model
  once however many of its cells it runs. Cells are submitted grouped by model. (A script that
  uses the pool needs the usual ``if __name__ == "__main__":`` guard where ``spawn`` is used.)
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from innerprobe.core.errors import UnknownNameError
from innerprobe.study.cells import Cell, CellOutcome
from innerprobe.study.runner import ModelCache, run_cell

EXECUTORS = ("local", "pool", "ray")
"""Executor names the CLI and :func:`innerprobe.study.sweep.run_sweep` accept."""
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

_WORKER_MODELS: ModelCache | None = None
"""The model cache of a pool worker process (set by :func:`_init_worker`)."""


def by_model(cells: Sequence[Cell]) -> list[Cell]:
    """``cells`` grouped by model (stable within a model), so a worker's cache is reused."""
    first = {m: i for i, m in reversed(list(enumerate(c.model for c in cells)))}
    return sorted(cells, key=lambda c: first[c.model])


@dataclass
class LocalExecutor:
    """Every cell in this process, one after another."""

    device: str | None = "cpu"

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, CellOutcome]]:
        models = ModelCache(self.device)
        for cell in by_model(cells):
            yield cell, run_cell(cell, models)


def _init_worker(device: str | None) -> None:
    """Pool worker start-up: one torch thread, an empty model cache."""
    global _WORKER_MODELS
    os.environ.update(_ONE_THREAD)
    torch.set_num_threads(1)
    _WORKER_MODELS = ModelCache(device)


def _worker_run(cell: Cell) -> CellOutcome:
    assert _WORKER_MODELS is not None, "pool worker was not initialised"
    return run_cell(cell, _WORKER_MODELS)


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` on Linux; else ``forkserver`` with this module preloaded, else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods:
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:  # pragma: no cover - not POSIX
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")  # pragma: no cover - macOS
    ctx.set_forkserver_preload(["innerprobe.study.executors"])
    return ctx


@dataclass
class PoolExecutor:
    """A local process pool of ``workers`` processes (default: the cores), one torch thread each."""

    workers: int | None = None
    device: str | None = "cpu"

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, CellOutcome]]:
        if not cells:
            return
        n = max(1, min(self.workers or os.cpu_count() or 1, len(cells)))
        os.environ.update(_ONE_THREAD)  # inherited by the forkserver when it starts
        with cf.ProcessPoolExecutor(n, mp_context=_context(), initializer=_init_worker,
                                    initargs=(self.device,)) as pool:
            futures = {pool.submit(_worker_run, cell): cell for cell in by_model(cells)}
            for future in cf.as_completed(futures):
                yield futures[future], future.result()


def check_executor(name: str) -> None:
    """``UnknownNameError`` listing :data:`EXECUTORS` unless ``name`` is one."""
    if name not in EXECUTORS:
        raise UnknownNameError("executor", name, EXECUTORS)


__all__ = ["EXECUTORS", "LocalExecutor", "PoolExecutor", "by_model", "check_executor"]
