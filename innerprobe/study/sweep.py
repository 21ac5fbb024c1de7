"""``run_sweep``: expand a sweep config into cells, run the pending ones, return every cell's rows.

::

    from innerprobe.study import load_sweep, run_sweep
    result = run_sweep(load_sweep("experiments/sweep_example.toml"), "runs/sweep", executor="pool")
    result.table            # one row per cell × metric: estimate, ci_low, ci_high, n, fingerprint, ...
    result.summary          # cells done / failed / pending, how many ran now, wall time
    result.figure("self_accuracy")   # the metric by (model · property) × task, as a heatmap

The sweep directory is a :class:`~innerprobe.study.results_store.ResultsStore`: cells already
done are skipped (a killed sweep resumes where it stopped, with nothing lost or run twice),
failed ones are retried unless ``retry_failed=False``, and each outcome is written as it
arrives. A failing cell records its error and the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import plotly.graph_objects as go

from innerprobe.core.result import Result, Summary
from innerprobe.study.executors import LocalExecutor, PoolExecutor, check_executor
from innerprobe.study.ray_executor import RayExecutor
from innerprobe.study.results_store import ResultsStore
from innerprobe.study.sweep_config import SweepConfig, load_sweep

Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class SweepSummary(Summary):
    """Counts over the sweep's cells, and what this run did."""

    name: str
    n_cells: int
    n_done: int
    n_failed: int
    n_pending: int
    n_run: int = 0
    executor: str = ""
    wall_s: float = 0.0
    experiments: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


@dataclass
class SweepResult(Result):
    """Every done cell × metric (``table``), the failed cells' errors, and the summary."""

    table: pd.DataFrame
    errors: pd.DataFrame
    summary: SweepSummary

    stage: ClassVar[str] = "sweep"

    def figure(self, metric: str | None = None, experiment: str | None = None) -> go.Figure:
        """``metric`` (default: the first) as a heatmap: (model · property) rows × task columns.

        Each cell of the heatmap is the mean estimate over seeds and modes of that
        (model, property, task); hovering shows it with the number of sweep cells averaged.
        """
        return metric_heatmap(self.table, metric, experiment)


def metric_heatmap(table: pd.DataFrame, metric: str | None = None, experiment: str | None = None) -> go.Figure:
    """The heatmap of :meth:`SweepResult.figure` from a sweep table."""
    rows = table if experiment is None else table[table["experiment"] == experiment]
    if rows.empty:
        return go.Figure(layout={"title": "no finished cells"})
    metric = metric or str(rows["metric"].iloc[0])
    rows = rows[rows["metric"] == metric].assign(row=lambda d: d["model"] + " · " + d["property"])
    grid = rows.pivot_table(index="row", columns="task", values="estimate", aggfunc="mean")
    count = rows.pivot_table(index="row", columns="task", values="estimate", aggfunc="count")
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=list(grid.columns), y=list(grid.index), customdata=count.to_numpy(),
        colorscale="Viridis", texttemplate="%{z:.2f}",
        hovertemplate="%{y}<br>%{x}<br>" + metric + " = %{z:.3f} (mean of %{customdata} cells)<extra></extra>",
    ))
    title = metric if experiment is None else f"{experiment}: {metric}"
    fig.update_layout(title=title, xaxis_title="task", yaxis_title="model · property",
                      height=220 + 40 * len(grid.index))
    return fig


def make_executor(name: str, *, workers: int | None = None, address: str | None = None,
                  device: str | None = "cpu") -> Any:
    """``local`` | ``pool`` | ``ray`` as an executor object."""
    check_executor(name)
    if name == "local":
        return LocalExecutor(device)
    if name == "pool":
        return PoolExecutor(workers, device)
    return RayExecutor(address=address, num_cpus=workers)


def sweep_result(store: ResultsStore, cells: list | None = None, *, name: str = "sweep", n_run: int = 0,
                 executor: str = "", wall_s: float = 0.0) -> SweepResult:
    """The :class:`SweepResult` of what ``store`` holds for ``cells`` (default: its plan)."""
    cells = store.plan() if cells is None else cells
    status = store.status(cells)
    table = store.table(cells)
    summary = SweepSummary(
        name=name, n_cells=len(cells), n_done=len(status.done), n_failed=len(status.failed),
        n_pending=len(status.pending), n_run=n_run, executor=executor, wall_s=wall_s,
        experiments=sorted({c.experiment for c in cells}), metrics=sorted(set(table["metric"])),
    )
    return SweepResult(table=table, errors=store.errors(cells), summary=summary)


def run_sweep(
    config: SweepConfig | str | Path,
    out_dir: str | Path,
    executor: str | Any = "local",
    *,
    retry_failed: bool = True,
    progress: Progress | None = None,
) -> SweepResult:
    """Run the pending cells of ``config`` into ``out_dir`` and return all cells' results.

    Args:
        config: a :class:`SweepConfig` or the path of its TOML file.
        out_dir: the sweep directory (created, or resumed when it holds this or an earlier sweep).
        executor: ``"local"``, ``"pool"``, ``"ray"`` or an executor object (``run(cells)``).
        retry_failed: run cells that failed before again (default), else leave them failed.
        progress: factory ``(stage, total) -> advance`` for a progress bar.
    """
    config = load_sweep(config) if isinstance(config, (str, Path)) else config
    cells = config.cells()
    store = ResultsStore.create(out_dir, cells, config.to_dict())
    wanted = ("pending", "failed") if retry_failed else ("pending",)
    todo = [c for c in cells if store.state(c.id) in wanted]
    runner = make_executor(executor) if isinstance(executor, str) else executor
    advance = progress("cells", len(todo)) if progress else (lambda k: None)
    start, n_run = time.perf_counter(), 0
    for cell, outcome in runner.run(todo):
        store.record(cell, outcome)
        n_run += 1
        advance(1)
    return sweep_result(store, cells, name=config.axes.name, n_run=n_run,
                        executor=executor if isinstance(executor, str) else type(executor).__name__,
                        wall_s=time.perf_counter() - start)


__all__ = ["run_sweep", "SweepResult", "SweepSummary", "make_executor", "sweep_result", "metric_heatmap"]
