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

Also here: the behaviour-shift test (Binder et al. §3.4): finetune M1 further on another model's
object-level answers only, then ask whether its self-predictions follow its new behaviour or its
old one on the items where the two differ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset

from innerprobe import stats
from innerprobe.behavior import BehaviorConfig, behave, elicit_object, predict, property_labels
from innerprobe.errors import DataError
from innerprobe.models import LoadedModel
from innerprobe.properties import Property
from innerprobe.tasks import item_meta

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
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

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


# --------------------------------------------------------------------------- behaviour shift


@dataclass
class ShiftResult:
    """Does the shifted model predict its new behaviour or its old one?

    Over items where the shifted model's object-level property differs from the original's:
    ``predicts_new`` and ``predicts_old`` are the shares of its self-predictions matching each,
    ``diff`` their paired difference (new − old).
    """

    n_items: int
    n_changed: int
    predicts_new: stats.Estimate | None
    predicts_old: stats.Estimate | None
    diff: stats.PairedDiff | None
    adapter_dir: Path | None = None
    table: pd.DataFrame | None = None
    n_train_rows: int = 0
    before_predicts_new: stats.Estimate | None = None
    tracking: stats.PairedDiff | None = None
    """The control: the *unshifted* model's predictions scored against the new behaviour, and the
    paired gain of the shifted model over it. A model that tracks its policy gains; one whose
    predictions already matched the teacher's answers (predictable from the input) does not."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_items": self.n_items,
            "n_train_rows": self.n_train_rows,
            "n_changed": self.n_changed,
            "predicts_new": self.predicts_new,
            "predicts_old": self.predicts_old,
            "new_minus_old": self.diff.diff if self.diff else None,
            "p_value": self.diff.p_value if self.diff else None,
            "mcnemar_p": self.diff.mcnemar_p if self.diff else None,
            "before_predicts_new": self.before_predicts_new,
            "after_minus_before": self.tracking.diff if self.tracking else None,
            "after_minus_before_p": self.tracking.p_value if self.tracking else None,
            "after_minus_before_mcnemar_p": self.tracking.mcnemar_p if self.tracking else None,
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
        }


def object_answer_data(teacher: LoadedModel, items: Dataset, prop: Property, config: BehaviorConfig) -> Dataset:
    """Chat rows O(P) → ``teacher``'s cleaned object answer (compliant items only)."""
    from innerprobe.training_data import assistant_text

    obj = elicit_object(teacher, items, prop, config)
    rows = []
    for row, p, cleaned, ok, prefill in zip(items, obj.prompts, obj.cleaned, obj.compliant, obj.prefills):
        if not ok or not cleaned:
            continue
        prefill = prefill or None  # the item's own (task-default or user) object prefill
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": config.spec.system or ""},
                    {"role": "user", "content": p.user},
                    {"role": "assistant", "content": assistant_text(cleaned, prefill)},
                ],
                "prompt": p.user,
                "completion": cleaned,
                "task": row["task"],
                "property": prop.name,
                "item_id": row["id"],
                "prefill": prefill or "",
            }
        )
    if not rows:
        raise DataError(f"teacher {teacher.name} gave no compliant object answers to train on")
    return Dataset.from_list(rows)


def behaviour_shift(
    model: LoadedModel,
    teacher: LoadedModel,
    train_items: Dataset,
    eval_items: Dataset,
    prop: Property,
    out_dir: str | Path,
    finetune_config: Any = None,
    config: BehaviorConfig = BehaviorConfig(),
) -> ShiftResult:
    """Finetune ``model`` on ``teacher``'s object answers, then test self-prediction of the shift.

    1. old behaviour: ``model``'s greedy object property on ``eval_items``;
    2. train ``model`` (LoRA) on O(P) → teacher answer for ``train_items`` (object level only:
       no hypothetical is ever trained);
    3. new behaviour and self-predictions of the shifted model on ``eval_items``;
    4. on items where new ≠ old (both compliant): share of predictions equal to new vs old,
       and the control: the unshifted model's predictions scored against the new behaviour.

    Training resumes from ``out_dir`` when it holds a run of the same config and data.
    """
    from innerprobe.finetune import FinetuneConfig, finetune
    from innerprobe.models import load_model

    fcfg = finetune_config or FinetuneConfig()
    old = elicit_object(model, eval_items, prop, config)
    data = object_answer_data(teacher, train_items, prop, config)
    run = finetune(model, data, out_dir, fcfg, resume=True)
    shifted = load_model(Path(out_dir), device=str(model.device))
    new = elicit_object(shifted, eval_items, prop, config)
    labels = property_labels(prop, eval_items, list(old.values) + list(new.values))
    pred = predict(shifted, eval_items, prop, labels, config)
    before = predict(model, eval_items, prop, labels, config)
    changed = np.array(
        [o is not None and n is not None and o != n for o, n in zip(old.values, new.values)]
    )
    table = pd.DataFrame(
        {
            "id": eval_items["id"],
            "old_value": old.values,
            "new_value": new.values,
            "prediction": pred.cleaned,
            "prediction_before": before.cleaned,
            "changed": changed,
        }
    )
    k = int(changed.sum())
    if k == 0:
        log.warning("behaviour shift: no item changed its object-level %s", prop.name)
        return ShiftResult(len(eval_items), 0, None, None, None, run.out_dir, table, len(data))
    hit_new = (table["prediction"] == table["new_value"]).to_numpy(float)[changed]
    hit_old = (table["prediction"] == table["old_value"]).to_numpy(float)[changed]
    hit_before = (table["prediction_before"] == table["new_value"]).to_numpy(float)[changed]
    return ShiftResult(
        n_items=len(eval_items),
        n_changed=k,
        predicts_new=stats.accuracy(hit_new.astype(bool), seed=config.seed),
        predicts_old=stats.accuracy(hit_old.astype(bool), seed=config.seed),
        diff=stats.paired_bootstrap_diff(hit_new, hit_old, seed=config.seed),
        adapter_dir=run.out_dir,
        table=table,
        n_train_rows=len(data),
        before_predicts_new=stats.accuracy(hit_before.astype(bool), seed=config.seed),
        tracking=stats.paired_bootstrap_diff(hit_new, hit_before, seed=config.seed),
    )


__all__ = [
    "TextBaseline",
    "Comparison",
    "compare_self_cross",
    "comparisons_frame",
    "pooled_self_cross",
    "pooled_from_tables",
    "ShiftResult",
    "behaviour_shift",
    "object_answer_data",
]
