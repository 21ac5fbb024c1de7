"""The behaviour-shift test (Binder et al. §3.4): does self-prediction follow a changed policy?

Finetune M1 further on another model's object-level answers only (no hypothetical is trained),
then ask whether its self-predictions follow its new behaviour or its old one on the items
where the two differ. The control is the unshifted model's predictions scored against the new
behaviour: a model that tracks its own policy gains over it; predictions that already matched
the teacher's answers (predictable from the input) do not.

:func:`behaviour_shift` takes items as a ``datasets.Dataset``, a list of dicts or a task name /
file (:func:`innerprobe.protocol.tasks.as_items`) and returns a :class:`ShiftResult`: ``.table``
has one row per evaluation item, ``.summary`` the shares and paired differences as
``Estimate`` objects, ``.figure()`` the three shares with their intervals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from datasets import Dataset

from innerprobe.behavior import BehaviorConfig, elicit_object, predict, property_labels
from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.core.result import Result, Summary
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.properties import Property, get_property
from innerprobe.protocol.tasks import as_items, items_digest
from innerprobe.training.data import assistant_text
from innerprobe.training.finetune import FinetuneConfig, finetune

log = logging.getLogger(__name__)


Items = Dataset | Sequence[Mapping[str, Any]] | str
"""Items as :func:`~innerprobe.protocol.tasks.as_items` reads them."""


@dataclass
class ShiftSummary(Summary):
    """The behaviour-shift numbers, over the items whose object-level property changed.

    Attributes:
        n_items, n_changed, n_train_rows: evaluation items, those that changed, teacher rows.
        predicts_new, predicts_old: shares of the shifted model's self-predictions equal to its
            new / its old behaviour (Wilson intervals).
        diff: new − old, paired bootstrap interval; ``diff_p`` its bootstrap p and
            ``diff_mcnemar_p`` the exact McNemar p.
        before_predicts_new: the control, the unshifted model's predictions scored against the
            new behaviour.
        tracking: shifted − unshifted at predicting the new behaviour (paired), with
            ``tracking_p`` and ``tracking_mcnemar_p``.
    """

    n_items: int
    n_changed: int
    n_train_rows: int
    predicts_new: stats.Estimate | None
    predicts_old: stats.Estimate | None
    diff: stats.Estimate | None
    diff_p: float | None
    diff_mcnemar_p: float | None
    before_predicts_new: stats.Estimate | None
    tracking: stats.Estimate | None
    tracking_p: float | None
    tracking_mcnemar_p: float | None
    adapter_dir: str | None = None


@dataclass(eq=False)
class ShiftResult(Result):
    """Does the shifted model predict its new behaviour or its old one?

    Over items where the shifted model's object-level property differs from the original's:
    ``predicts_new`` and ``predicts_old`` are the shares of its self-predictions matching each,
    ``diff`` their paired difference (new − old). ``table`` has one row per evaluation item
    (``id, old_value, new_value, prediction, prediction_before, changed``).
    """

    stage: ClassVar[str] = "behaviour_shift"

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
    items_digest: str = ""

    def __post_init__(self) -> None:
        self.adapter_dir = Path(self.adapter_dir) if self.adapter_dir is not None else None

    @property
    def summary(self) -> ShiftSummary:
        d, t = self.diff, self.tracking
        return ShiftSummary(
            n_items=self.n_items,
            n_changed=self.n_changed,
            n_train_rows=self.n_train_rows,
            predicts_new=self.predicts_new,
            predicts_old=self.predicts_old,
            diff=d.diff if d else None,
            diff_p=d.p_value if d else None,
            diff_mcnemar_p=d.mcnemar_p if d else None,
            before_predicts_new=self.before_predicts_new,
            tracking=t.diff if t else None,
            tracking_p=t.p_value if t else None,
            tracking_mcnemar_p=t.mcnemar_p if t else None,
            adapter_dir=str(self.adapter_dir) if self.adapter_dir else None,
        )

    def figure(self) -> go.Figure:
        """Bars: predicts new, predicts old, and the unshifted control, with their intervals."""
        bars = [
            ("predicts new behaviour", self.predicts_new),
            ("predicts old behaviour", self.predicts_old),
            ("unshifted model predicts new (control)", self.before_predicts_new),
        ]
        bars = [(name, e) for name, e in bars if e is not None]
        fig = go.Figure()
        fig.add_bar(
            x=[name for name, _ in bars],
            y=[e.value for _, e in bars],
            error_y=dict(
                type="data", symmetric=False,
                array=[e.ci_high - e.value for _, e in bars], arrayminus=[e.value - e.ci_low for _, e in bars],
            ),
        )
        fig.update_layout(
            title=f"Behaviour shift: self-predictions on the {self.n_changed} of {self.n_items} items that changed",
            yaxis_title="share of self-predictions", yaxis_range=[0, 1],
        )
        return fig


def object_answer_data(teacher: LoadedModel, items: Dataset, prop: Property, config: BehaviorConfig) -> Dataset:
    """Chat rows O(P) → ``teacher``'s cleaned object answer (compliant items only)."""
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
    train_items: Items,
    eval_items: Items,
    prop: Property | str,
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

    Items may be Datasets, lists of dicts or task names / files (:func:`as_items`). Training
    resumes from ``out_dir`` when it holds a run of the same config and data.
    """
    fcfg = finetune_config or FinetuneConfig()
    train_items, eval_items = as_items(train_items), as_items(eval_items)
    prop = get_property(prop) if isinstance(prop, str) else prop
    digest = items_digest(eval_items)
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
        return ShiftResult(len(eval_items), 0, None, None, None, run.out_dir, table, len(data), items_digest=digest)
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
        items_digest=digest,
    )


__all__ = ["ShiftResult", "ShiftSummary", "behaviour_shift", "object_answer_data"]
