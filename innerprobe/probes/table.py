"""The tidy table of a probe run: one row per (probe, split, items, layer), controls beside it.

Names first. A *run* is one activation set (``"O"`` for the object prompt at ``o_last``,
``"H:h_last"``, ...; the part before ``:`` is its kind, :func:`run_kind`). A *split* names where
a probe was trained and tested: ``"O"`` (trained and tested on O, out of fold) or ``"O→H:h_last"``
(trained on O, tested on H; :func:`split_name`). ``items`` is ``"held_out"`` (out-of-fold items)
or ``"same"`` (same-item transfer: the all-items fit of the source run scored on the target run).

Per-item correctness of every fit is kept under :func:`correct_key` (``probe/view/train/test/items``,
``view`` one of ``task``, ``shuffled``, ``control_task``, ``random_proj``); :func:`tabulate` turns
it into the table. Its columns: ``layer, probe, target, split, train_run, test_run, items, metric``
(``accuracy``), ``value, ci_low, ci_high, n`` (Wilson interval over items), ``majority``, and with
controls ``shuffled``, ``random_proj``, ``control_task`` (+ Wilson CI), ``selectivity`` (task −
control-task accuracy on the control's items, + paired-bootstrap CI) and ``control_n`` (the items
the control was fitted and scored on). Control columns are NaN when the control task was not
fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Bool

from innerprobe.core import stats
from innerprobe.probes.config import ProbeConfig

__all__ = ["Progress", "VIEWS", "correct_key", "parse_key", "run_name", "run_kind", "split_name", "tabulate"]

Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(stage, total)`` returns ``advance(k)``; the CLI passes its progress bars."""
VIEWS = ("task", "shuffled", "control_task", "random_proj")


def run_name(run: str, position: str) -> str:
    """Short run label: ``"O"`` for the object run at ``o_last``, else ``"O:pos"`` / ``"H:pos"``."""
    kind = {"object": "O", "hypothetical": "H"}.get(run, run)
    return "O" if (kind == "O" and position == "o_last") else f"{kind}:{position}"


def run_kind(name: str) -> str:
    """``"O"`` or ``"H"``: the part of a run name before ``:``."""
    return name.split(":")[0]


def split_name(src: str, tgt: str) -> str:
    """``"O"`` within a run, ``"O→H:h_last"`` for transfer from one run to another."""
    return src if src == tgt else f"{src}→{tgt}"


def correct_key(probe: str, view: str, src: str, tgt: str, items: str) -> str:
    """The key of one fit's per-item correctness: ``"probe/view/train_run/test_run/items"``."""
    return "/".join((probe, view, src, tgt, items))


def parse_key(key: str) -> tuple[str, str, str, str, str]:
    """Inverse of :func:`correct_key`: ``(probe, view, train_run, test_run, items)``."""
    probe, view, src, tgt, items = key.split("/")
    return probe, view, src, tgt, items


def _boot(correct: Bool[np.ndarray, " n"], cfg: ProbeConfig) -> stats.Estimate:
    return stats.accuracy(correct, n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed)


def tabulate(
    correct: dict[str, Bool[np.ndarray, "layer n"]],
    majority: Bool[np.ndarray, " n"],
    layers: list[int],
    target: str,
    cfg: ProbeConfig,
    progress: Progress | None = None,
    ctrl_rows: Bool[np.ndarray, " n"] | None = None,
) -> pd.DataFrame:
    """One row per (probe, split, items, layer), with Wilson CIs and the control columns."""
    keys = [parse_key(k) for k in correct if parse_key(k)[1] == "task"]
    advance = progress("bootstrap CIs", len(keys) * len(layers)) if progress else (lambda k: None)
    maj = float(majority.mean())
    rows = []
    for probe, _, src, tgt, items in keys:
        for li, layer in enumerate(layers):
            task = correct[correct_key(probe, "task", src, tgt, items)][li]
            est = _boot(task, cfg)
            row: dict[str, Any] = {
                "layer": layer, "probe": probe, "target": target, "split": split_name(src, tgt),
                "train_run": src, "test_run": tgt, "items": items, "metric": "accuracy",
                "value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n,
                "majority": maj,
            }
            if cfg.controls:
                row.update(
                    shuffled=float(correct[correct_key(probe, "shuffled", src, tgt, items)][li].mean()),
                    random_proj=float(correct[correct_key(probe, "random_proj", src, tgt, items)][li].mean()),
                    **_control_columns(correct.get(correct_key(probe, "control_task", src, tgt, items)),
                                       task, li, ctrl_rows, cfg),
                )
            rows.append(row)
            advance(1)
    return pd.DataFrame(rows)


def _control_columns(
    ctrl_correct: Bool[np.ndarray, "layer n_ctrl"] | None,
    task: Bool[np.ndarray, " n"],
    li: int,
    rows: Bool[np.ndarray, " n"] | None,
    cfg: ProbeConfig,
) -> dict[str, float]:
    """control_task (+Wilson CI), selectivity (+paired bootstrap CI) and the control's n."""
    names = ("control_task", "control_task_ci_low", "control_task_ci_high", "selectivity",
             "selectivity_ci_low", "selectivity_ci_high")
    if ctrl_correct is None or rows is None:
        return {**dict.fromkeys(names, float("nan")), "control_n": 0}
    ctrl = ctrl_correct[li]
    cest = _boot(ctrl, cfg)
    diff = stats.paired_bootstrap_diff(
        task[rows].astype(float), ctrl.astype(float), n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed
    )
    values = (cest.value, cest.ci_low, cest.ci_high, diff.diff.value, diff.diff.ci_low, diff.diff.ci_high)
    return {**dict(zip(names, values, strict=True)), "control_n": int(ctrl.size)}
