"""``innerprobe zoo build|run``: train (or reuse) a zoo model with a planted route and verify it;
run the battery on the whole zoo and score its verdicts against the planted mechanisms.

A thin verb over :func:`~innerprobe.zoo.build.build_zoo_model` and
:func:`~innerprobe.zoo.check.run_zoo_check`: the options build a
:class:`~innerprobe.zoo.config.ZooConfig` (which checks every value); the model directory (HF
weights + tokenizer + ``zoo.json``) goes to ``--out`` or the cache, the route check's result to
``<model>/check`` with ``figure.html``. ``zoo run`` builds the grid of a ``[zoo]`` study table
(:class:`~innerprobe.study.zoo_study_config.ZooStudyConfig`), checks each model, runs the battery
on it and writes ``zoo_report.html`` (the confusion table first) with ``zoo_report.json`` and
``confusion.md``; rerunning resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from innerprobe.cli.options import NBootOpt, OutOpt, PropertyOpt, SeedOpt
from innerprobe.cli.ui import Bars, console, fail, fmt, out_console
from innerprobe.core.errors import InnerprobeError
from innerprobe.core.io import write_text
from innerprobe.study.zoo_report import write_zoo_report
from innerprobe.study.zoo_study import run_zoo_study
from innerprobe.study.zoo_study_config import ZooStudyConfig, load_zoo_study
from innerprobe.zoo import CheckConfig, ZooCheckSummary, ZooConfig, build_zoo_model, run_zoo_check

KindOpt = Annotated[str, typer.Option("--task-kind", help="text (answer = last word of P) or memorised (seeded per item).")]
RouteOpt = Annotated[str, typer.Option(help="simulation (H recomputes the answer) or direct (H has its own feature).")]
ZooTaskOpt = Annotated[str, typer.Option(help="A closed-vocabulary sequence task: animals, colors, countries.")]
ZooOutOpt = Annotated[Path | None, typer.Option(help="Model directory (default: the cache, keyed by the config).")]
StepsOpt = Annotated[int, typer.Option(help="Training steps of this stage.")]
WidthOpt = Annotated[int, typer.Option("--d-model", help="Residual width.")]
DepthOpt = Annotated[int, typer.Option("--n-layers", help="Decoder blocks.")]
AnswerWordsOpt = Annotated[int, typer.Option("--answer-words", help="Memorised: draw answers from the first k words (0: all).")]
BaseOpt = Annotated[str, typer.Option(help="scratch (a tiny Llama) or smollm2-135m-instruct (LoRA on its top blocks).")]
LoraRankOpt = Annotated[int, typer.Option("--lora-rank", help="Pretrained base: LoRA rank of the top blocks.")]
TrainableOpt = Annotated[int, typer.Option("--n-trainable", help="Pretrained base: how many top blocks carry adapters.")]
CheckOpt = Annotated[bool, typer.Option(help="Run the route check after the build.")]
ZooConfigOpt = Annotated[Path | None, typer.Option("--config", help="Study TOML with a \\[zoo] table (see experiments/zoo_study.toml).")]


def summary_table(s: ZooCheckSummary) -> Table:
    table = Table(title=f"zoo {s.task_kind}/{s.route}: route verified = {s.route_verified} ({s.why})")
    for col in ("measure", "value [95% CI]"):
        table.add_column(col)
    for name in ("object_accuracy", "self_accuracy", "mode_baseline", "text_only", "ablated_self", "random_self",
                 "object_ablated", "h_answer_code"):
        table.add_row(name, fmt(getattr(s, name)))
    return table


def register(app: typer.Typer) -> None:
    zoo_app = typer.Typer(help="Tiny models with planted self-report mechanisms.", no_args_is_help=True)
    app.add_typer(zoo_app, name="zoo")

    @zoo_app.command()
    def build(
        task_kind: KindOpt = "text",
        route: RouteOpt = "simulation",
        seed: SeedOpt = 0,
        task: ZooTaskOpt = "animals",
        property: PropertyOpt = "second_character",
        object_steps: StepsOpt = 1500,
        readout_steps: StepsOpt = 600,
        d_model: WidthOpt = 64,
        n_layers: DepthOpt = 3,
        answer_words: AnswerWordsOpt = 0,
        base: BaseOpt = "scratch",
        lora_rank: LoraRankOpt = 16,
        n_trainable: TrainableOpt = 4,
        out: ZooOutOpt = None,
        check: CheckOpt = True,
        n_boot: NBootOpt = 2000,
    ) -> None:
        """Build one zoo model (cached by its config) and verify its planted route."""
        try:
            config = ZooConfig(task_kind=task_kind, route=route, seed=seed, task=task, property=property,
                               object_steps=object_steps, readout_steps=readout_steps, d_model=d_model,
                               n_layers=n_layers, answer_words=answer_words, base=base, lora_rank=lora_rank,
                               n_trainable=n_trainable)
            with console.status(f"building zoo model {config.name}"):
                zoo = build_zoo_model(config, out)
            console.print(f"model {zoo.path} (weights sha256 {zoo.weights_sha256[:16]}, "
                          f"{zoo.record['build_seconds']} s)")
            if not check:
                return
            with console.status("route check"):
                result = run_zoo_check(zoo, CheckConfig(n_boot=n_boot, seed=seed))
            result.save(zoo.path / "check")
            result.figure().write_html(str(zoo.path / "check" / "figure.html"))
        except InnerprobeError as e:
            fail(e)
            return
        out_console.print(summary_table(result.summary))

    @zoo_app.command("run")
    def run(config: ZooConfigOpt = None, out: OutOpt = Path("runs/zoo")) -> None:
        """Run the battery on every zoo model and score its verdicts against the planted mechanisms."""
        try:
            cfg = load_zoo_study(config) if config is not None else ZooStudyConfig()
            with Bars() as bars:
                result = run_zoo_study(cfg, out, progress=bars.factory)
            result.save(out / "result")
            html = write_zoo_report(result, out / "zoo_report.html")
            write_text(out / "confusion.md", result.markdown() + "\n")
        except InnerprobeError as e:
            fail(e)
            return
        out_console.print(result.confusion())
        console.print(f"verdicts matched {result.summary.verdict_match}; wrote {html}")
