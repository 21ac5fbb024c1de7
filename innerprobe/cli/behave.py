"""``innerprobe behave``: the paper's behavioural measurement of self- (and cross-) prediction.

The verb only parses: options become a :class:`~innerprobe.behavior.config.BehaviorConfig`
(which checks every value and names the bad one) and items (``load_items``, which checks
``--n``); then :func:`~innerprobe.behavior.run.behave` runs and
:meth:`~innerprobe.behavior.result.BehaviorResult.save` writes ``--out``: ``behavior.parquet``,
``summary.json`` (the typed summary as JSON, with provenance) and ``result.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from innerprobe.behavior import BehaviorConfig
from innerprobe.behavior import behave as run_behave
from innerprobe.cli.options import (
    BatchSizeOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    OutOpt,
    PropertyOpt,
    SeedOpt,
    SplitOpt,
    TaskOpt,
    VariantOpt,
)
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
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import TASK_DEFAULT_PREFILL, PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items, release_property

ItemsNOpt = Annotated[
    int | None,
    typer.Option("--n", help="Number of items (default: 100 of a generated task; every row of a file or --release)."),
]
ModeOpt = Annotated[str, typer.Option(help="free (paper-faithful text) or forced (choice over labels).")]
PredictorOpt = Annotated[str | None, typer.Option(help="Cross-predictor model (scored on the object model's behaviour).")]
PredictorVariantOpt = Annotated[
    str | None,
    typer.Option(help="Prompt variant for the cross-predictor (e.g. third_person); alone, the object model is the predictor."),
]
ReleaseOpt = Annotated[Path | None, typer.Option(help="A release JSONL file of the paper (overrides --task/--property).")]
ObjectPrefillOpt = Annotated[
    str | None,
    typer.Option(
        help="Assistant prefill of object answers ('' for none; default: the task family's measured "
        "default, see experiments/results/compliance_by_task.md)."
    ),
]
HypotheticalPrefillOpt = Annotated[str, typer.Option(help="Assistant prefill of self-predictions ('' for none).")]
CalibrationSamplesOpt = Annotated[
    int, typer.Option(help="Object samples at T=1 per item for calibration MAD (forced mode).")
]


def behave(
    model: ModelOpt = "smollm2-135m-instruct",
    task: TaskOpt = "animals",
    property: PropertyOpt = "second_character",
    n: ItemsNOpt = None,
    mode: ModeOpt = "forced",
    out: OutOpt = Path("runs/behave"),
    predictor: PredictorOpt = None,
    predictor_variant: PredictorVariantOpt = None,
    release: ReleaseOpt = None,
    variant: VariantOpt = "previously",
    object_prefill: ObjectPrefillOpt = None,
    hypothetical_prefill: HypotheticalPrefillOpt = "Answer:",
    split: SplitOpt = "test",
    seed: SeedOpt = 0,
    batch_size: BatchSizeOpt = 16,
    calibration_samples: CalibrationSamplesOpt = 0,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
) -> None:
    """Measure self-prediction (and cross-prediction) of a model on a task and property."""

    try:
        spec = PromptSpec(
            variant=variant,
            object_prefill=TASK_DEFAULT_PREFILL if object_prefill is None else (object_prefill or None),
            hypothetical_prefill=hypothetical_prefill or None,
        )
        config = BehaviorConfig(
            mode=mode, spec=spec, batch_size=batch_size, calibration_samples=calibration_samples, seed=seed
        )
        pspec = PromptSpec(**{**spec.to_dict(), "variant": predictor_variant}) if predictor_variant else None
        if release is not None:
            items = load_items(str(release), n=n, seed=seed)
            property = release_property(release)
        else:
            items = load_items(task, n=n if n is not None else default_n(task), split=split, seed=seed)
        prop = get_property(property)
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
    result.provenance["source"] = str(release) if release else task
    result.save(out)
    s = result.summary
    out_console.print(behavior_summary_table(s, f"{m.name} · {s.tasks} · {prop.name} · {mode}"))
    console.print(f"wrote {out / 'behavior.parquet'} and {out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    app.command()(behave)
