"""The finetuning stage's result: :class:`FinetuneResult`, its summary and its loss figure.

A run's result follows the protocol of :mod:`innerprobe.core.result`: ``.table`` is the loss
curve (one row per optimiser step), ``.summary`` a :class:`FinetuneSummary`, ``.figure()`` the
curve with its running mean, ``.save(dir)`` / ``FinetuneResult.load(dir)`` a directory of
Parquet and JSON. The trained adapter itself lives in the run's ``out_dir`` (peft's files),
loaded back by ``load_model(out_dir)``; the in-memory peft model is not part of the saved result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from innerprobe.core import stats
from innerprobe.core.result import Result, Summary
from innerprobe.training.config import FinetuneConfig

HISTORY_COLUMNS = ("step", "epoch", "loss", "lr", "seconds")


@dataclass
class FinetuneSummary(Summary):
    """How a run went.

    Attributes:
        steps, total_steps, finished: optimiser steps done, planned, and whether all ran.
        n_rows: training rows; data_hash: :func:`~innerprobe.training.data.data_hash` of them.
        first_loss, final_loss: the loss of the first and of the last step.
        end_loss: mean loss over the last tenth of the steps (at least one), with a
            percentile-bootstrap interval over those steps (steps are not independent: read it
            as the spread of the end of the curve, not as a test).
    """

    steps: int
    total_steps: int
    finished: bool
    n_rows: int
    data_hash: str
    first_loss: float | None
    final_loss: float | None
    end_loss: stats.Estimate | None


@dataclass(eq=False)
class FinetuneResult(Result):
    """A finished (or stopped) run: where the adapter is, the in-memory peft model, the losses.

    ``model`` is the trained peft model while the run's process holds it; it is not saved
    (the adapter in ``out_dir`` is: ``load_model(out_dir)``), so it is None after :meth:`load`.
    """

    stage: ClassVar[str] = "finetune"

    out_dir: Path
    model: Any = field(default=None, repr=False)
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    total_steps: int = 0
    finished: bool = False
    n_rows: int = 0
    data_hash: str = ""
    config: FinetuneConfig | None = None

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)

    @property
    def table(self) -> pd.DataFrame:
        """The loss curve: one row per optimiser step (``step, epoch, loss, lr, seconds``)."""
        return pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS))

    @property
    def summary(self) -> FinetuneSummary:
        losses = [h["loss"] for h in self.history]
        tail = losses[-max(1, len(losses) // 10) :]
        return FinetuneSummary(
            steps=self.step,
            total_steps=self.total_steps,
            finished=self.finished,
            n_rows=self.n_rows,
            data_hash=self.data_hash,
            first_loss=losses[0] if losses else None,
            final_loss=losses[-1] if losses else None,
            end_loss=stats.bootstrap_ci(tail, seed=self.config.seed if self.config else 0) if tail else None,
        )

    def figure(self) -> go.Figure:
        """The loss curve and its running mean (:func:`loss_figure`)."""
        return loss_figure(self.history, f"LoRA loss · {self.out_dir.name}")

    def save(self, directory: str | Path) -> Path:
        """Everything but the in-memory ``model`` (Parquet / JSON, see :class:`Result`)."""
        return Result.save(dataclasses.replace(self, model=None), directory)


def loss_figure(history: list[dict[str, float]], title: str = "LoRA training loss") -> go.Figure:
    """Plotly figure of the per-step loss (answer tokens only) and its running mean."""

    steps = [h["step"] for h in history]
    losses = np.array([h["loss"] for h in history])
    k = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid") if len(losses) else losses
    fig = go.Figure()
    fig.add_scatter(x=steps, y=losses, mode="lines", name="loss", opacity=0.4)
    fig.add_scatter(x=steps[k - 1 :], y=smooth, mode="lines", name=f"mean of {k}")
    fig.update_layout(title=title, xaxis_title="optimiser step", yaxis_title="cross-entropy (answer tokens)")
    return fig


__all__ = ["HISTORY_COLUMNS", "FinetuneResult", "FinetuneSummary", "loss_figure"]
