"""What every self-training round is measured on: one tidy row per (round, task, property, measure).

After each round the new model M_k is measured on the same held-out test items (and the base
M_0 once, as round 0), every estimate with its interval and ``n``:

* **Self-knowledge** (:func:`~innerprobe.behavior.behave`, forced choice): ``self_accuracy``
  (Wilson) beside ``mode_baseline`` (always M_k's most common value, same items);
  ``cross_accuracy``: the round's cross-predictor predicting M_k's behaviour (by default a peer
  finetuned on M_k's own behaviour, :mod:`innerprobe.training.rounds_cross`; or the untrained
  peer, whose predictions are computed once and reused every round, :func:`cross_predictions`),
  and ``self_minus_cross`` (paired bootstrap, exact McNemar p in ``p_value``); ``text_only``: logistic regression on the item
  string, fitted on M_k's behaviour on the other folds of the eval items (5-fold), scored on the
  same items; ``calibration_mad`` (percentage points; bootstrap over items) beside
  ``calibration_floor``, the MAD a perfect predictor would score given the same number of
  samples (:func:`~innerprobe.core.stats.calibration_noise_floor`), when
  ``calibration_samples`` > 0.
* **Behaviour drift** from M_0 on the same items: ``changed_share`` (object property value differs
  from M_0's, over items compliant under both; Wilson), ``answer_entropy`` (bits, over the cleaned
  object answers) and ``distinct_answers`` (count), both with a jackknife interval (see
  :func:`jackknife`), ``object_compliance``.
  When no answer is scorable (a collapsed model: non-compliant, or every value outside the label
  set) only compliance, entropy and distinct answers
  (over all cleaned answers) are recorded (:func:`unscorable_measures`).
* **Error amplification**: ``gt_accuracy`` per ground-truth task
  (:mod:`innerprobe.training.ground_truth`; Wilson).

The table is long (``round, task, property, measure, value, ci_low, ci_high, n, method,
p_value``): a figure per measure over rounds is a filter and a line.
"""

from __future__ import annotations

import ast
import logging
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from datasets import Dataset

from innerprobe.behavior import (
    BehaviorConfig,
    Predictions,
    behave,
    elicit_object,
    predict,
    score,
)
from innerprobe.behavior.baselines import TEXT_FOLDS, text_only_predictions
from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.core.stats import Estimate
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import item_meta, items_digest
from innerprobe.training.ground_truth import ground_truth_accuracy

log = logging.getLogger(__name__)

MEASURE_COLUMNS = ("round", "task", "property", "measure", "value", "ci_low", "ci_high", "n", "method", "p_value")
ITEM_COLUMNS = (
    "round", "task", "property", "id", "object_value", "response_clean", "object_compliant", "scored",
    "prediction_clean", "correct", "cross_prediction_clean", "cross_correct", "text_prediction",
)



def _row(k: int, task: str, prop: str, measure: str, est: Estimate | None, p: float | None = None) -> dict:
    p = np.nan if p is None else float(p)
    if est is None:
        return {"round": k, "task": task, "property": prop, "measure": measure, "value": np.nan, "ci_low": np.nan,
                "ci_high": np.nan, "n": 0, "method": "", "p_value": p}
    return {"round": k, "task": task, "property": prop, "measure": measure, "value": est.value, "ci_low": est.ci_low,
            "ci_high": est.ci_high, "n": est.n, "method": est.method, "p_value": p}


def entropy_bits(values: Sequence[object]) -> float:
    """Shannon entropy (bits) of the empirical distribution of ``values``."""
    counts = np.array(list(Counter(values).values()), float)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def jackknife(values: list[str], stat: Callable[[list[str]], float]) -> Estimate | None:
    """``stat`` of the values with a jackknife normal 95% interval (leave one item out).

    Not the percentile bootstrap: resampling with replacement duplicates items, so the entropy
    and the distinct count of a resample are biased low and the interval can miss the estimate.
    """
    if len(values) < 2:
        return None
    value = stat(values)
    loo = np.array([stat(values[:i] + values[i + 1 :]) for i in range(len(values))])
    n = len(values)
    se = float(np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()))
    return Estimate(value, value - 1.96 * se, value + 1.96 * se, n, "jackknife normal interval")


def _calibration(table: pd.DataFrame, labels: list[str], seed: int, n_samples: int) -> tuple[Estimate, Estimate] | None:
    """Calibration MAD (pp) of the self-prediction distribution vs sampled object distribution, and its noise floor."""
    if "object_distribution_sampled" not in table or "distribution" not in table or n_samples < 1:
        return None
    obj = [ast.literal_eval(s) for s in table["object_distribution_sampled"]]
    hyp = [dict(zip(labels, d)) for d in table["distribution"]]
    keep = [i for i, (o, s) in enumerate(zip(obj, table["scored"])) if s and o]
    if len(keep) < 2:
        return None

    def mad(idx: Sequence[float]) -> float:
        return stats.calibration_from_distributions([obj[keep[int(i)]] for i in idx], [hyp[keep[int(i)]] for i in idx])

    floor = stats.calibration_noise_floor([obj[i] for i in keep], n_samples, seed=seed)
    return stats.bootstrap_ci(np.arange(len(keep), dtype=float), stat=mad, n_boot=300, seed=seed), floor


def cross_predictions(
    base: LoadedModel, items: Dataset, prop: str, labels: Sequence[str], config: BehaviorConfig, cache: dict | None
) -> Predictions:
    """``base``'s predictions of the hypotheticals, memoised in ``cache`` per model weights and items."""
    key = (base.fingerprint.weights_sha256, items_digest(items), prop, tuple(labels), config.mode)
    if cache is not None and key in cache:
        return cache[key]
    pred = predict(base, items, get_property(prop), labels, config)
    if cache is not None:
        cache[key] = pred
    return pred


def behaviour_table(
    model: LoadedModel, base: LoadedModel | None, items: Dataset, prop: str, config: BehaviorConfig, k: int,
    cross_cache: dict | None = None,
) -> tuple[pd.DataFrame, tuple[Estimate, Estimate] | None, stats.PairedDiff | None, stats.ModeBaseline]:
    """Per-item behaviour of ``model`` (cross-predicted by ``base`` unless None) on one task's items."""
    res = behave(model, items, get_property(prop), config)
    t = res.table
    s = res.summary
    cal = _calibration(t, list(s.labels), config.seed, config.calibration_samples)
    values = [v if sc else None for v, sc in zip(t["object_value"], t["scored"])]
    cross, cross_clean, cross_correct = None, None, None
    if base is not None:
        pred = cross_predictions(base, items, prop, list(s.labels), config, cross_cache)
        cross_correct = score(list(t["object_value"]), pred)
        cross_clean = pred.cleaned
        keep = t["scored"].to_numpy(bool)
        cross = stats.paired_bootstrap_diff(t["correct"].to_numpy(float)[keep], cross_correct[keep].astype(float), seed=config.seed)
    out = pd.DataFrame({
        "round": k, "task": t["task"], "property": prop, "id": t["id"], "object_value": t["object_value"],
        "response_clean": t["response_clean"], "object_compliant": t["object_compliant"], "scored": t["scored"],
        "prediction_clean": t["prediction_clean"], "correct": t["correct"],
        "cross_prediction_clean": cross_clean, "cross_correct": cross_correct,
        "text_prediction": text_only_predictions(items, values, config.seed),
    })
    return out, cal, cross, s.mode_baseline


def behaviour_measures(
    items_df: pd.DataFrame, base_df: pd.DataFrame, k: int, cal: tuple[Estimate, Estimate] | None,
    cross: stats.PairedDiff | None, mode: stats.ModeBaseline, seed: int = 0,
) -> list[dict]:
    """The tidy rows of one (round, task, property) from its per-item table and round 0's."""
    task, prop = items_df["task"].iloc[0], items_df["property"].iloc[0]
    scored = items_df["scored"].to_numpy(bool)
    rows = [
        _row(k, task, prop, "self_accuracy", stats.accuracy(items_df["correct"].to_numpy(bool)[scored])),
        _row(k, task, prop, "mode_baseline", mode.estimate),
        _row(k, task, prop, "object_compliance", stats.accuracy(items_df["object_compliant"].to_numpy(bool))),
    ]
    if cross is not None:
        cross_hit = items_df["cross_correct"].to_numpy(bool)[scored]
        rows.append(_row(k, task, prop, "cross_accuracy", stats.accuracy(cross_hit)))
        rows.append(_row(k, task, prop, "self_minus_cross", cross.diff, cross.mcnemar_p))
    text_hit = np.array([p == v for p, v in zip(items_df["text_prediction"], items_df["object_value"])])[scored]
    rows.append(_row(k, task, prop, "text_only", stats.accuracy(text_hit) if text_hit.size else None))
    if cal is not None:
        rows.append(_row(k, task, prop, "calibration_mad", cal[0]))
        rows.append(_row(k, task, prop, "calibration_floor", cal[1]))
    base = base_df.set_index("id")
    both = [(v, base.at[i, "object_value"]) for i, v, c in zip(items_df["id"], items_df["object_value"], items_df["object_compliant"])
            if c and i in base.index and bool(base.at[i, "object_compliant"])]
    rows.append(_row(k, task, prop, "changed_share", stats.accuracy(np.array([a != b for a, b in both])) if both else None))
    answers = [str(a) for a, c in zip(items_df["response_clean"], items_df["object_compliant"]) if c]
    rows.append(_row(k, task, prop, "answer_entropy", jackknife(answers, entropy_bits)))
    rows.append(_row(k, task, prop, "distinct_answers", jackknife(answers, lambda v: float(len(set(v))))))
    return rows


def unscorable_measures(model: LoadedModel, items: Dataset, prop: str, config: BehaviorConfig, k: int) -> list[dict]:
    """When no object answer is scorable (a collapsed model): its compliance and answer diversity.

    Unscorable means non-compliant, or (forced choice) every property value outside the label
    set: e.g. every answer's second character a space ("1 zebra", "h h h").

    The greedy answers are the ones ``behave`` just decoded (memoised), so this costs nothing.
    """
    task = items[0]["task"]
    obj = elicit_object(model, items, get_property(prop), config)
    answers = [str(a) for a in obj.cleaned]
    return [
        _row(k, task, prop, "object_compliance", stats.accuracy(obj.compliant)),
        _row(k, task, prop, "answer_entropy", jackknife(answers, entropy_bits)),
        _row(k, task, prop, "distinct_answers", jackknife(answers, lambda v: float(len(set(v))))),
    ]


def ground_truth_measures(gt: pd.DataFrame, k: int) -> list[dict]:
    """``gt_accuracy`` per ground-truth task (Wilson), from :func:`ground_truth_accuracy`'s table."""
    return [_row(k, task, "", "gt_accuracy", stats.accuracy(g["correct"].to_numpy(bool))) for task, g in gt.groupby("task", sort=True)]


def measure_model(
    model: LoadedModel,
    base: LoadedModel | None,
    eval_sets: Sequence[Dataset],
    properties: Sequence[str],
    config: BehaviorConfig,
    k: int,
    base_items: pd.DataFrame | None,
    *,
    ground_truth: tuple[str, ...] = (),
    n_ground_truth: int = 0,
    cross_cache: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Measure one model: ``(tidy measures, per-item behaviour, ground-truth answers)``.

    ``base`` is the cross-predictor (None when measuring M_0 itself); ``base_items`` is
    round 0's per-item table (None at round 0: drift is measured against the table made now);
    ``cross_cache`` memoises M_0's predictions across rounds (the same items every round).
    """
    item_tables, rows = [], []
    for items in eval_sets:
        kind = item_meta(items[0])["kind"]
        for prop in properties:
            if not get_property(prop).applies_to(kind):
                continue
            try:
                df, cal, cross, mode = behaviour_table(model, base, items, prop, config, k, cross_cache)
            except DataError as e:  # nothing scorable this round: said in the table, not fatal
                log.warning("round %d %s × %s: self-prediction not measured: %s", k, items[0]["task"], prop, e)
                rows += unscorable_measures(model, items, prop, config, k)
                continue
            ref = df if base_items is None else base_items[(base_items["task"] == df["task"].iloc[0]) & (base_items["property"] == prop)]
            rows += behaviour_measures(df, ref, k, cal, cross, mode, config.seed)
            item_tables.append(df)
    gt = ground_truth_accuracy(model, ground_truth, n_ground_truth, seed=config.seed, batch_size=config.batch_size) \
        if ground_truth and n_ground_truth else pd.DataFrame(columns=["task", "id", "answer", "response", "given", "correct"])
    rows += ground_truth_measures(gt, k) if len(gt) else []
    gt.insert(0, "round", k)
    items_df = pd.concat(item_tables, ignore_index=True) if item_tables else pd.DataFrame(columns=list(ITEM_COLUMNS))
    return pd.DataFrame(rows, columns=list(MEASURE_COLUMNS)), items_df, gt


__all__ = [
    "ITEM_COLUMNS", "MEASURE_COLUMNS", "TEXT_FOLDS", "behaviour_measures", "behaviour_table", "entropy_bits",
    "cross_predictions", "ground_truth_measures", "measure_model", "unscorable_measures",
]
