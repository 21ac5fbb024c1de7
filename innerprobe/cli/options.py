"""CLI options declared once, as ``typing.Annotated`` aliases every verb reuses.

A verb writes ``model: ModelOpt = DEFAULT_MODEL`` instead of repeating the ``typer.Option``
(its flag, help and bounds) in each command, so ``--model`` means the same thing, with the same
help text, in ``behave``, ``capture``, ``patch`` and ``finetune``. Defaults stay in the verb's
signature (typer reads them from there), and value checks live in each stage's config
``__post_init__``, not here: the CLI only parses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[str, typer.Option(help="Model: embedded name (see `innerprobe models`), HF dir, adapter dir or hub id.")]
TaskOpt = Annotated[str, typer.Option(help="Task name (see `innerprobe tasks`), a questions file or a dataset.")]
PropertyOpt = Annotated[str, typer.Option("--property", help="Property of the answer (see `innerprobe properties`).")]
NOpt = Annotated[int, typer.Option(help="Number of items.")]
SplitOpt = Annotated[str, typer.Option(help="Split of generated tasks: train | test.")]
OutOpt = Annotated[Path, typer.Option(help="Output directory (re-running into it resumes).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for items, sampling, folds and bootstrap.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N | mps (default: cuda if available).")]
DtypeOpt = Annotated[str, typer.Option(help="float32 | float16 | bfloat16.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Rows per forward.")]
VariantOpt = Annotated[str, typer.Option(help="Hypothetical wording: previously | suppose | third_person.")]
LayersOpt = Annotated[str, typer.Option(help="Layers: all | a list '0,5,9' | a slice '0:30:3'.")]
SiteOpt = Annotated[str, typer.Option(help="Hook site: resid_pre | resid_mid | resid_post | attn_out | mlp_out.")]
LayerOpt = Annotated[int | None, typer.Option(help="One layer (negative counts from the end; default: the middle layer).")]
StoreOpt = Annotated[Path, typer.Option(help="Activation store from `innerprobe capture` (its O runs give the answer directions).")]
NBootOpt = Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples for the intervals.")]

__all__ = [
    "BatchSizeOpt",
    "DeviceOpt",
    "DtypeOpt",
    "LayerOpt",
    "LayersOpt",
    "ModelOpt",
    "NBootOpt",
    "NOpt",
    "OutOpt",
    "PropertyOpt",
    "SeedOpt",
    "SiteOpt",
    "SplitOpt",
    "StoreOpt",
    "TaskOpt",
    "VariantOpt",
]
