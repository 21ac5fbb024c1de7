"""``innerprobe capture``: object answers as labels, then O and H activations into a store.

The verb first elicits the model's greedy object-level answers (object prefill ``Answer:``), so
the store's row table carries what probes are trained to predict
(:func:`~innerprobe.behavior.answers.answer_columns`: ``object_answer``, ``answer_property``,
``property_value``, ``object_compliant``), then captures the residual stream of O(P) and
H(P, property) into ``--out`` (see :mod:`innerprobe.activations.store`). The options build a
:class:`~innerprobe.activations.config.CaptureConfig`, which checks every value before the model
is loaded. Rerunning the same command on an interrupted ``--out`` resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from innerprobe.activations.capture import capture
from innerprobe.activations.config import CaptureConfig
from innerprobe.behavior import BehaviorConfig, elicit_object
from innerprobe.behavior.answers import answer_columns, items_vocabulary
from innerprobe.cli.options import (
    BatchSizeOpt,
    DeviceOpt,
    ModelOpt,
    NOpt,
    OutOpt,
    PropertyOpt,
    SeedOpt,
    SplitOpt,
    TaskOpt,
    VariantOpt,
)
from innerprobe.cli.ui import Bars, console, fail, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

log = logging.getLogger(__name__)

SitesOpt = Annotated[str, typer.Option(help="Comma-separated: resid_pre,resid_mid,resid_post,attn_out,mlp_out.")]
CaptureLayersOpt = Annotated[str, typer.Option("--layers", help="Layers: all | a list '0,5,9' | a slice '0:30:3'.")]
ObjectPosOpt = Annotated[str, typer.Option(help="Object positions: o_last, prefill_start or integers.")]
HypoPosOpt = Annotated[str, typer.Option(help="Hypothetical positions: h_last, quote_last, quote_mean, prefill_start, integers.")]
ShardOpt = Annotated[int, typer.Option("--shard-size", help="Items per shard file.")]
StoreDtypeOpt = Annotated[str, typer.Option(help="Stored dtype: float32 | float16.")]


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def capture_cmd(
    model: ModelOpt = "smollm2-135m-instruct",
    task: TaskOpt = "animals",
    property: PropertyOpt = "second_character",
    n: NOpt = 100,
    split: SplitOpt = "train",
    sites: SitesOpt = "resid_post",
    layers: CaptureLayersOpt = "all",
    object_positions: ObjectPosOpt = "o_last",
    hypothetical_positions: HypoPosOpt = "h_last,quote_last,quote_mean",
    variant: VariantOpt = "previously",
    out: OutOpt = Path("runs/capture"),
    batch_size: BatchSizeOpt = 16,
    shard_size: ShardOpt = 256,
    dtype: StoreDtypeOpt = "float32",
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
) -> None:
    """Capture activations of object and hypothetical prompts into an on-disk store."""

    try:
        prop = get_property(property)
        items = load_items(task, n=n, split=split, seed=seed)
        config = CaptureConfig(
            sites=_csv(sites), layers=layers, object_positions=_csv(object_positions),
            hypothetical_positions=_csv(hypothetical_positions), spec=PromptSpec(variant=variant),
            batch_size=batch_size, shard_size=shard_size, dtype=dtype, seed=seed,
        )
        preflight(out, "capture", device, models=(model,))
        with console.status(f"loading {model}"):
            m = load_model(model, device=device)
        with Bars() as bars:
            behavior = elicit_object(
                m, items, prop, BehaviorConfig(spec=config.spec, batch_size=batch_size, seed=seed),
                progress=bars.factory("object answers", len(items)),
            )
            store = capture(
                m, items, prop, config, out=out, labels=answer_columns(behavior, prop, items_vocabulary(items)),
                progress=bars.factory("capture", len(items)),
            )
    except InnerprobeError as e:
        fail(e)
        return
    n_ok = int(store.rows["object_compliant"].sum())
    console.print(f"{store!r}; object compliant {n_ok}/{store.n_items}")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("capture")(capture_cmd)
