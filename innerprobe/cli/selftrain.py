"""``innerprobe selftrain``: rounds of self-training on a model's own (introspective) data.

Round r trains M_r on M_{r-1}'s answers to fresh items, built by ``--policy``
(``self_prediction``, ``self_filtered`` or ``object_only``), and measures it; see
:mod:`innerprobe.training.rounds`. Re-running into the same ``--out`` resumes at the first
unfinished step. The table goes to ``--out/result``, the page to ``--out/report.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from innerprobe.cli.finetune import AlphaOpt, EpochsOpt, LrOpt, RankOpt, StepBatchOpt, _csv
from innerprobe.cli.options import DeviceOpt, ModelOpt, OutOpt, SeedOpt
from innerprobe.cli.ui import Bars, console, fail, out_console, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.models.load import load_model
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.rounds import run_self_training
from innerprobe.training.rounds_config import SelfTrainConfig

RoundsOpt = Annotated[int, typer.Option(help="Self-training rounds (each trains M_r on M_{r-1}'s data).")]
PolicyOpt = Annotated[str, typer.Option(help="Data policy: self_prediction | self_filtered | object_only.")]
TasksOpt = Annotated[str, typer.Option("--task", help="Task(s), comma-separated.")]
PropsOpt = Annotated[str, typer.Option("--property", help="Property(ies), comma-separated.")]
ItemsOpt = Annotated[int, typer.Option("--n", help="Fresh train items per task per round.")]
EvalOpt = Annotated[int, typer.Option("--n-eval", help="Test items per task measured after every round.")]
GtOpt = Annotated[int, typer.Option("--n-ground-truth", help="Questions per ground-truth task (0: none).")]
PatienceOpt = Annotated[int, typer.Option(help="Stop a round's training after N epochs without held-out gain (0: no early stop).")]
CrossOpt = Annotated[str, typer.Option(help="Cross-predictor: trained (a peer finetuned on M_r's behaviour) | untrained.")]
CrossModelOpt = Annotated[str | None, typer.Option(help="The cross-predictor's model (default: the base model).")]
CalibOpt = Annotated[int, typer.Option("--calibration-samples", help="T=1 samples per eval item for the calibration MAD (0: none).")]


def selftrain_cmd(
    model: ModelOpt = "smollm2-135m-instruct",
    rounds: RoundsOpt = 3,
    policy: PolicyOpt = "self_prediction",
    task: TasksOpt = "animals",
    property: PropsOpt = "second_character",
    n: ItemsOpt = 100,
    n_eval: EvalOpt = 100,
    n_ground_truth: GtOpt = 40,
    epochs: EpochsOpt = 3,
    rank: RankOpt = 16,
    alpha: AlphaOpt = 32,
    lr: LrOpt = 5e-4,
    batch_size: StepBatchOpt = 8,
    patience: PatienceOpt = 1,
    calibration_samples: CalibOpt = 0,
    cross: CrossOpt = "trained",
    cross_model: CrossModelOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = Path("runs/selftrain"),
    device: DeviceOpt = None,
) -> None:
    """Self-train a model for --rounds rounds on its own data and measure every round."""
    try:
        cfg = SelfTrainConfig(
            rounds=rounds, policy=policy, tasks=tuple(_csv(task)), properties=tuple(_csv(property)), n_items=n,
            finetune=FinetuneConfig(rank=rank, alpha=alpha, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed),
            patience=patience or None, n_eval=n_eval, n_ground_truth=n_ground_truth,
            calibration_samples=calibration_samples, cross=cross, cross_model=cross_model, seed=seed,
        )
        preflight(out, "selftrain", device, models=(model,) + ((cross_model,) if cross_model else ()))
        with console.status(f"loading {model}"):
            m = load_model(model, device=device)
        with Bars() as bars:
            res = run_self_training(m, cfg, out, progress=bars.factory)
    except InnerprobeError as e:
        fail(e)
        return
    table = Table(title=f"self-training · {policy} · {res.summary.rounds_done}/{rounds} rounds")
    for col in ("round", "task", "property", "measure", "value [95% CI]"):
        table.add_column(col)
    for r in res.table.itertuples():
        table.add_row(str(r.round), r.task, r.property, r.measure, f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] (n={r.n})")
    out_console.print(table)
    console.print(f"report at {out / 'report.html'}; result at {out / 'result'}")


def register(app: typer.Typer) -> None:
    app.command("selftrain")(selftrain_cmd)
