"""``behave``: the paper's whole behavioural measurement in one call.

1. **Object level** (:mod:`.elicitation`). M answers O(P) greedily; the property of its answer
   is the ground truth. Unreadable answers are dropped, and counted by reason.
2. **Self-prediction** (:mod:`.prediction`). M answers H(P, property) in a fresh context, as
   free text or as a forced choice over the property's labels (:mod:`.labels`).
3. **Cross-prediction.** Another predictor B (another model, or M under another prompt
   variant, e.g. third person) answers the same hypotheticals and is scored against M's
   behaviour; the paired bootstrap over items gives self − cross with its CI and an exact
   McNemar p-value.

Every accuracy sits beside its mode baseline (always guessing M's most common value) on exactly
the same scored items, with a Wilson interval. The result is a
:class:`~innerprobe.behavior.result.BehaviorResult`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset
from jaxtyping import Bool

from innerprobe.behavior.config import BehaviorConfig, config_record, spec_record
from innerprobe.behavior.elicitation import dropped_reasons, elicit_object, object_distributions
from innerprobe.behavior.labels import property_labels
from innerprobe.behavior.prediction import Predictions, predict, score
from innerprobe.behavior.result import BehaviorResult, BehaviorSummary, PredictorSummary
from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.core.io import provenance
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import Property, get_property
from innerprobe.protocol.tasks import as_items, item_meta, items_digest

Items = Dataset | Sequence[Mapping[str, Any]] | str
"""What ``behave`` takes items as: a Dataset, a list of dicts, or a task name / path / Hub id."""


def _prediction_columns(prefix: str, pred: Predictions, correct: Bool[np.ndarray, " n"]) -> dict[str, Any]:
    cols: dict[str, Any] = {
        f"{prefix}hypothetical_prompt": [p.text for p in pred.prompts],
        f"{prefix}prediction": pred.answers,
        f"{prefix}prediction_clean": pred.cleaned,
        f"{prefix}prediction_compliant": pred.compliant,
        f"{prefix}correct": correct,
    }
    if pred.probs is not None:
        cols[f"{prefix}distribution"] = [list(map(float, r)) for r in pred.probs]
        cols[f"{prefix}label_mass"] = pred.label_mass
    return cols


def _summarise_predictor(
    pred: Predictions,
    correct: Bool[np.ndarray, " n"],
    keep: Bool[np.ndarray, " n"],
    model: LoadedModel,
    spec: PromptSpec,
) -> PredictorSummary:
    """Accuracy and hypothetical compliance over the scored items ``keep`` (Wilson intervals)."""
    return PredictorSummary(
        n=int(keep.sum()),
        accuracy=stats.accuracy(correct[keep]),
        compliance=stats.accuracy(pred.compliant[keep]),
        mean_label_mass=float(pred.label_mass[keep].mean()) if pred.label_mass is not None and keep.any() else None,
        predictor=model.fingerprint.short,
        spec=spec_record(spec),
    )


def behave(
    model: LoadedModel,
    items: Items,
    prop: Property | str,
    config: BehaviorConfig = BehaviorConfig(),
    *,
    predictor: LoadedModel | None = None,
    predictor_spec: PromptSpec | None = None,
    n: int | None = None,
    split: str = "test",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> BehaviorResult:
    """Run object behaviour, self-prediction and (optionally) cross-prediction on ``items``.

    Args:
        model: the object model M (also the self-predictor).
        items: a ``datasets.Dataset`` of items, a list of dicts (item records, or rows with a
            ``question``), or a task name, file or Hub id; read by
            :func:`~innerprobe.protocol.tasks.as_items` (``n`` and ``split`` go there; a
            generated task needs ``n``).
        prop: the behavioural property, or its name.
        config: mode, prompt spec, batch size, calibration samples, seed.
        predictor: a cross-predictor B (default: none). With ``predictor_spec`` alone, B is M
            under another prompt spec (e.g. the third-person variant).
        progress: factory ``(stage, total) -> advance`` for progress bars.

    The result's provenance names the model (and predictor) fingerprint, seed, prompt-template
    hash and the items' digest, so two results can be checked to be on the same items.
    """
    items = as_items(items, n=n, split=split, seed=config.seed)
    prop = get_property(prop) if isinstance(prop, str) else prop
    for row in items.select(range(min(len(items), 1))):
        prop.check_applies(row["task"], item_meta(row)["kind"])
    bar = (lambda stage, total: progress(stage, total)) if progress else (lambda stage, total: None)
    obj = elicit_object(model, items, prop, config, bar("object answers", len(items)))
    keep = obj.compliant
    if not keep.any():
        raise DataError(
            f"no compliant object-level answers on {len(items)} items for {prop.name!r}: "
            "nothing to predict"
        )
    labels = property_labels(prop, items, obj.values) if config.mode == "forced" else []
    # Forced choice can only output a label: an object value outside the label set (a space as
    # "second character" of "1 deer") is unreachable for every predictor and for a fair
    # baseline, so such items are dropped from scoring and counted.
    outside = np.array([v is not None and v not in labels for v in obj.values]) if labels else np.zeros(len(items), bool)
    keep = keep & ~outside
    if not keep.any():
        raise DataError(
            f"no scorable items for {prop.name!r}: {int(outside.sum())} object values lie outside "
            f"the label set {labels[:8]}..."
        )
    self_pred = predict(model, items, prop, labels, config, bar("self-prediction", len(items)))
    self_correct = score(obj.values, self_pred)
    metas = [item_meta(r) for r in items]
    table = pd.DataFrame(
        {
            "id": items["id"],
            "task": items["task"],
            "property": prop.name,
            "target": [m.get("target") for m in metas],
            "object_prompt": [p.text for p in obj.prompts],
            "response": obj.responses,
            "response_clean": obj.cleaned,
            "object_value": obj.values,
            "object_compliant": obj.compliant,
            "skipped_too_long": obj.skipped_too_long,
            "scored": keep,
            **_prediction_columns("", self_pred, self_correct),
        }
    )
    digest = items_digest(items)
    summary = BehaviorSummary(
        property=prop.name,
        mode=config.mode,
        tasks=sorted(set(items["task"])),
        n_items=len(items),
        n_scored=int(keep.sum()),
        n_object_noncompliant=int((~obj.compliant & ~obj.skipped_too_long).sum()),
        n_skipped_too_long=int(obj.skipped_too_long.sum()),
        n_value_outside_labels=int(outside.sum()),
        dropped_reasons=dropped_reasons(obj, outside),
        object_compliance=stats.accuracy(obj.compliant),
        mode_baseline=stats.mode_baseline([v for v, k in zip(obj.values, keep) if k]),
        self=_summarise_predictor(self_pred, self_correct, keep, model, config.spec),
        labels=list(labels),
        items_digest=digest,
        config=config_record(config),
    )
    if predictor is not None or predictor_spec is not None:
        cross_model = predictor or model
        cross_cfg = dataclasses.replace(config, spec=predictor_spec or config.spec)
        cross_pred = predict(cross_model, items, prop, labels, cross_cfg, bar("cross-prediction", len(items)))
        cross_correct = score(obj.values, cross_pred)
        for k, v in _prediction_columns("cross_", cross_pred, cross_correct).items():
            table[k] = v
        summary.cross = _summarise_predictor(cross_pred, cross_correct, keep, cross_model, cross_cfg.spec)
        summary.self_minus_cross = stats.paired_bootstrap_diff(
            self_correct[keep].astype(float), cross_correct[keep].astype(float), seed=config.seed
        )
    if config.calibration_samples > 0 and config.mode == "forced":
        obj_d = object_distributions(model, items, obj, prop, config)
        hyp_d = [dict(zip(labels, map(float, r))) for r in self_pred.probs]  # type: ignore[union-attr]
        pairs = [(o, h) for o, h, k in zip(obj_d, hyp_d, keep) if k and o]
        summary.calibration_mad = stats.calibration_from_distributions(
            [o for o, _ in pairs], [h for _, h in pairs], top_k=1
        )
        table["object_distribution_sampled"] = [str(d) for d in obj_d]
    prov = provenance(
        model.fingerprint, seed=config.seed, template_hash=config.spec.template_hash(prop),
        predictor=predictor.fingerprint.to_dict() if predictor is not None else None,
        items_digest=digest,
    )
    return BehaviorResult(table, summary, prov)


__all__ = ["Items", "behave"]
