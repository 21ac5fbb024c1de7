"""``innerprobe finetune``: LoRA self-/cross-prediction training on a model's object behaviour.

``--model`` is trained; ``--data-from`` is the model whose greedy object-level behaviour supplies
the answers (default: ``--model`` itself, i.e. self-training M1; another model gives
cross-training M2), or a JSONL/Parquet file written earlier. The output directory is a LoRA
adapter that every other verb loads by path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from innerprobe.cli.options import DeviceOpt, ModelOpt, OutOpt, SeedOpt
from innerprobe.cli.ui import Bars, console, fail, preflight
from innerprobe.core.errors import DataError, InnerprobeError, check_at_least
from innerprobe.models.load import load_model
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import get_task
from innerprobe.training.data import build_training_data, load_training_data, save_training_data
from innerprobe.training.finetune import FinetuneConfig, finetune, steps_for

log = logging.getLogger(__name__)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


DataFromOpt = Annotated[str | None, typer.Option("--data-from", help="Behaviour source: a model (default: --model) or a .jsonl/.parquet data file.")]
TasksOpt = Annotated[str, typer.Option(help="Training tasks, comma-separated.")]
PropertiesOpt = Annotated[str, typer.Option(help="Properties, comma-separated.")]
PerComboOpt = Annotated[int, typer.Option(help="Items per (task, property).")]
BalanceOpt = Annotated[bool, typer.Option(help="Downsample each combination to its rarest label.")]
EpochsOpt = Annotated[int, typer.Option(help="Passes over the data.")]
RankOpt = Annotated[int, typer.Option(help="LoRA rank.")]
AlphaOpt = Annotated[int, typer.Option(help="LoRA alpha.")]
LrOpt = Annotated[float, typer.Option(help="AdamW learning rate.")]
StepBatchOpt = Annotated[int, typer.Option("--batch-size", help="Rows per optimiser step.")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Cap on optimiser steps.")]
SaveEveryOpt = Annotated[int, typer.Option(help="Checkpoint every N steps (0: end only).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out.")]


def finetune_cmd(
    model: ModelOpt = "smollm2-135m-instruct",
    data_from: DataFromOpt = None,
    tasks: TasksOpt = "colors,countries,numbers",
    properties: PropertiesOpt = "first_character,second_character,third_character",
    n_per_combo: PerComboOpt = 100,
    balance: BalanceOpt = False,
    epochs: EpochsOpt = 2,
    rank: RankOpt = 16,
    alpha: AlphaOpt = 32,
    lr: LrOpt = 5e-4,
    batch_size: StepBatchOpt = 8,
    max_steps: MaxStepsOpt = None,
    save_every: SaveEveryOpt = 50,
    seed: SeedOpt = 0,
    out: OutOpt = Path("runs/finetune"),
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train a LoRA adapter on hypothetical → property pairs (self- or cross-prediction)."""

    try:
        cfg = FinetuneConfig(
            rank=rank, alpha=alpha, lr=lr, epochs=epochs, batch_size=batch_size,
            max_steps=max_steps, seed=seed, save_every=save_every,
        )
        src_path = Path(data_from) if data_from else None
        from_file = src_path is not None and src_path.suffix in (".jsonl", ".parquet")
        if from_file and not src_path.is_file():
            raise DataError(f"--data-from {src_path}: no such file (a .jsonl/.parquet data file or a model)")
        check_at_least("--n-per-combo", n_per_combo, 1)
        for name in _csv(tasks):
            get_task(name)
        for name in _csv(properties):
            get_property(name)
        preflight(out, "finetune", device, models=(model, None if from_file or data_from == model else data_from))
        with console.status(f"loading {model}"):
            m = load_model(model, device=device)
        data_file = out / "train.jsonl"
        if from_file:
            data = load_training_data(src_path)
        elif resume and data_file.exists():
            data = load_training_data(data_file)
        else:
            src = m if data_from in (None, model) else load_model(data_from, device=device)
            with Bars() as bars:
                data = build_training_data(
                    src, _csv(tasks), _csv(properties), n_per_combo,
                    balance=balance, seed=seed, progress=bars.factory,
                )
            save_training_data(data, data_file, src, tasks=_csv(tasks), properties=_csv(properties))
        total = steps_for(len(data), cfg)
        console.print(f"{len(data)} rows · {total} steps · rank {rank} · lr {lr}")
        with Bars() as bars:
            advance = bars.factory("training", total)
            state = {"last": 0}

            def on_step(step: int, loss: float) -> None:
                advance(step - state["last"])
                state["last"] = step
                if step == 1 or step % 10 == 0 or step == total:
                    console.print(f"step {step}/{total} loss {loss:.4f}")

            res = finetune(m, data, out, cfg, resume=resume, device=device, progress=on_step)
    except InnerprobeError as e:
        fail(e)
        return
    console.print(f"adapter at {res.out_dir} (final loss {res.history[-1]['loss']:.4f}); load it with load_model('{res.out_dir}')")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
