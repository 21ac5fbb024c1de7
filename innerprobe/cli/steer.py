"""``innerprobe steer``: steer H and O along answer directions, against norm-matched random vectors.

A thin verb over :func:`~innerprobe.interventions.steering.run_steering`: the options build a
:class:`~innerprobe.interventions.steering.SteeringConfig` (which checks every value), the
directions come from the O runs of ``--store`` (from ``innerprobe capture``, ideally on the
train split), the experiment runs on ``--split`` items, ``result.save(out)`` writes it (Parquet
tables, ``result.json``) beside ``figure.html``, and the effect beside its control is printed per
steered place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from innerprobe.activations.store import ActivationStore
from innerprobe.cli.options import (
    BatchSizeOpt,
    DeviceOpt,
    LayerOpt,
    ModelOpt,
    NBootOpt,
    NOpt,
    OutOpt,
    PropertyOpt,
    SeedOpt,
    SiteOpt,
    SplitOpt,
    StoreOpt,
    TaskOpt,
    VariantOpt,
)
from innerprobe.cli.ui import Bars, console, fail, fmt, out_console, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.interventions.steering import SteeringConfig, run_steering
from innerprobe.interventions.steering_result import SteeringSummary
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import PromptSpec

ScaleOpt = Annotated[float, typer.Option(help="Multiple of the difference of class means added.")]
HPositionsOpt = Annotated[str, typer.Option(help="Where in H, comma-separated: quote, all, last, ...")]
OPositionOpt = Annotated[str, typer.Option(help="Where in O: last (default), all, ...")]


def summary_table(s: SteeringSummary) -> Table:
    """Per steered place: moved to target with the direction, with random, unsteered; McNemar; shifts."""
    table = Table(title=f"steering at layer {s.layer} ({s.site}), scale {s.scale:g}: {s.n_steered}/{s.n_items} items")
    for col in ("place", "toward target: direction", "random (norm-matched)", "unsteered", "McNemar p",
                "logit shift: direction", "random"):
        table.add_column(col)
    for e in s.effects:
        table.add_row(e.condition, fmt(e.toward_direction), fmt(e.toward_random), fmt(e.toward_unsteered),
                      f"{e.direction_vs_random.mcnemar_p:.3g}", fmt(e.shift_direction), fmt(e.shift_random))
    for t in s.tracking:
        if t.new_minus_old is not None:
            table.add_row(f"tracks O's new behaviour? {t.predictor} (n={t.n_changed})", f"new {fmt(t.follows_new)}",
                          f"old {fmt(t.follows_old)}", "", f"{t.new_minus_old.mcnemar_p:.3g}", "", "")
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def steer(
        store: StoreOpt,
        model: ModelOpt = "smollm2-135m-instruct",
        task: TaskOpt = "animals",
        property: PropertyOpt = "second_character",
        n: NOpt = 100,
        split: SplitOpt = "test",
        layer: LayerOpt = None,
        site: SiteOpt = "resid_post",
        scale: ScaleOpt = 1.0,
        h_positions: HPositionsOpt = "quote,all",
        o_position: OPositionOpt = "last",
        variant: VariantOpt = "previously",
        out: OutOpt = Path("runs/steer"),
        batch_size: BatchSizeOpt = 16,
        n_boot: NBootOpt = 2000,
        seed: SeedOpt = 0,
        device: DeviceOpt = None,
    ) -> None:
        """Steering (E5/E7): answer directions vs norm-matched random vectors, and behaviour-shift tracking."""

        try:
            config = SteeringConfig(
                layer=layer, site=site, scale=scale, o_position=o_position, batch_size=batch_size, n_boot=n_boot,
                seed=seed, spec=PromptSpec(variant=variant),
                h_positions=tuple(p.strip() for p in h_positions.split(",") if p.strip()),
            )
            opened = ActivationStore.open(store)
            preflight(out, "steer", device, models=(model,))
            with console.status(f"loading {model}"):
                m = load_model(model, device=device)
            with Bars() as bars:
                result = run_steering(m, opened, task, property, config, n=n, split=split, progress=bars.factory)
            result.save(out)
            result.figure().write_html(str(out / "figure.html"))
        except InnerprobeError as e:
            fail(e)
            return
        out_console.print(summary_table(result.summary))
        console.print(f"wrote {out}")
