"""``innerprobe lens``: does the own answer appear in H's residual stream before its property?

A thin verb over :func:`~innerprobe.interventions.lens_trace.lens_trace`: the logit lens by
default, a saved tuned lens with ``--tuned-lens DIR``, or one trained here first on text the
model generates itself (``--train-steps N``, saved to ``OUT/tuned_lens``). Writes the result
(``result.save``: ranks and log-probs in safetensors, the items in Parquet, ``summary.json``) and
``lens_trace.html``; prints the layer gaps with their CIs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from innerprobe.cli.options import (
    DeviceOpt,
    ModelOpt,
    NOpt,
    OutOpt,
    PropertyOpt,
    SeedOpt,
    SplitOpt,
    TaskOpt,
)
from innerprobe.cli.ui import Bars, console, fail, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.core.io import write_json
from innerprobe.interventions.lens import (
    TunedLens,
    TunedLensConfig,
    self_distilled_rows,
    train_tuned_lens,
)
from innerprobe.interventions.lens_trace import LensTraceConfig, LensTraceResult, lens_trace
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import object_prompt
from innerprobe.protocol.tasks import load_items

PositionsOpt = Annotated[str, typer.Option(help="H positions read: quote_end,last.")]
TopKOpt = Annotated[int, typer.Option(help="A target has emerged where its rank is below this...")]
PersistOpt = Annotated[int, typer.Option(help="...for this many consecutive layers.")]
TunedOpt = Annotated[Path | None, typer.Option(help="A saved tuned lens directory (default: logit lens).")]
TrainStepsOpt = Annotated[int, typer.Option(help="Train a tuned lens first, on self-generated text (0: no).")]


def _trained_lens(m: LoadedModel, task: str, steps: int, seed: int, out: Path, bars: Bars) -> TunedLens:
    items = load_items(task, n=32, split="train", seed=seed)
    prompts = [object_prompt(m.tokenizer, q).input_ids for q in items["question"]]
    rows = self_distilled_rows(m, prompts, seed=seed)
    lens = train_tuned_lens(m, rows, TunedLensConfig(steps=steps, seed=seed), progress=bars.factory("tuned lens", steps))
    lens.save(out / "tuned_lens")
    return lens


def print_summary(result: LensTraceResult) -> None:
    s = result.summary
    console.print(f"{s.lens} lens, top-{s.top_k}: {s.n_items} items (dropped {s.dropped or 'none'})")
    for pos, p in s.positions.items():
        console.print(f"H {pos}: emerged answer {p.answer_emerged}, control {p.control_emerged}, "
                      f"property {p.property_emerged}, output {p.output_emerged}")
        for name, gap in (("property - answer", p.gap_property_minus_answer),
                          ("output - answer", p.gap_output_minus_answer),
                          ("control - answer", p.gap_control_minus_answer)):
            console.print(f"  layer gap {name}: {gap if gap is not None else 'no item where both emerge'}")


def register(app: typer.Typer) -> None:
    @app.command()
    def lens(
        model: ModelOpt = "smollm2-135m-instruct",
        task: TaskOpt = "animals",
        property: PropertyOpt = "second_character",
        n: NOpt = 100,
        split: SplitOpt = "test",
        positions: PositionsOpt = "quote_end,last",
        top_k: TopKOpt = 10,
        persist: PersistOpt = 3,
        tuned_lens: TunedOpt = None,
        train_steps: TrainStepsOpt = 0,
        out: OutOpt = Path("runs/lens"),
        seed: SeedOpt = 0,
        device: DeviceOpt = None,
    ) -> None:
        """Logit / tuned lens trace of the own answer, a matched control word and the property in H."""
        try:
            config = LensTraceConfig(positions=tuple(p.strip() for p in positions.split(",") if p.strip()),
                                     top_k=top_k, persist=persist, seed=seed)
            items = load_items(task, n=n, split=split, seed=seed)
            preflight(out, "lens", device, models=(model,))
            with console.status(f"loading {model}"):
                m = load_model(model, device=device)
            with Bars() as bars:
                lens_obj = TunedLens.load(tuned_lens, m) if tuned_lens is not None else None
                if lens_obj is None and train_steps > 0:
                    lens_obj = _trained_lens(m, task, train_steps, seed, out, bars)
                result = lens_trace(m, items, property, config, lens=lens_obj, progress=bars.factory("lens", len(items)))
            result.save(out)
            write_json(out / "summary.json", result.summary.to_dict())
            result.figure().write_html(out / "lens_trace.html")
        except InnerprobeError as e:
            fail(e)
            return
        print_summary(result)
        console.print(f"wrote {out}")
