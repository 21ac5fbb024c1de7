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

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from innerprobe.behavior.elicitation import (
    BehaviorConfig,
    behave,
    elicit_object,
)
from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.properties import Property
from innerprobe.protocol.tasks import item_meta

log = logging.getLogger(__name__)


def item_strings(items: Dataset | Sequence[str]) -> list[str]:
    """The item string of each object prompt (the animals list, the number sequence...)."""
    if isinstance(items, Dataset):
        return [str(item_meta(r).get("string") or r["question"]) for r in items]
    return [str(s) for s in items]


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


# --------------------------------------------------------------------------- self vs cross


@dataclass
class Comparison:
    """Self vs cross vs baselines on one (task, property), all on the same ``scored_ids``."""

    task: str
    property: str
    self_acc: stats.Estimate
    cross_acc: stats.Estimate
    diff: stats.PairedDiff
    mode: stats.ModeBaseline
    text: stats.Estimate | None
    calibration_mad: float | None = None
    table: pd.DataFrame | None = None
    scored_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_same_n(self)

    @property
    def n(self) -> int:
        return self.self_acc.n

    def row(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "property": self.property,
            "n": self.self_acc.n,
            "n_items": None if self.table is None else len(self.table),
            "self": self.self_acc.value,
            "self_ci": (self.self_acc.ci_low, self.self_acc.ci_high),
            "cross": self.cross_acc.value,
            "cross_ci": (self.cross_acc.ci_low, self.cross_acc.ci_high),
            "self_minus_cross": self.diff.diff.value,
            "diff_ci": (self.diff.diff.ci_low, self.diff.diff.ci_high),
            "p_value": self.diff.p_value,
            "mcnemar_p": self.diff.mcnemar_p,
            "mode": self.mode.estimate.value,
            "mode_ci": (self.mode.estimate.ci_low, self.mode.estimate.ci_high),
            "text": self.text.value if self.text else None,
            "text_ci": (self.text.ci_low, self.text.ci_high) if self.text else None,
            "n_text": self.text.n if self.text else None,
            "calibration_mad": self.calibration_mad,
        }


def _check_same_n(c: Comparison) -> None:
    """Every number of a comparison must sit on the same scored items (same n)."""
    ns = {"self": c.self_acc.n, "cross": c.cross_acc.n, "self - cross": c.diff.n, "mode": c.mode.estimate.n}
    if c.text is not None:
        ns["text"] = c.text.n
    if c.scored_ids:
        ns["scored ids"] = len(c.scored_ids)
    if len(set(ns.values())) != 1:
        raise DataError(f"comparison {c.task} × {c.property}: estimates on different item counts {ns}")


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

    All four are scored on the behaviour run's ``scored`` items (their ids are kept in
    ``scored_ids``). ``text_train_items``: items whose M1 object behaviour trains the text
    baseline (e.g. the train split of the same task); None skips it.
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
    return Comparison(
        task=",".join(sorted(set(test_items["task"]))),
        property=prop.name,
        self_acc=s["self"]["accuracy"],
        cross_acc=s["cross"]["accuracy"],
        diff=s["self_minus_cross"],
        mode=s["mode_baseline"],
        text=text,
        calibration_mad=s.get("calibration_mad"),
        table=res.table,
        scored_ids=[str(i) for i in res.table["id"][scored]],
    )


def comparisons_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """Per-(task, property) table of self, cross, their paired difference and the baselines."""
    return pd.DataFrame([c.row() for c in comparisons])


def pooled_self_cross(comparisons: Sequence[Comparison], seed: int = 0) -> stats.PairedDiff:
    """Self − cross pooled over all scored items of all comparisons (paired bootstrap)."""
    return pooled_from_tables([c.table for c in comparisons if c.table is not None], seed=seed)


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
    "TextBaseline",
    "Comparison",
    "compare_self_cross",
    "comparisons_frame",
    "pooled_self_cross",
    "pooled_from_tables",
]
