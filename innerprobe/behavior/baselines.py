"""Controls for self-prediction accuracy: the mode baseline, a text-only predictor, cross-prediction.

A self-prediction accuracy means little alone:

* **Mode baseline** — always answer the model's most common property value.
* **Text-only predictor** — logistic regression on TF-IDF features of the object prompt's item
  string (e.g. the list of animals), trained on the same behaviour data and scored on the same
  test items. It has no access to the model's internals; if it matches a finetuned model's
  "self-prediction", the finetuned model may simply have learnt input→behaviour.
* **Cross-prediction** — another model M2 trained on M1's behaviour (same data, same size)
  predicting M1. Self − cross on *held-out* tasks, with a paired bootstrap over items (and an
  exact McNemar p-value), is the paper's evidence for privileged access.

Every number of one comparison is computed on **the same items**: the behaviour run's
``scored`` rows (object-compliant *and*, in forced mode, with an object value inside the label
set). Self, cross, the mode baseline and the text-only predictor share those item ids and their
``n``; pooling over comparisons pools those rows only.

The behaviour-shift test (Binder et al. §3.4), which finetunes, lives in
:mod:`innerprobe.training.shift`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from innerprobe.behavior.config import BehaviorConfig
from innerprobe.behavior.elicitation import elicit_object
from innerprobe.behavior.run import behave
from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.core.result import Result, Summary
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.properties import Property
from innerprobe.protocol.tasks import item_meta


def item_strings(items: Dataset | Sequence[str]) -> list[str]:
    """The item string of each object prompt (the animals list, the number sequence...)."""
    if isinstance(items, Dataset):
        return [str(item_meta(r).get("string") or r["question"]) for r in items]
    return [str(s) for s in items]


#: Folds of :func:`text_only_predictions`.
TEXT_FOLDS = 5


@dataclass
class TextBaseline:
    """Logistic regression on TF-IDF word (and digit) features of the item string.

    ``fit(train_items, train_labels).score(test_items, test_labels)`` returns the accuracy with a
    bootstrap CI over test items. With one training class it predicts that class.
    """

    c: float = 1.0
    seed: int = 0
    _pipe: Any = field(default=None, init=False, repr=False)
    _constant: str | None = field(default=None, init=False, repr=False)

    def fit(self, items: Dataset | Sequence[str], labels: Sequence[str]) -> TextBaseline:

        x = item_strings(items)
        if len(x) != len(labels) or not x:
            raise DataError(f"text baseline: {len(x)} items but {len(labels)} labels")
        if len(set(labels)) == 1:
            self._constant = str(labels[0])
            return self
        self._pipe = make_pipeline(
            TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", lowercase=True),
            LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed),
        )
        self._pipe.fit(x, list(labels))
        return self

    def predict(self, items: Dataset | Sequence[str]) -> list[str]:
        x = item_strings(items)
        if self._constant is not None:
            return [self._constant] * len(x)
        if self._pipe is None:
            raise DataError("text baseline: call fit() first")
        return [str(v) for v in self._pipe.predict(x)]

    def score(
        self,
        items: Dataset | Sequence[str],
        labels: Sequence[str | None],
        scored: Sequence[bool] | np.ndarray | None = None,
    ) -> stats.Estimate:
        """Accuracy (Wilson CI) on the test items that the predictors being compared were scored on.

        ``scored`` marks those items (a behaviour table's ``scored`` column); without it, every
        item with a non-``None`` label. A scored item must have a label: the text predictor
        is measured on exactly the items self and cross were.
        """
        x = item_strings(items)
        if len(x) != len(labels):
            raise DataError(f"text baseline: {len(x)} test items but {len(labels)} labels")
        mask = np.array([v is not None for v in labels]) if scored is None else np.asarray(scored, dtype=bool)
        if mask.shape != (len(labels),):
            raise DataError(f"text baseline: scored mask has shape {mask.shape} for {len(labels)} items")
        keep = np.flatnonzero(mask).tolist()
        unlabelled = [i for i in keep if labels[i] is None]
        if unlabelled:
            raise DataError(f"text baseline: {len(unlabelled)} scored items have no label (first: {unlabelled[:5]})")
        if not keep:
            raise DataError("text baseline: no scored test items")
        pred = self.predict([x[i] for i in keep])
        return stats.accuracy(np.array([p == labels[i] for p, i in zip(pred, keep)]))


def text_only_predictions(
    items: Dataset | Sequence[str], values: Sequence[str | None], seed: int = 0, folds: int = TEXT_FOLDS
) -> list[str | None]:
    """Cross-validated text-only predictions of ``values`` (one per item; ``None``: unlabelled).

    The items are split into ``folds`` seeded folds; each fold is predicted by a
    :class:`TextBaseline` fitted on the labelled items of the other folds, so every item gets a
    prediction from a model that never saw its label. This is the text-only third party when the
    behaviour to be predicted exists only on the test items (an untrained model's own answers).
    """
    strings = item_strings(items)
    order = np.random.default_rng(seed).permutation(len(strings))
    fold = np.empty(len(strings), int)
    fold[order] = np.arange(len(strings)) % folds
    out: list[str | None] = [None] * len(strings)
    for f in range(folds):
        train = [i for i in range(len(strings)) if fold[i] != f and values[i] is not None]
        test = [i for i in range(len(strings)) if fold[i] == f]
        if not train or not test:
            continue
        tb = TextBaseline(seed=seed).fit([strings[i] for i in train], [values[i] for i in train])
        for i, p in zip(test, tb.predict([strings[i] for i in test])):
            out[i] = p
    return out


# --------------------------------------------------------------------------- self vs cross


@dataclass
class ComparisonSummary(Summary):
    """Self vs cross vs baselines on one (task, property), every estimate on the same items.

    Attributes:
        task, property: what was compared (several tasks are joined by commas).
        n_items: items asked (the behaviour table's rows); the estimates are on the scored ones.
        self_accuracy: M1 predicting itself (Wilson CI).
        cross_accuracy: M2 predicting M1 (Wilson CI).
        self_minus_cross: their paired difference (paired bootstrap CI, exact McNemar p).
        mode_baseline: always guessing M1's most common value.
        text_baseline: the text-only predictor (None when it was not trained).
        calibration_mad: M1's calibration MAD in percentage points (None without samples).
    """

    task: str
    property: str
    n_items: int
    self_accuracy: stats.Estimate
    cross_accuracy: stats.Estimate
    self_minus_cross: stats.PairedDiff
    mode_baseline: stats.ModeBaseline
    text_baseline: stats.Estimate | None = None
    calibration_mad: float | None = None

    @property
    def n(self) -> int:
        """Scored items, the ``n`` of every estimate."""
        return self.self_accuracy.n

    def row(self) -> dict[str, Any]:
        """One flat row for :func:`comparisons_frame` (intervals as ``(low, high)`` pairs)."""
        s, c, d, m, t = self.self_accuracy, self.cross_accuracy, self.self_minus_cross, self.mode_baseline.estimate, self.text_baseline
        return {
            "task": self.task,
            "property": self.property,
            "n": s.n,
            "n_items": self.n_items,
            "self": s.value,
            "self_ci": (s.ci_low, s.ci_high),
            "cross": c.value,
            "cross_ci": (c.ci_low, c.ci_high),
            "self_minus_cross": d.diff.value,
            "diff_ci": (d.diff.ci_low, d.diff.ci_high),
            "p_value": d.p_value,
            "mcnemar_p": d.mcnemar_p,
            "mode": m.value,
            "mode_ci": (m.ci_low, m.ci_high),
            "text": t.value if t else None,
            "text_ci": (t.ci_low, t.ci_high) if t else None,
            "n_text": t.n if t else None,
            "calibration_mad": self.calibration_mad,
        }


@dataclass
class Comparison(Result):
    """One self-vs-cross comparison: the behaviour table (with cross columns) and its summary.

    ``scored_ids`` are the table's scored items, the ones every estimate of ``summary`` is on;
    construction checks that every estimate has that ``n``.
    """

    table: pd.DataFrame
    summary: ComparisonSummary

    stage: ClassVar[str] = "compare"

    def __post_init__(self) -> None:
        _check_same_n(self.summary, len(self.scored_ids))

    @property
    def scored_ids(self) -> list[str]:
        return [str(i) for i in self.table["id"][self.table["scored"].to_numpy(bool)]]

    @property
    def n(self) -> int:
        return self.summary.n

    def row(self) -> dict[str, Any]:
        return self.summary.row()

    def figure(self) -> go.Figure:
        """Mode baseline, text-only, self and cross accuracy with 95% intervals, same items."""
        s = self.summary
        bars = {"mode baseline": s.mode_baseline.estimate, "text only": s.text_baseline,
                "self": s.self_accuracy, "cross": s.cross_accuracy}
        shown = {k: e for k, e in bars.items() if e is not None}
        ests = list(shown.values())
        fig = go.Figure(go.Bar(
            x=list(shown), y=[e.value for e in ests],
            error_y={"type": "data", "symmetric": False, "array": [e.ci_high - e.value for e in ests],
                     "arrayminus": [e.value - e.ci_low for e in ests]},
        ))
        d = s.self_minus_cross
        p = f"{d.mcnemar_p:.3g}" if d.mcnemar_p is not None else f"{d.p_value:.3g} (bootstrap)"
        fig.update_layout(
            title=f"{s.task} × {s.property} (n={s.n}); self − cross {d.diff.value:+.3f}, p={p}",
            yaxis_title="accuracy", yaxis_range=[0, 1.02], template="plotly_white",
        )
        return fig


def _check_same_n(s: ComparisonSummary, n_scored: int) -> None:
    """Every number of a comparison must sit on the same scored items (same n)."""
    ns = {"self": s.self_accuracy.n, "cross": s.cross_accuracy.n, "self - cross": s.self_minus_cross.n,
          "mode": s.mode_baseline.estimate.n, "scored ids": n_scored}
    if s.text_baseline is not None:
        ns["text"] = s.text_baseline.n
    if len(set(ns.values())) != 1:
        raise DataError(f"comparison {s.task} × {s.property}: estimates on different item counts {ns}")


def compare_self_cross(
    m1: LoadedModel,
    m2: LoadedModel,
    test_items: Dataset,
    prop: Property,
    config: BehaviorConfig = BehaviorConfig(),
    *,
    text_train_items: Dataset | None = None,
) -> Comparison:
    """M1 predicting itself vs M2 predicting M1 on ``test_items``, beside mode and text baselines.

    All four are scored on the behaviour run's ``scored`` items (``Comparison.scored_ids``).
    ``text_train_items``: items whose M1 object behaviour trains the text baseline (e.g. the
    train split of the same task); None skips it.
    """
    res = behave(m1, test_items, prop, config, predictor=m2)
    s = res.summary
    scored = res.table["scored"].to_numpy(bool)
    text = None
    if text_train_items is not None:
        tr = elicit_object(m1, text_train_items, prop, config)
        keep = [i for i, v in enumerate(tr.values) if v is not None]
        if keep:
            tb = TextBaseline(seed=config.seed).fit(
                [item_strings(text_train_items)[i] for i in keep], [tr.values[i] for i in keep]
            )
            text = tb.score(test_items, list(res.table["object_value"]), scored=scored)
    if s.cross is None or s.self_minus_cross is None:
        raise DataError("compare_self_cross: the behaviour run has no cross-predictor")
    summary = ComparisonSummary(
        task=",".join(sorted(set(test_items["task"]))),
        property=prop.name,
        n_items=len(res.table),
        self_accuracy=s.self.accuracy,
        cross_accuracy=s.cross.accuracy,
        self_minus_cross=s.self_minus_cross,
        mode_baseline=s.mode_baseline,
        text_baseline=text,
        calibration_mad=s.calibration_mad,
    )
    return Comparison(table=res.table, summary=summary)


def comparisons_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """Per-(task, property) table of self, cross, their paired difference and the baselines."""
    return pd.DataFrame([c.row() for c in comparisons])


def pooled_self_cross(comparisons: Sequence[Comparison], seed: int = 0) -> stats.PairedDiff:
    """Self − cross pooled over all scored items of all comparisons (paired bootstrap)."""
    return pooled_from_tables([c.table for c in comparisons], seed=seed)


def pooled_from_tables(tables: Sequence[pd.DataFrame], seed: int = 0) -> stats.PairedDiff:
    """Self − cross pooled over the ``scored`` rows of behaviour tables with a cross predictor
    (e.g. read back from the Parquet files of earlier comparisons).

    Only scored rows count: object-compliant rows whose value lies outside the forced-choice
    label set were never scored for self or cross, and must not enter the pool. The result's
    ``n`` is the number of pooled rows; it carries the exact McNemar p-value.
    """
    if not tables:
        raise DataError("no comparisons with tables to pool")
    need = ("scored", "correct", "cross_correct")
    for i, t in enumerate(tables):
        missing = [c for c in need if c not in t.columns]
        if missing:
            raise DataError(
                f"table {i} lacks column(s) {missing}; pooling needs {list(need)} "
                "(a behaviour table from behave(..., predictor=...))"
            )
    keep = [t["scored"].to_numpy(bool) for t in tables]
    if not any(k.any() for k in keep):
        raise DataError(f"no scored rows in {len(tables)} tables to pool")
    a = np.concatenate([t["correct"].to_numpy(float)[k] for t, k in zip(tables, keep)])
    b = np.concatenate([t["cross_correct"].to_numpy(float)[k] for t, k in zip(tables, keep)])
    return stats.paired_bootstrap_diff(a, b, seed=seed)


__all__ = [
    "TEXT_FOLDS",
    "TextBaseline",
    "text_only_predictions",
    "Comparison",
    "ComparisonSummary",
    "compare_self_cross",
    "comparisons_frame",
    "pooled_self_cross",
    "pooled_from_tables",
]
