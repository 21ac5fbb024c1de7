"""The best layer, honestly: select on one half of the items, estimate on the other.

Picking the layer with the highest accuracy and reporting that accuracy is the winner's curse:
the max of ``k`` noisy estimates is biased upwards, and its interval excludes chance even on pure
noise. :func:`summarise` splits the items into two seeded halves (whole groups, so duplicates
never sit on both sides; :func:`innerprobe.core.stats.split_halves`), chooses each (probe, split,
items)'s layer on split A with :func:`innerprobe.core.stats.select_and_estimate`, and estimates
everything at that layer on split B only: the task accuracy (Wilson), the majority, shuffled and
random-projection controls, the control task and the selectivity (task − control on the same
split-B items, paired bootstrap). The naive max over all items is kept beside it, labelled.

:func:`best_layers` gives the same as a wide DataFrame (one row per probe, split and items); from
a bare table, which has no per-item data, it can only give the naive max, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from jaxtyping import Bool

from innerprobe.core import stats
from innerprobe.core.stats import Estimate
from innerprobe.probes.config import ProbeConfig
from innerprobe.probes.result import BestLayer, ProbeResult, ProbeSummary
from innerprobe.probes.table import correct_key, parse_key, split_name

__all__ = ["summarise", "best_layers"]


def _accuracy(correct: Bool[np.ndarray, " m"], cfg: ProbeConfig) -> Estimate | None:
    return stats.accuracy(correct, alpha=cfg.alpha) if correct.size else None


def summarise(
    correct: dict[str, Bool[np.ndarray, "layer n"]],
    majority: Bool[np.ndarray, " n"],
    layers: Sequence[int],
    cfg: ProbeConfig,
    *,
    target: str,
    n_classes: int,
    groups: Sequence[str] | None = None,
    control_rows: Bool[np.ndarray, " n"] | None = None,
) -> ProbeSummary:
    """One :class:`BestLayer` per task fit in ``correct`` (see the module docstring)."""
    n = int(majority.size)
    split_b = ~stats.split_halves(n, seed=cfg.seed, groups=groups)
    best = []
    for key in correct:
        probe, view, src, tgt, items = parse_key(key)
        if view != "task":
            continue
        task = correct[key]
        sel = stats.select_and_estimate(
            task.T.astype(float), seed=cfg.seed, groups=groups, n_boot=cfg.n_boot, alpha=cfg.alpha, what="layer",
        )
        j = sel.index
        ctrl: dict[str, Estimate | None] = {}
        for name in ("shuffled", "random_proj"):
            other = correct.get(correct_key(probe, name, src, tgt, items))
            ctrl[name] = None if other is None else _accuracy(other[j][split_b], cfg)
        other = correct.get(correct_key(probe, "control_task", src, tgt, items))
        ctrl["control_task"] = ctrl["selectivity"] = None
        if other is not None and control_rows is not None:
            b = split_b[control_rows]
            ctrl["control_task"] = _accuracy(other[j][b], cfg)
            if b.any():
                ctrl["selectivity"] = stats.paired_bootstrap_diff(
                    task[j][control_rows][b].astype(float), other[j][b].astype(float),
                    n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed,
                ).diff
        best.append(BestLayer(
            probe=probe, split=split_name(src, tgt), train_run=src, test_run=tgt, items=items,
            layer=int(layers[j]), accuracy=sel.estimate, naive_layer=int(layers[sel.naive_index]), naive=sel.naive,
            majority=stats.accuracy(majority[split_b], alpha=cfg.alpha), selection=sel.selection, **ctrl,
        ))
    best.sort(key=lambda b: (b.probe, b.items, b.split))
    return ProbeSummary(target=target, n_items=n, n_classes=n_classes, best=best)


def _value(est: Estimate | None, part: str = "value") -> float:
    return float("nan") if est is None else float(getattr(est, part))


def _wide(summary: ProbeSummary) -> pd.DataFrame:
    rows = []
    for b in summary.best:
        row = {
            "layer": b.layer, "probe": b.probe, "target": summary.target, "split": b.split,
            "train_run": b.train_run, "test_run": b.test_run, "items": b.items, "metric": "accuracy",
            "value": b.accuracy.value, "ci_low": b.accuracy.ci_low, "ci_high": b.accuracy.ci_high,
            "n": b.accuracy.n, "majority": b.majority.value,
        }
        if b.shuffled is not None:
            row.update(shuffled=b.shuffled.value, random_proj=_value(b.random_proj))
            for name in ("control_task", "selectivity"):
                est = getattr(b, name)
                row.update({name: _value(est), f"{name}_ci_low": _value(est, "ci_low"),
                            f"{name}_ci_high": _value(est, "ci_high")})
            row["control_n"] = 0 if b.selectivity is None else b.selectivity.n
        row.update(
            naive_layer=b.naive_layer, naive_value=b.naive.value, naive_ci_low=b.naive.ci_low,
            naive_ci_high=b.naive.ci_high, naive_n=b.naive.n, selection=b.selection,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def best_layers(result: ProbeResult | pd.DataFrame) -> pd.DataFrame:
    """The best layer per (probe, split, items), with an honest accuracy and its controls.

    Given a :class:`ProbeResult`: its summary as one row per (probe, split, items), in the
    table's column names. ``value`` / ``ci_*`` / ``n`` and every control column are estimated on
    split B at the layer selected on split A; ``naive_layer`` / ``naive_value`` / ``naive_ci_*`` /
    ``naive_n`` keep the usual max over layers on all items (biased upwards), and ``selection``
    says which was done. ``control_n`` is the number of split-B items the control task scored.

    Given only the tidy DataFrame (no per-item data), the naive max, labelled so in
    ``selection``.
    """
    if isinstance(result, pd.DataFrame):
        return _naive_best(result)
    return _wide(result.summary)


def _naive_best(df: pd.DataFrame) -> pd.DataFrame:
    acc = df[df["metric"] == "accuracy"]
    idx = acc.groupby(["probe", "split", "items"])["value"].idxmax()
    best = acc.loc[idx].sort_values(["probe", "items", "split"]).reset_index(drop=True)
    n_layers = acc.groupby(["probe", "split", "items"])["layer"].nunique()
    best["selection"] = [
        f"naive max over {n_layers[(r.probe, r.split, r.items)]} layers on all n={r.n} items "
        "(optimistic: selected and estimated on the same items)"
        for r in best.itertuples()
    ]
    return best
