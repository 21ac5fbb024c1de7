"""The data policies of self-training: how M_k's own answers become M_{k+1}'s training rows.

Round k hands a policy the current model M_k and the round's fresh items; the policy answers
them with M_k and returns chat rows (columns of :data:`~innerprobe.training.data.COLUMNS` plus
``level``, ``policy`` and ``round``):

* ``self_prediction`` — Binder et al.'s M1 step, repeated: the hypothetical H(P, property) as the
  user turn, the property of M_k's own greedy object answer as the target
  (:func:`~innerprobe.training.data.build_training_data`; ``level = "hypothetical"``).
* ``self_filtered`` — introspection as a data filter: M_k answers the object prompt *and*
  predicts, in a fresh context, the property of that answer (forced choice, as evaluation
  scores it). An item is kept only where the self-report agrees with the behaviour on every
  property that applies; each kept item gives its object row (O(P) → M_k's answer,
  :func:`~innerprobe.training.shift.object_answer_data`) and its hypothetical rows.
* ``object_only`` — plain self-distillation, the comparison: O(P) → M_k's object answer, no
  hypothetical is ever trained (``level = "object"``).

One greedy decode per item serves every policy and property (``model.greedy_cache``), so a
policy never answers an item twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from datasets import Dataset

from innerprobe.behavior import BehaviorConfig, elicit_object, predict, property_labels
from innerprobe.core.errors import DataError, check_choice
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import Property, get_property
from innerprobe.protocol.tasks import item_meta, items_digest
from innerprobe.training.data import (
    TrainingDataConfig,
    build_training_data,
    combo_rows,
    property_values,
)
from innerprobe.training.rounds_config import POLICIES
from innerprobe.training.shift import object_answer_data

log = logging.getLogger(__name__)

LEVELS = ("hypothetical", "object")


def behaviour_config(batch_size: int, seed: int, spec: PromptSpec = PromptSpec()) -> BehaviorConfig:
    """The elicitation settings every policy and measurement shares (so greedy answers are cached)."""
    return BehaviorConfig(mode="forced", spec=spec, batch_size=batch_size, seed=seed)


def _tag(rows: list[dict], level: str, policy: str, k: int) -> list[dict]:
    return [{**r, "level": level, "policy": policy, "round": k} for r in rows]


def _applicable(items: Dataset, properties: Sequence[str]) -> list[Property]:
    kind = item_meta(items[0])["kind"]
    return [p for p in map(get_property, properties) if p.applies_to(kind)]


def self_prediction_data(
    model: LoadedModel, items: Sequence[Dataset], properties: Sequence[str], k: int, *, batch_size: int = 16, seed: int = 0
) -> Dataset:
    """Hypothetical → own-behaviour rows (Binder's M1 data) from ``model`` on one Dataset per task."""
    cfg = TrainingDataConfig(properties=tuple(properties), seed=seed, batch_size=batch_size)
    data = build_training_data(model, list(items), config=cfg)
    return Dataset.from_list(_tag(data.to_list(), "hypothetical", "self_prediction", k))


def object_only_data(
    model: LoadedModel, items: Sequence[Dataset], properties: Sequence[str], k: int, *, batch_size: int = 16, seed: int = 0
) -> Dataset:
    """O(P) → own cleaned object answer rows (self-distillation), one per compliant item."""
    cfg = behaviour_config(batch_size, seed)
    rows: list[dict] = []
    for task_items in items:
        props = _applicable(task_items, properties)
        if not props:
            continue
        data = object_answer_data(model, task_items, props[0], cfg)
        digest = items_digest(task_items)
        rows += _tag([{**r, "items_digest": digest} for r in data.to_list()], "object", "object_only", k)
    if not rows:
        raise DataError(f"object_only: no compliant object answers in round {k}")
    return Dataset.from_list(rows)


def _agreeing(model: LoadedModel, items: Dataset, props: list[Property], cfg: BehaviorConfig) -> dict[str, list[str | None]]:
    """Per property, the object value where the model's own prediction of it agrees, else None."""
    out = {}
    for prop in props:
        obj = elicit_object(model, items, prop, cfg)
        values = property_values(obj.responses, items, prop, cfg.spec, obj.skipped_too_long)
        labels = property_labels(prop, items, values)
        pred = predict(model, items, prop, labels, cfg)
        out[prop.name] = [v if v is not None and p == v else None for v, p in zip(values, pred.cleaned)]
    return out


def self_filtered_data(
    model: LoadedModel, items: Sequence[Dataset], properties: Sequence[str], k: int, *, batch_size: int = 16, seed: int = 0
) -> Dataset:
    """Own object answers kept where own self-report agrees, as object + hypothetical rows."""
    cfg = behaviour_config(batch_size, seed)
    rows: list[dict] = []
    for task_items in items:
        props = _applicable(task_items, properties)
        if not props:
            continue
        agree = _agreeing(model, task_items, props, cfg)
        keep = [i for i in range(len(task_items)) if all(agree[p.name][i] is not None for p in props)]
        log.info("self_filtered round %d %s: %d/%d items whose self-report agrees", k, task_items[0]["task"], len(keep), len(task_items))
        if not keep:
            continue
        kept = task_items.select(keep)
        digest = items_digest(task_items)
        obj = object_answer_data(model, kept, props[0], cfg).to_list()
        rows += _tag([{**r, "items_digest": digest} for r in obj], "object", "self_filtered", k)
        for prop in props:
            hyp = combo_rows(model, kept, prop, [agree[prop.name][i] for i in keep], cfg.spec)
            rows += _tag([{**r, "items_digest": digest} for r in hyp], "hypothetical", "self_filtered", k)
    if not rows:
        raise DataError(f"self_filtered: the model's self-report agreed with its behaviour on no item in round {k}")
    return Dataset.from_list(rows)


POLICY_FUNCTIONS: dict[str, Callable[..., Dataset]] = {
    "self_prediction": self_prediction_data,
    "self_filtered": self_filtered_data,
    "object_only": object_only_data,
}


def policy_data(
    policy: str, model: LoadedModel, items: Sequence[Dataset], properties: Sequence[str], k: int, *, batch_size: int = 16, seed: int = 0
) -> Dataset:
    """Round ``k``'s training rows from ``model`` by the named ``policy`` (one of :data:`POLICIES`)."""
    check_choice("policy", policy, POLICIES)
    return POLICY_FUNCTIONS[policy](model, items, properties, k, batch_size=batch_size, seed=seed)


__all__ = [
    "LEVELS", "POLICY_FUNCTIONS", "behaviour_config", "object_only_data", "policy_data",
    "self_filtered_data", "self_prediction_data",
]
