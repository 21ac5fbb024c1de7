"""``innerprobe sweep CONFIG.toml`` and ``innerprobe sweep-status DIR``: many cells, one table.

``sweep`` reads the TOML (:func:`innerprobe.study.load_sweep`: errors name the file, key and
line), runs the cells not done yet into ``--out`` with the chosen executor (``local``: one after
another here; ``pool``: a process pool sized to the cores, one torch thread each; ``ray``: a Ray
cluster at ``--address``, or a local one) and prints the done / failed / pending counts. Re-running
the same command resumes. ``sweep-status`` reads a sweep directory and prints the counts and the
failed cells' errors; ``innerprobe report DIR`` draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from innerprobe.cli.ui import Bars, console, fail, out_console
from innerprobe.core.errors import InnerprobeError
from innerprobe.study import ResultsStore, load_sweep, make_executor, run_sweep

ConfigArg = Annotated[Path, typer.Argument(help="The sweep's TOML file (see experiments/sweep_example.toml).")]
SweepDirArg = Annotated[Path, typer.Argument(help="A sweep directory (the --out of `innerprobe sweep`).")]
ExecutorOpt = Annotated[str, typer.Option(help="local | pool | ray.")]
WorkersOpt = Annotated[int | None, typer.Option(help="pool: worker processes; ray: CPUs of a local cluster (default: all cores).")]
AddressOpt = Annotated[str | None, typer.Option(help="ray: address of a running cluster ('auto', 'ray://host:10001').")]
SweepOutOpt = Annotated[Path, typer.Option(help="Sweep directory (re-running into it resumes).")]
RetryOpt = Annotated[bool, typer.Option(help="Run cells that failed before again.")]


def _status_table(store: ResultsStore, title: str) -> Table:
    status = store.status()
    table = Table(title=title)
    for col in ("done", "failed", "pending", "total"):
        table.add_column(col)
    c = status.counts
    table.add_row(str(c["done"]), str(c["failed"]), str(c["pending"]), str(sum(c.values())))
    return table


def _errors_table(store: ResultsStore) -> Table | None:
    errors = store.errors()
    if errors.empty:
        return None
    table = Table(title="failed cells")
    for col in ("cell", "experiment", "error", "attempts"):
        table.add_column(col)
    for r in errors.itertuples():
        table.add_row(r.cell_id, r.experiment, f"{r.error_type}: {r.error_message}", str(r.attempts))
    return table


def sweep_cmd(
    config: ConfigArg,
    executor: ExecutorOpt = "local",
    out: SweepOutOpt = Path("runs/sweep"),
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    retry_failed: RetryOpt = True,
) -> None:
    """Run every cell of a sweep (models × tasks × properties × modes × seeds × experiments)."""

    try:
        cfg = load_sweep(config)
        runner = make_executor(executor, workers=workers, address=address)
        console.print(f"{len(cfg.cells())} cells in {config}; executor {executor}")
        with Bars() as bars:
            result = run_sweep(cfg, out, runner, retry_failed=retry_failed, progress=bars.factory)
    except InnerprobeError as e:
        fail(e)
        return
    store = ResultsStore(out)
    out_console.print(_status_table(store, f"{cfg.axes.name}: ran {result.summary.n_run} cells in "
                                           f"{result.summary.wall_s:.1f} s"))
    errors = _errors_table(store)
    if errors is not None:
        out_console.print(errors)
    console.print(f"wrote {out}/ (cells/*.parquet, status/*.json); `innerprobe report {out}` draws it")


def sweep_status_cmd(sweep_dir: SweepDirArg) -> None:
    """Show how many cells of a sweep are done, failed and pending (and the failures)."""

    try:
        store = ResultsStore(sweep_dir)
        table = _status_table(store, str(sweep_dir))
    except InnerprobeError as e:
        fail(e)
        return
    out_console.print(table)
    errors = _errors_table(store)
    if errors is not None:
        out_console.print(errors)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
    app.command("sweep-status")(sweep_status_cmd)
