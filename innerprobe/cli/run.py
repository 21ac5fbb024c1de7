"""``innerprobe run``: the default study (battery + report) in one command.

Parses ``--config`` (a study TOML, default ``experiments/default_study.toml``'s settings) into a
:class:`~innerprobe.study.battery_config.BatteryConfig`, runs
:func:`~innerprobe.study.battery.run_battery` into ``--out`` (rerunning resumes) and writes
``report.html`` with ``report.json`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from innerprobe.cli.options import OutOpt
from innerprobe.cli.ui import Bars, console, fail, out_console
from innerprobe.core.errors import InnerprobeError
from innerprobe.study.battery import run_battery
from innerprobe.study.battery_config import BatteryConfig, load_battery_config
from innerprobe.study.report import write_report

QuickOpt = Annotated[bool, typer.Option("--quick", help="Smoke-test sizes (quick_n_items).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Study TOML with a \\[battery] table (see experiments/default_study.toml).")]


def register(app: typer.Typer) -> None:
    @app.command()
    def run(quick: QuickOpt = False, config: ConfigOpt = None, out: OutOpt = Path("runs/study")) -> None:
        """Run the battery (E1-E8, E3b) and write a self-contained HTML report with its verdict."""
        try:
            cfg = load_battery_config(config) if config is not None else BatteryConfig()
            with Bars() as bars:
                result = run_battery(cfg, out, quick=quick, progress=bars.factory)
            html = write_report(result, out / "report.html")
        except InnerprobeError as e:
            fail(e)
            return
        for v in result.summary.verdicts:
            out_console.print(f"[bold]{v.model}[/bold]: {v.hypothesis} ({v.why})")
        console.print(f"wrote {html} and {out / 'report.json'}")
