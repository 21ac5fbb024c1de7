"""``innerprobe report SWEEP_DIR``: cross-cell figures of a sweep in one self-contained HTML page.

See :mod:`innerprobe.study.sweep_report` for what the page holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from innerprobe.cli.ui import console, fail
from innerprobe.core.errors import InnerprobeError
from innerprobe.study import write_sweep_report

SweepDirArg = Annotated[Path, typer.Argument(help="A sweep directory (the --out of `innerprobe sweep`).")]
ReportOutOpt = Annotated[Path | None, typer.Option(help="Where to write the page (default: SWEEP_DIR/report.html).")]


def report_cmd(sweep_dir: SweepDirArg, out: ReportOutOpt = None) -> None:
    """Draw a sweep: each metric by model, property and task, beside its control."""

    try:
        path = write_sweep_report(sweep_dir, out)
    except InnerprobeError as e:
        fail(e)
        return
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
