"""``innerprobe behave``: the paper's behavioural measurement of self- (and cross-) prediction."""

from __future__ import annotations

from pathlib import Path

import typer

from innerprobe.behavior.elicitation import BehaviorConfig
from innerprobe.behavior.elicitation import behave as run_behave
from innerprobe.cli.ui import (
    Bars,
    _check_hypotheticals_fit,
    behavior_summary_table,
    console,
    default_n,
    fail,
    out_console,
    preflight,
)
from innerprobe.core.errors import InnerprobeError
from innerprobe.core.io import provenance, write_json, write_parquet
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import TASK_DEFAULT_PREFILL, PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items, release_property


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

    try:
        if release is not None:
            items = load_items(str(release), n=n, seed=seed)
            property = release_property(release)
        else:
            items = load_items(task, n=n if n is not None else default_n(task), split=split, seed=seed)
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
        fail(e)
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
    out_console.print(behavior_summary_table(summary, f"{m.name} · {summary['task']} · {prop.name} · {mode}"))
    console.print(f"wrote {out / 'behavior.parquet'} and {out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    app.command()(behave)
