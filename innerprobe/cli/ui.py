"""What every verb shares: the consoles, progress bars, pre-flight checks and error exit.

Results go to stdout (``out_console``), progress, status and errors to stderr (``console``), so a
verb's table can be piped. :func:`preflight` checks every name a verb was given before a model is
loaded; :func:`fail` prints an :class:`~innerprobe.core.errors.InnerprobeError` and exits 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from innerprobe.behavior import BehaviorSummary, build_hypotheticals
from innerprobe.behavior.inference import check_fits
from innerprobe.core.io import prepare_out_dir
from innerprobe.models.checks import check_device, check_model_spec
from innerprobe.models.load import _resolve_dtype
from innerprobe.protocol.tasks.registry import RELEASE_NAMES, TASKS

console = Console(stderr=True)
out_console = Console()


class Bars:
    """A rich progress context whose ``factory(stage, total)`` returns an ``advance`` callback."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def factory(self, stage: str, total: int) -> Callable[[int], None]:
        task = self.progress.add_task(stage, total=total)
        return lambda n: self.progress.advance(task, n)


DEFAULT_N = 100  # items of a generated task when --n is not given


def default_n(task: str) -> int | None:
    """``--n`` when not given: DEFAULT_N items of a generated task, else every row (None)."""

    return DEFAULT_N if task in TASKS or task in RELEASE_NAMES else None


def preflight(
    out: Path, stage: str, device: str | None, *, models: tuple[str | None, ...] = (), dtype: str | None = None
) -> Path:
    """The checks every verb runs before loading a model: model specs, device, dtype, then ``--out``.

    Raises an ``InnerprobeError`` naming the bad value and the valid ones; ``--out`` is checked
    (and claimed for ``stage``) last, so a bad model or device leaves no directory behind.
    """

    for spec in filter(None, models):
        check_model_spec(spec)
    if device:
        check_device(device)
    if dtype is not None:
        _resolve_dtype(dtype)
    return prepare_out_dir(out, stage)


def _check_hypotheticals_fit(m: Any, items: Any, prop: Any, spec: Any) -> None:
    """``DataError`` before any generation when a hypothetical prompt exceeds the context."""

    rows = [h.input_ids for h in build_hypotheticals(m, items, prop, spec)]
    check_fits(m.hf_model, rows, 1, "answer token", names=list(items["id"]), what="hypothetical prompt")


def fail(err: Exception) -> None:
    console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


def fmt(est: Any) -> str:
    """``value [low, high] (n=..)`` plus the interval's method in short (Wilson, bootstrap)."""
    if est is None:
        return "–"
    method = str(getattr(est, "method", "") or "")
    short = "Wilson" if method.startswith("Wilson") else "bootstrap" if "bootstrap" in method else method
    return f"{est}  {short}" if short else str(est)


def behavior_summary_table(summary: BehaviorSummary, title: str) -> Table:
    """The terminal view of a behaviour run: counts, then each estimate with its interval."""
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value [95% CI]")
    mb = summary.mode_baseline
    rows = [
        ("items (scored / total)", f"{summary.n_scored} / {summary.n_items}"),
        ("object non-compliant (dropped)", str(summary.n_object_noncompliant)),
        ("skipped: over context length", str(summary.n_skipped_too_long)),
        ("dropped: object value not a label", str(summary.n_value_outside_labels)),
        ("object compliance", fmt(summary.object_compliance)),
        ("mode baseline" + (f" ({mb.mode!r})" if mb.mode is not None else ""), fmt(mb.estimate)),
        ("self-prediction accuracy", fmt(summary.self.accuracy)),
        ("self hypothetical compliance", fmt(summary.self.compliance)),
    ]
    if summary.cross is not None and summary.self_minus_cross is not None:
        d = summary.self_minus_cross
        mcnemar = f"  McNemar p={d.mcnemar_p:.3g}" if d.mcnemar_p is not None else ""
        rows += [
            (f"cross-prediction accuracy ({summary.cross.predictor})", fmt(summary.cross.accuracy)),
            ("self − cross (paired bootstrap)", fmt(d.diff) + f"  p={d.p_value:.3g}" + mcnemar),
        ]
    if summary.calibration_mad is not None:
        rows.append(("calibration MAD (pp)", f"{summary.calibration_mad:.1f}"))
    for k, v in rows:
        table.add_row(k, v)
    return table
