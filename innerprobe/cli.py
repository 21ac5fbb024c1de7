"""The ``innerprobe`` command line: one verb per stage.

``innerprobe behave`` runs the paper's behavioural measurement; ``tasks``, ``properties`` and
``models`` list what exists. Results go to ``--out`` (Parquet table + JSON summary, written
atomically), a rich summary table goes to the terminal, progress bars to stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from innerprobe.errors import InnerprobeError

app = typer.Typer(
    help="innerprobe: mechanistic interpretability of language-model self-reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:  # transformers' own weight-loading bars would interleave with ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


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


def _default_n(task: str) -> int | None:
    """``--n`` when not given: DEFAULT_N items of a generated task, else every row (None)."""
    from innerprobe.tasks.registry import RELEASE_NAMES, TASKS

    return DEFAULT_N if task in TASKS or task in RELEASE_NAMES else None


def preflight(
    out: Path, stage: str, device: str | None, *, models: tuple[str | None, ...] = (), dtype: str | None = None
) -> Path:
    """The checks every verb runs before loading a model: model specs, device, dtype, then ``--out``.

    Raises an ``InnerprobeError`` naming the bad value and the valid ones; ``--out`` is checked
    (and claimed for ``stage``) last, so a bad model or device leaves no directory behind.
    """
    from innerprobe.artifacts import prepare_out_dir
    from innerprobe.models import _resolve_dtype, check_device, check_model_spec

    for spec in filter(None, models):
        check_model_spec(spec)
    if device:
        check_device(device)
    if dtype is not None:
        _resolve_dtype(dtype)
    return prepare_out_dir(out, stage)


def _check_hypotheticals_fit(m: Any, items: Any, prop: Any, spec: Any) -> None:
    """``DataError`` before any generation when a hypothetical prompt exceeds the context."""
    from innerprobe.behavior import build_hypotheticals
    from innerprobe.inference import check_fits

    rows = [h.input_ids for h in build_hypotheticals(m, items, prop, spec)]
    check_fits(m.hf_model, rows, 1, "answer token", names=list(items["id"]), what="hypothetical prompt")


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


def _fmt(est: Any) -> str:
    """``value [low, high] (n=..)`` plus the interval's method in short (Wilson, bootstrap)."""
    if est is None:
        return "–"
    method = str(getattr(est, "method", "") or "")
    short = "Wilson" if method.startswith("Wilson") else "bootstrap" if "bootstrap" in method else method
    return f"{est}  {short}" if short else str(est)


def _summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value [95% CI]")
    mb = summary["mode_baseline"]
    rows = [
        ("items (scored / total)", f"{summary['n_scored']} / {summary['n_items']}"),
        ("object non-compliant (dropped)", str(summary["n_object_noncompliant"])),
        ("skipped: over context length", str(summary["n_skipped_too_long"])),
        ("dropped: object value not a label", str(summary.get("n_value_outside_labels", 0))),
        ("object compliance", _fmt(summary["object_compliance"])),
        ("mode baseline" + (f" ({mb.mode!r})" if mb.mode is not None else ""), _fmt(mb.estimate)),
        ("self-prediction accuracy", _fmt(summary["self"]["accuracy"])),
        ("self hypothetical compliance", _fmt(summary["self"]["compliance"])),
    ]
    if "cross" in summary:
        d = summary["self_minus_cross"]
        mcnemar = f"  McNemar p={d.mcnemar_p:.3g}" if getattr(d, "mcnemar_p", None) is not None else ""
        rows += [
            (f"cross-prediction accuracy ({summary['cross']['predictor']})", _fmt(summary["cross"]["accuracy"])),
            ("self − cross (paired bootstrap)", _fmt(d.diff) + f"  p={d.p_value:.3g}" + mcnemar),
        ]
    if "calibration_mad" in summary:
        rows.append(("calibration MAD (pp)", f"{summary['calibration_mad']:.1f}"))
    for k, v in rows:
        table.add_row(k, v)
    return table


@app.command()
def behave(
    model: str = typer.Option("smollm2-135m-instruct", help="Object model: embedded name, HF dir or hub id."),
    task: str = typer.Option("animals", help="Task name (see `innerprobe tasks`) or a questions file."),
    property: str = typer.Option("second_character", "--property", help="Property (see `innerprobe properties`)."),
    n: int | None = typer.Option(
        None, min=1, help="Number of items (default: 100 of a generated task; every row of a file or --release)."
    ),
    mode: str = typer.Option("forced", help="free (paper-faithful text) or forced (choice over labels)."),
    out: Path = typer.Option(Path("runs/behave"), help="Output directory."),
    predictor: str | None = typer.Option(None, help="Cross-predictor model (scored on the object model's behaviour)."),
    predictor_variant: str | None = typer.Option(
        None, help="Prompt variant for the cross-predictor (e.g. third_person); alone, the object model is the predictor."
    ),
    release: Path | None = typer.Option(None, help="A release JSONL file of the paper (overrides --task/--property)."),
    variant: str = typer.Option("previously", help="Hypothetical wording: previously | suppose | third_person."),
    object_prefill: str | None = typer.Option(
        None,
        help="Assistant prefill of object answers ('' for none; default: the task family's measured "
        "default, see experiments/results/compliance_by_task.md).",
    ),
    hypothetical_prefill: str = typer.Option("Answer:", help="Assistant prefill of self-predictions ('' for none)."),
    split: str = typer.Option("test", help="Split of generated tasks."),
    seed: int = typer.Option(0, help="Seed for items, sampling and bootstrap."),
    batch_size: int = typer.Option(16, min=1, help="Rows per forward."),
    calibration_samples: int = typer.Option(
        0, min=0, help="Object samples at T=1 per item for calibration MAD (forced mode)."
    ),
    device: str | None = typer.Option(None, help="cpu | cuda | cuda:N | mps (default: cuda if available)."),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16."),
) -> None:
    """Measure self-prediction (and cross-prediction) of a model on a task and property."""
    from innerprobe.artifacts import provenance, write_json, write_parquet
    from innerprobe.behavior import BehaviorConfig
    from innerprobe.behavior import behave as run_behave
    from innerprobe.models import load_model
    from innerprobe.prompts import TASK_DEFAULT_PREFILL, PromptSpec
    from innerprobe.properties import get_property
    from innerprobe.tasks import load_items, release_property

    try:
        if release is not None:
            items = load_items(str(release), n=n, seed=seed)
            property = release_property(release)
        else:
            items = load_items(task, n=n if n is not None else _default_n(task), split=split, seed=seed)
        prop = get_property(property)
        spec = PromptSpec(
            variant=variant,
            object_prefill=TASK_DEFAULT_PREFILL if object_prefill is None else (object_prefill or None),
            hypothetical_prefill=hypothetical_prefill or None,
        )
        config = BehaviorConfig(
            mode=mode, spec=spec, batch_size=batch_size, calibration_samples=calibration_samples, seed=seed
        )
        pspec = PromptSpec(**{**spec.to_dict(), "variant": predictor_variant}) if predictor_variant else None
        preflight(out, "behave", device, models=(model, predictor), dtype=dtype)
        with console.status(f"loading {model}"):
            m = load_model(model, device=device, dtype=dtype)
            p = load_model(predictor, device=device, dtype=dtype) if predictor else None
        _check_hypotheticals_fit(m, items, prop, spec)
        with Bars() as bars:
            result = run_behave(m, items, prop, config, predictor=p, predictor_spec=pspec, progress=bars.factory)
    except InnerprobeError as e:
        _fail(e)
        return
    summary = {
        **result.summary,
        "task": sorted(set(items["task"])),
        "property": prop.name,
        "mode": mode,
        "config": {"spec": spec.to_dict(), "batch_size": batch_size, "calibration_samples": calibration_samples},
        "source": str(release) if release else task,
        "provenance": provenance(
            m.fingerprint, seed=seed, template_hash=spec.template_hash(prop),
            predictor=p.fingerprint.to_dict() if p else None,
        ),
    }
    write_parquet(out / "behavior.parquet", result.table)
    write_json(out / "summary.json", summary)
    out_console.print(_summary_table(summary, f"{m.name} · {summary['task']} · {prop.name} · {mode}"))
    console.print(f"wrote {out / 'behavior.parquet'} and {out / 'summary.json'}")


@app.command()
def tasks() -> None:
    """List the built-in task generators."""
    from innerprobe.tasks import get_task, list_tasks

    table = Table(title="tasks")
    for col in ("name", "kind", "vocabulary", "items", "object prompt"):
        table.add_column(col)
    for t in map(get_task, list_tasks()):
        vocab = f"{len(t.vocabulary)} words" if t.vocabulary else "–"
        source = "generated" if t.can_generate else "release/loader"
        table.add_row(t.name, t.kind, vocab, source, t.template.replace("\n", "⏎")[:60])
    out_console.print(table)


@app.command()
def properties() -> None:
    """List the behavioural properties."""
    from innerprobe.properties import list_properties

    table = Table(title="properties")
    for col in ("name", "compliance", "applies to", "hypothetical question"):
        table.add_column(col)
    for p in list_properties():
        table.add_row(p.name, p.compliance, ", ".join(sorted(p.kinds)), p.hypothetical_question()[:70])
    out_console.print(table)


@app.command()
def models() -> None:
    """List the embedded models (any HF directory or hub id also works)."""
    from innerprobe.models import list_models

    table = Table(title="models")
    for col in ("name", "description", "install"):
        table.add_column(col)
    for m in list_models():
        table.add_row(m.name, m.description, m.install_hint)
    out_console.print(table)


from innerprobe.commands import register_all  # noqa: E402

register_all(app)

if __name__ == "__main__":  # pragma: no cover
    app()
