"""Object-level behaviour, self-prediction and cross-prediction (the paper's core measurement).

1. **Object level.** The object model M answers O(P) greedily (T=0, one sample, as the paper does
   for local models). The property of its cleaned answer is the ground truth; items whose object
   answer is non-compliant are dropped, and counted.
2. **Self-prediction.** M answers H(P, property) in a fresh context, either
   * ``free``: generated text, cleaned and exact-matched (the paper's rule; a non-compliant
     hypothetical answer counts as wrong), or
   * ``forced``: argmax over the property's label set after an assistant prefill, with the full
     distribution kept (the harness small models need; also exact calibration).
3. **Cross-prediction.** Another predictor B (another model, or M under another prompt variant,
   e.g. third person) answers the same hypotheticals; it is scored against M's behaviour. The
   paired bootstrap over items gives self − cross with its CI.

Every accuracy sits beside its mode baseline (always guessing M's most common property value)
and a bootstrap CI over items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from datasets import Dataset

from innerprobe import stats
from innerprobe.errors import DataError, UnknownNameError
from innerprobe.inference import generate, label_distribution
from innerprobe.models import LoadedModel
from innerprobe.prompts import Prompt, PromptSpec, hypothetical_prompt, label_tokens, object_prompt
from innerprobe.properties import Property, clean_response, extract_with_compliance
from innerprobe.tasks import TASKS, item_meta

Mode = Literal["free", "forced"]
MODES = ("free", "forced")
CHARACTER_LABELS = tuple("abcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True)
class BehaviorConfig:
    """Knobs of a behaviour run (recorded in its summary)."""

    mode: str = "forced"
    spec: PromptSpec = PromptSpec()
    object_max_new_tokens: int = 24
    hypothetical_max_new_tokens: int = 8
    batch_size: int = 16
    calibration_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UnknownNameError("mode", self.mode, MODES)


@dataclass
class ObjectBehavior:
    """M's object-level answers and the property values derived from them."""

    prompts: list[Prompt]
    responses: list[str]
    cleaned: list[str]
    values: list[str | None]
    compliant: np.ndarray
    skipped_too_long: np.ndarray


@dataclass
class Predictions:
    """A predictor's answers to the hypotheticals."""

    prompts: list[Prompt]
    answers: list[str]
    cleaned: list[str]
    compliant: np.ndarray
    labels: tuple[str, ...] | None = None
    probs: np.ndarray | None = None  # [n, n_labels] in forced mode
    label_mass: np.ndarray | None = None


def _context_limit(model: LoadedModel) -> int:
    n_ctx = getattr(model.bridge.cfg, "n_ctx", None)
    return int(n_ctx) if n_ctx else 2048


def greedy_responses(
    model: LoadedModel,
    rows: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy continuations of ``rows``, decoding only prompts not seen before by this model."""
    cache = model.greedy_cache
    keys = [(max_new_tokens, tuple(r)) for r in rows]
    todo = list(dict.fromkeys(k for k in keys if k not in cache))
    if progress is not None and len(todo) < len(keys):
        progress(len(keys) - len(todo))
    if todo:
        gen = generate(
            model.hf_model,
            model.tokenizer,
            [list(k[1]) for k in todo],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=progress,
        )
        cache.update({k: g[0] for k, g in zip(todo, gen)})
    return [cache[k] for k in keys]


def elicit_object(
    model: LoadedModel,
    items: Dataset,
    prop: Property,
    config: BehaviorConfig = BehaviorConfig(),
    progress: Callable[[int], None] | None = None,
) -> ObjectBehavior:
    """Greedy object-level answers of ``model`` and their property values (ground truth)."""
    tok = model.tokenizer
    prompts = [object_prompt(tok, q, config.spec) for q in items["question"]]
    limit = _context_limit(model) - config.object_max_new_tokens
    too_long = np.array([len(p) > limit for p in prompts])
    rows = [p.input_ids for p, skip in zip(prompts, too_long) if not skip]
    it = iter(greedy_responses(model, rows, config.object_max_new_tokens, config.batch_size, progress))
    responses = ["" if skip else next(it) for skip in too_long]
    metas = [item_meta(r) for r in items]
    ext = [
        extract_with_compliance(prop, config.spec.object_prefill_text() + r, m["kind"], m.get("target"))
        for r, m in zip(responses, metas)
    ]
    compliant = np.array([e.compliant for e in ext]) & ~too_long
    return ObjectBehavior(
        prompts=prompts,
        responses=responses,
        cleaned=[e.cleaned for e in ext],
        values=[e.value if c else None for e, c in zip(ext, compliant)],
        compliant=compliant,
        skipped_too_long=too_long,
    )


def property_labels(prop: Property, items: Dataset, observed: list[str | None]) -> list[str]:
    """The forced-choice label set of ``prop`` on these items.

    Characters: a–z, 0–9. Words: the task's vocabulary when the task is a known generator, else
    the distinct object-level values observed. Binary properties: their two labels.
    """
    if prop.compliance == "single_character":
        return list(CHARACTER_LABELS)
    if prop.compliance in ("single_word", "default"):
        tasks = set(items["task"])
        vocab: list[str] = []
        for t in sorted(tasks):
            if t in TASKS and TASKS[t].vocabulary:
                vocab.extend(TASKS[t].vocabulary)
        if not vocab:
            vocab = sorted({v for v in observed if v})
        if not vocab:
            raise DataError(f"no label vocabulary for property {prop.name!r}: no compliant items")
        return prop.labels(vocab)
    return prop.labels()


def build_hypotheticals(
    model: LoadedModel, items: Dataset, prop: Property, spec: PromptSpec
) -> list[Prompt]:
    out = []
    for row in items:
        meta = item_meta(row)
        out.append(
            hypothetical_prompt(
                model.tokenizer,
                row["question"],
                prop,
                spec,
                task=meta.get("original_dataset") or row["task"],
                release_text=meta.get("hypothetical"),
            )
        )
    return out


def predict(
    model: LoadedModel,
    items: Dataset,
    prop: Property,
    labels: list[str],
    config: BehaviorConfig = BehaviorConfig(),
    progress: Callable[[int], None] | None = None,
) -> Predictions:
    """``model``'s answers to H(P, prop) for every item, free text or forced choice."""
    tok = model.tokenizer
    prompts = build_hypotheticals(model, items, prop, config.spec)
    rows = [p.input_ids for p in prompts]
    if config.mode == "free":
        gen = generate(
            model.hf_model,
            tok,
            rows,
            max_new_tokens=config.hypothetical_max_new_tokens,
            batch_size=config.batch_size,
            progress=progress,
        )
        answers = [g[0] for g in gen]
        cleaned = [clean_response(config.spec.hypothetical_prefill_text() + a) for a in answers]
        compliant = np.array([prop.is_compliant(c) for c in cleaned])
        return Predictions(prompts, answers, cleaned, compliant)
    lt = label_tokens(tok, labels, prompts[0].text, config.spec.hypothetical_prefill)
    probs, mass = label_distribution(
        model.hf_model, rows, lt, tok.pad_token_id, batch_size=config.batch_size
    )
    if progress is not None:
        progress(len(rows))
    answers = [labels[i] for i in probs.argmax(-1)]
    return Predictions(
        prompts,
        answers,
        answers,
        np.ones(len(answers), dtype=bool),
        labels=tuple(labels),
        probs=probs,
        label_mass=mass,
    )


def score(values: list[str | None], predictions: Predictions) -> np.ndarray:
    """Exact match of cleaned predictions with the object-level property (None never matches).

    A non-compliant hypothetical answer counts as incorrect (the paper's rule).
    """
    return np.array(
        [
            v is not None and c and p == v
            for v, p, c in zip(values, predictions.cleaned, predictions.compliant)
        ]
    )


def object_distributions(
    model: LoadedModel,
    items: Dataset,
    obj: ObjectBehavior,
    prop: Property,
    config: BehaviorConfig,
) -> list[dict[str, float]]:
    """Object-level property distributions from ``calibration_samples`` samples at T=1.

    The samples depend on the prompts and settings only, never on ``prop``; a second property of
    the same items reuses them from ``model.sample_cache`` (bit-identical to sampling again).
    """
    rows = [p.input_ids for p in obj.prompts]
    batch_size = max(1, config.batch_size // 2)
    key = (config.object_max_new_tokens, batch_size, config.calibration_samples, config.seed,
           tuple(tuple(r) for r in rows))
    samples = model.sample_cache.get(key)
    if samples is None:
        samples = generate(
            model.hf_model,
            model.tokenizer,
            rows,
            max_new_tokens=config.object_max_new_tokens,
            batch_size=batch_size,
            do_sample=True,
            num_samples=config.calibration_samples,
            seed=config.seed,
        )
        model.sample_cache[key] = samples
    out = []
    for row, s in zip(items, samples):
        meta = item_meta(row)
        vals = [
            extract_with_compliance(
                prop, config.spec.object_prefill_text() + r, meta["kind"], meta.get("target")
            ).value
            for r in s
        ]
        vals = [v for v in vals if v is not None]
        out.append({v: vals.count(v) / len(vals) for v in set(vals)} if vals else {})
    return out


@dataclass
class BehaviorResult:
    """One behaviour run: the per-item table and the summary statistics."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def self_accuracy(self) -> stats.Estimate:
        return self.summary["self"]["accuracy"]


def _prediction_columns(prefix: str, pred: Predictions, correct: np.ndarray) -> dict[str, Any]:
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
    pred: Predictions, correct: np.ndarray, keep: np.ndarray, seed: int
) -> dict[str, Any]:
    return {
        "accuracy": stats.accuracy(correct[keep], seed=seed),
        "compliance": stats.accuracy(pred.compliant[keep], seed=seed),
        "mean_label_mass": float(pred.label_mass[keep].mean())
        if pred.label_mass is not None and keep.any()
        else None,
    }


def behave(
    model: LoadedModel,
    items: Dataset,
    prop: Property,
    config: BehaviorConfig = BehaviorConfig(),
    *,
    predictor: LoadedModel | None = None,
    predictor_spec: PromptSpec | None = None,
    progress: Callable[[str, int, int], Callable[[int], None]] | None = None,
) -> BehaviorResult:
    """Run object behaviour, self-prediction and (optionally) cross-prediction on ``items``.

    Args:
        model: the object model M (also the self-predictor).
        items: a Dataset of items (see :mod:`innerprobe.tasks`).
        prop: the behavioural property.
        config: mode, prompt spec, batch size, calibration samples, seed.
        predictor: a cross-predictor B (default: none). With ``predictor_spec`` alone, B is M
            under another prompt spec (e.g. the third-person variant).
        progress: factory ``(stage, total, ...) -> advance`` for progress bars.
    """
    if len(items) == 0:
        raise DataError("no items")
    for row in items.select(range(min(len(items), 1))):
        prop.check_applies(row["task"], item_meta(row)["kind"])
    bar = (lambda stage, n: progress(stage, n)) if progress else (lambda stage, n: None)
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
    summary: dict[str, Any] = {
        "n_items": len(items),
        "n_scored": int(keep.sum()),
        "n_object_noncompliant": int((~obj.compliant & ~obj.skipped_too_long).sum()),
        "n_skipped_too_long": int(obj.skipped_too_long.sum()),
        "n_value_outside_labels": int(outside.sum()),
        "object_compliance": stats.accuracy(obj.compliant, seed=config.seed),
        "mode_baseline": stats.mode_baseline(
            [v for v, k in zip(obj.values, keep) if k], seed=config.seed
        ),
        "self": _summarise_predictor(self_pred, self_correct, keep, config.seed),
        "labels": list(labels),
    }
    if predictor is not None or predictor_spec is not None:
        cross_model = predictor or model
        cross_cfg = BehaviorConfig(**{**config.__dict__, "spec": predictor_spec or config.spec})
        cross_pred = predict(cross_model, items, prop, labels, cross_cfg, bar("cross-prediction", len(items)))
        cross_correct = score(obj.values, cross_pred)
        for k, v in _prediction_columns("cross_", cross_pred, cross_correct).items():
            table[k] = v
        summary["cross"] = _summarise_predictor(cross_pred, cross_correct, keep, config.seed)
        summary["cross"]["predictor"] = cross_model.fingerprint.short
        summary["cross"]["spec"] = cross_cfg.spec.to_dict()
        summary["self_minus_cross"] = stats.paired_bootstrap_diff(
            self_correct[keep].astype(float), cross_correct[keep].astype(float), seed=config.seed
        )
    if config.calibration_samples > 0 and config.mode == "forced":
        obj_d = object_distributions(model, items, obj, prop, config)
        hyp_d = [dict(zip(labels, map(float, r))) for r in self_pred.probs]  # type: ignore[union-attr]
        pairs = [(o, h) for o, h, k in zip(obj_d, hyp_d, keep) if k and o]
        summary["calibration_mad"] = stats.calibration_from_distributions(
            [o for o, _ in pairs], [h for _, h in pairs], top_k=1
        )
        table["object_distribution_sampled"] = [str(d) for d in obj_d]
    return BehaviorResult(table=table, summary=summary)
