"""``innerprobe ablate``: project the answer subspace out of H and O, against matched random subspaces.

A thin verb over :func:`~innerprobe.interventions.ablation.run_ablation`: the options build an
:class:`~innerprobe.interventions.ablation.AblationConfig` (which checks every value), the
subspaces come from the O runs of ``--store``, ``result.save(out)`` writes the result (Parquet
tables, ``result.json``) beside ``figure.html``, and the accuracy of each reading (self-prediction,
object answer, the answer-independent control) is printed unablated, with the answer subspace
removed and with a random one removed.
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
from innerprobe.interventions.ablation import AblationConfig, run_ablation
from innerprobe.interventions.ablation_result import AblationSummary
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import PromptSpec

RankOpt = Annotated[int | None, typer.Option("--k", help="Rank of the answer subspace (default: classes - 1; 0: identity).")]
ModesOpt = Annotated[str, typer.Option(help="Ablation modes, comma-separated: zero, mean.")]
ControlOpt = Annotated[bool, typer.Option(help="Also run the answer-independent control question.")]


def summary_table(s: AblationSummary) -> Table:
    """Per reading and mode: accuracy unablated, answer removed, random removed, McNemar p, Δlog p."""
    mb = f"; mode baseline {fmt(s.mode_baseline)}" if s.mode_baseline is not None else ""
    table = Table(title=f"rank-{s.rank} answer subspace removed from layer {s.start_layer} ({s.site}): "
                        f"{s.n_scored}/{s.n_items} items{mb}")
    for col in ("reading / mode", "unablated", "answer removed", "random removed", "McNemar p (answer vs random)",
                "Δlog p: answer", "random"):
        table.add_column(col)
    for e in s.effects:
        p = e.answer_vs_random.mcnemar_p
        table.add_row(f"{e.reading} / {e.mode}", fmt(e.unablated), fmt(e.answer), fmt(e.random),
                      f"{p:.3g}" if p is not None else "–", fmt(e.dlogp_answer), fmt(e.dlogp_random))
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def ablate(
        store: StoreOpt,
        model: ModelOpt = "smollm2-135m-instruct",
        task: TaskOpt = "animals",
        property: PropertyOpt = "second_character",
        n: NOpt = 100,
        split: SplitOpt = "test",
        layer: LayerOpt = None,
        k: RankOpt = None,
        modes: ModesOpt = "zero,mean",
        site: SiteOpt = "resid_post",
        control: ControlOpt = True,
        variant: VariantOpt = "previously",
        out: OutOpt = Path("runs/ablate"),
        batch_size: BatchSizeOpt = 16,
        n_boot: NBootOpt = 2000,
        seed: SeedOpt = 0,
        device: DeviceOpt = None,
    ) -> None:
        """Ablation (E6): the answer subspace out of H from a layer on, vs random subspaces and a control."""

        try:
            config = AblationConfig(
                layer=layer, k=k, site=site, control=control, batch_size=batch_size, n_boot=n_boot, seed=seed,
                spec=PromptSpec(variant=variant), modes=tuple(x.strip() for x in modes.split(",") if x.strip()),
            )
            opened = ActivationStore.open(store)
            preflight(out, "ablate", device, models=(model,))
            with console.status(f"loading {model}"):
                m = load_model(model, device=device)
            with Bars() as bars:
                result = run_ablation(m, opened, task, property, config, n=n, split=split, progress=bars.factory)
            result.save(out)
            result.figure().write_html(str(out / "figure.html"))
        except InnerprobeError as e:
            fail(e)
            return
        out_console.print(summary_table(result.summary))
        console.print(f"wrote {out}")
