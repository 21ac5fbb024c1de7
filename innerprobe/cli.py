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


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


def _fmt(est: Any) -> str:
    return str(est) if est is not None else "–"


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
        rows += [
            (f"cross-prediction accuracy ({summary['cross']['predictor']})", _fmt(summary["cross"]["accuracy"])),
            ("self − cross (paired bootstrap)", _fmt(summary["self_minus_cross"].diff)
             + f"  p={summary['self_minus_cross'].p_value:.3g}"),
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
    n: int = typer.Option(100, help="Number of items."),
    mode: str = typer.Option("forced", help="free (paper-faithful text) or forced (choice over labels)."),
    out: Path = typer.Option(Path("runs/behave"), help="Output directory."),
    predictor: str | None = typer.Option(None, help="Cross-predictor model (scored on the object model's behaviour)."),
    predictor_variant: str | None = typer.Option(
        None, help="Prompt variant for the cross-predictor (e.g. third_person); alone, the object model is the predictor."
    ),
    release: Path | None = typer.Option(None, help="A release JSONL file of the paper (overrides --task/--property)."),
    variant: str = typer.Option("previously", help="Hypothetical wording: previously | suppose | third_person."),
    object_prefill: str = typer.Option("Answer:", help="Assistant prefill of object answers ('' for none)."),
    hypothetical_prefill: str = typer.Option("Answer:", help="Assistant prefill of self-predictions ('' for none)."),
    split: str = typer.Option("test", help="Split of generated tasks."),
    seed: int = typer.Option(0, help="Seed for items, sampling and bootstrap."),
    batch_size: int = typer.Option(16, help="Rows per forward."),
    calibration_samples: int = typer.Option(0, help="Object samples at T=1 per item for calibration MAD (forced mode)."),
    device: str | None = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16."),
) -> None:
    """Measure self-prediction (and cross-prediction) of a model on a task and property."""
    from innerprobe.artifacts import provenance, write_json, write_parquet
    from innerprobe.behavior import BehaviorConfig
    from innerprobe.behavior import behave as run_behave
    from innerprobe.models import load_model
    from innerprobe.prompts import PromptSpec
    from innerprobe.properties import get_property
    from innerprobe.tasks import load_items, release_property

    try:
        if release is not None:
            items = load_items(str(release), n=n, seed=seed)
            property = release_property(release)
        else:
            items = load_items(task, n=n, split=split, seed=seed)
        prop = get_property(property)
        spec = PromptSpec(
            variant=variant,
            object_prefill=object_prefill or None,
            hypothetical_prefill=hypothetical_prefill or None,
        )
        config = BehaviorConfig(
            mode=mode, spec=spec, batch_size=batch_size, calibration_samples=calibration_samples, seed=seed
        )
        pspec = PromptSpec(**{**spec.to_dict(), "variant": predictor_variant}) if predictor_variant else None
        with console.status(f"loading {model}"):
            m = load_model(model, device=device, dtype=dtype)
            p = load_model(predictor, device=device, dtype=dtype) if predictor else None
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
