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

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from datasets import Dataset

from innerprobe.behavior.inference import generate, label_distribution
from innerprobe.core import stats
from innerprobe.core.errors import DataError, UnknownNameError, check_at_least
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import (
    Prompt,
    PromptSpec,
    hypothetical_prompt,
    label_tokens,
    object_prompt,
)
from innerprobe.protocol.properties import Property, clean_response, extract_with_compliance
from innerprobe.protocol.tasks import TASKS, item_meta
from innerprobe.protocol.tasks.registry import GENERIC_OBJECT_MAX_NEW_TOKENS, object_defaults

Mode = Literal["free", "forced"]
MODES = ("free", "forced")
CHARACTER_LABELS = tuple("abcdefghijklmnopqrstuvwxyz0123456789")


class TaskDefaultTokens(int):
    """Marks an object-level token budget nobody chose: each task family's measured one is used.

    :meth:`BehaviorConfig.object_tokens_for` swaps it for the budget of the item's family
    (``innerprobe.protocol.tasks.registry.FAMILY_DEFAULTS``; 2 tokens for choice tasks, so the answer
    is the option letter). It is an ``int`` holding the generic 24, so code that reads
    ``config.object_max_new_tokens`` without a task keeps working; a plain 24 given by the user
    is used as given.
    """

    def __repr__(self) -> str:
        return f"TaskDefaultTokens({int(self)})"


TASK_DEFAULT_TOKENS = TaskDefaultTokens(GENERIC_OBJECT_MAX_NEW_TOKENS)


@dataclass(frozen=True)
class BehaviorConfig:
    """Knobs of a behaviour run (recorded in its summary).

    The object-level prefill (``spec.object_prefill``) and token budget
    (``object_max_new_tokens``) default to each task family's measured defaults
    (``experiments/results/compliance_by_task.md``); values set here are used for every task.
    """

    mode: str = "forced"
    spec: PromptSpec = PromptSpec()
    object_max_new_tokens: int = TASK_DEFAULT_TOKENS
    hypothetical_max_new_tokens: int = 8
    batch_size: int = 16
    calibration_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UnknownNameError("mode", self.mode, MODES)
        check_at_least("BehaviorConfig.batch_size", self.batch_size, 1)
        check_at_least("BehaviorConfig.object_max_new_tokens", self.object_max_new_tokens, 1)
        check_at_least("BehaviorConfig.hypothetical_max_new_tokens", self.hypothetical_max_new_tokens, 1)
        check_at_least("BehaviorConfig.calibration_samples", self.calibration_samples, 0)

    def object_tokens_for(self, task: str | None = None) -> int:
        """The object-level token budget for items of ``task``: the one set, else the family's."""
        if isinstance(self.object_max_new_tokens, TaskDefaultTokens):
            return object_defaults(task).object_max_new_tokens
        return int(self.object_max_new_tokens)


@dataclass
class ObjectBehavior:
    """M's object-level answers and the property values derived from them."""

    prompts: list[Prompt]
    responses: list[str]
    cleaned: list[str]
    values: list[str | None]
    compliant: np.ndarray
    skipped_too_long: np.ndarray
    prefills: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)


SKIPPED_TOO_LONG = "too_long"
"""Drop reason of an item whose object prompt leaves no room for the answer in the context."""


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
    """Greedy object-level answers of ``model`` and their property values (ground truth).

    Each item's prompt ends with ``config.spec.object_prefill_for(task)``: the user's prefill, or
    the measured default of the item's task family (none for story continuation, where
    ``Answer:`` makes SmolLM2 end the turn at once). The property is read off prefill + answer,
    so a prefill such as ``Answer:`` is cleaned away. ``reasons`` says why each dropped item was
    dropped (``"empty"``, ``"refusal"``, ``"not_a_letter"``, ``"no_value"``, ``"too_long"``).
    """
    tok = model.tokenizer
    tasks = list(items["task"])
    prefills = [config.spec.object_prefill_text(t) for t in tasks]
    budgets = [config.object_tokens_for(t) for t in tasks]
    prompts = [object_prompt(tok, q, config.spec, task=t) for q, t in zip(items["question"], tasks)]
    context = _context_limit(model)
    too_long = np.array([len(p) > context - b for p, b in zip(prompts, budgets)])
    responses = [""] * len(prompts)
    for budget in sorted(set(budgets)):
        index = [i for i, b in enumerate(budgets) if b == budget and not too_long[i]]
        answers = greedy_responses(model, [prompts[i].input_ids for i in index], budget, config.batch_size, progress)
        for i, answer in zip(index, answers):
            responses[i] = answer
    metas = [item_meta(r) for r in items]
    ext = [
        extract_with_compliance(prop, pre + r, m["kind"], m.get("target"))
        for pre, r, m in zip(prefills, responses, metas)
    ]
    compliant = np.array([e.compliant for e in ext]) & ~too_long
    return ObjectBehavior(
        prompts=prompts,
        responses=responses,
        cleaned=[e.cleaned for e in ext],
        values=[e.value if c else None for e, c in zip(ext, compliant)],
        compliant=compliant,
        skipped_too_long=too_long,
        prefills=prefills,
        reasons=[SKIPPED_TOO_LONG if skip else e.reason for e, skip in zip(ext, too_long)],
    )


def dropped_reasons(obj: ObjectBehavior, outside_labels: np.ndarray | None = None) -> dict[str, int]:
    """How many items were dropped before scoring, by reason (reasons no item had are omitted).

    Object-level reasons come from :func:`innerprobe.protocol.properties.object_noncompliance`
    (``empty`` apart from ``refusal``: an empty answer usually means the prompt ended the turn,
    not that the model declined) plus ``no_value`` and ``too_long``; ``outside_labels`` adds
    forced-choice items whose object value is not a label.
    """
    counts = Counter(r for r in obj.reasons if r is not None)
    if outside_labels is not None and outside_labels.any():
        counts["value_outside_labels"] = int(outside_labels.sum())
    return dict(sorted(counts.items()))


class ItemLabels(Sequence[str]):
    """Forced-choice labels that differ by item: a shared set plus each item's own words.

    As a sequence it is the *columns*: the shared labels, then every item's extra words (sorted),
    the order of a forced-choice distribution. ``for_item(i)`` is item ``i``'s label set (the
    shared labels, then its own words that are not shared); an item's probability of any other
    column is 0. :func:`predict` scores each group of items that share a label set in one call.
    """

    def __init__(self, shared: Sequence[str], own: Sequence[Sequence[str]]) -> None:
        self.shared = tuple(shared)
        known = set(self.shared)
        self.own = tuple(tuple(w for w in dict.fromkeys(words) if w not in known) for words in own)
        extra = sorted({w for words in self.own for w in words})
        self.columns = (*self.shared, *extra)
        self._members = frozenset(self.columns)

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self.columns[index]

    def __len__(self) -> int:
        return len(self.columns)

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __contains__(self, label: object) -> bool:
        return label in self._members

    def for_item(self, index: int) -> tuple[str, ...]:
        return (*self.shared, *self.own[index])

    def groups(self) -> dict[tuple[str, ...], list[int]]:
        """Item indices by label set, so each distinct set is tokenised and scored once."""
        out: dict[tuple[str, ...], list[int]] = {}
        for index in range(len(self.own)):
            out.setdefault(self.for_item(index), []).append(index)
        return out


def _item_words(row: dict[str, Any]) -> list[str]:
    """The words of an item's own text (its ``meta["string"]``), cleaned as answers are."""
    return clean_response(item_meta(row)["string"]).split()


def _answer_vocabulary(items: Dataset) -> list[str]:
    """The closed vocabularies answers of these tasks are drawn from (the 30 animals, ...)."""
    vocab: list[str] = []
    for task in sorted(set(items["task"])):
        if task in TASKS and TASKS[task].answer_vocabulary:
            vocab.extend(TASKS[task].answer_vocabulary)
    return vocab


def property_labels(prop: Property, items: Dataset, observed: Sequence[str | None]) -> Sequence[str]:
    """The forced-choice labels of ``prop`` on these items: what can be answered.

    * Characters: a–z, 0–9. Binary properties: their two labels.
    * Words (first/second/third word) of text tasks: per item (an :class:`ItemLabels`), the
      words any answer could be: the task's closed answer vocabulary where it has one (the 30
      animals; not english_words, whose answers are open), every observed object-level value
      (``observed``, any order or length: a bag), and the item's *own* words, which small models
      often copy. A fixed common-word list would miss every word the model answers on an
      open-vocabulary task, leaving no scorable item.
    * ``identity`` (choice tasks): the observed values plus the items' option letters.
    """
    if prop.fixed_labels is not None:
        return prop.labels()
    seen = sorted({v for v in observed if v})
    if prop.compliance == "single_word":
        shared = _answer_vocabulary(items) + seen
        own = [prop.labels(words) if words else [] for words in map(_item_words, items)]
        if not shared and not any(own):
            raise DataError(f"no word labels for property {prop.name!r}: no compliant items and no item words")
        return ItemLabels(prop.labels(shared) if shared else [], own)
    options = sorted({o for row in items for o in item_meta(row).get("options") or []})
    if not seen and not options:
        raise DataError(f"no label vocabulary for property {prop.name!r}: no compliant items")
    return prop.labels(seen + options)


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
    labels: Sequence[str],
    config: BehaviorConfig = BehaviorConfig(),
    progress: Callable[[int], None] | None = None,
) -> Predictions:
    """``model``'s answers to H(P, prop) for every item, free text or forced choice.

    Forced choice takes the argmax over ``labels``: one list for every item, or an
    :class:`ItemLabels` (from :func:`property_labels`) whose items each choose among their own
    set; ``probs`` then has one column per label of the union, 0 outside an item's set.
    """
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
    probs, mass = _forced_distribution(model, prompts, labels, config)
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


def _forced_distribution(
    model: LoadedModel, prompts: list[Prompt], labels: Sequence[str], config: BehaviorConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Forced-choice probabilities over the columns ``labels`` and each prompt's label mass.

    One label set for all prompts: one :func:`label_distribution` call. Per-item label sets
    (:class:`ItemLabels`): one call per group of prompts sharing a set, scattered into the
    columns; an item's columns outside its own set get probability 0.
    """
    tok = model.tokenizer
    groups = labels.groups() if isinstance(labels, ItemLabels) else {tuple(labels): list(range(len(prompts)))}
    column = {label: j for j, label in enumerate(labels)}
    probs = np.zeros((len(prompts), len(labels)))
    mass = np.zeros(len(prompts))
    for group_labels, index in groups.items():
        lt = label_tokens(tok, list(group_labels), prompts[index[0]].text, config.spec.hypothetical_prefill)
        p, m = label_distribution(
            model.hf_model, [prompts[i].input_ids for i in index], lt, tok.pad_token_id,
            batch_size=config.batch_size,
        )
        probs[np.ix_(index, [column[label] for label in group_labels])] = p
        mass[index] = m
    return probs, mass


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


def _sampled(
    model: LoadedModel, rows: list[list[int]], budget: int, config: BehaviorConfig
) -> list[list[str]]:
    """``config.calibration_samples`` seeded T=1 samples of each row, memoised per model state."""
    batch_size = max(1, config.batch_size // 2)
    key = (budget, batch_size, config.calibration_samples, config.seed, tuple(tuple(r) for r in rows))
    samples = model.sample_cache.get(key)
    if samples is None:
        samples = generate(
            model.hf_model,
            model.tokenizer,
            rows,
            max_new_tokens=budget,
            batch_size=batch_size,
            do_sample=True,
            num_samples=config.calibration_samples,
            seed=config.seed,
        )
        model.sample_cache[key] = samples
    return samples


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
    budgets = [config.object_tokens_for(t) for t in items["task"]]
    samples: list[list[str]] = [[] for _ in rows]
    for budget in sorted(set(budgets)):
        index = [i for i, b in enumerate(budgets) if b == budget]
        for i, s in zip(index, _sampled(model, [rows[i] for i in index], budget, config)):
            samples[i] = s
    prefills = obj.prefills or [config.spec.object_prefill_text(t) for t in items["task"]]
    out = []
    for row, s, prefill in zip(items, samples, prefills):
        meta = item_meta(row)
        vals = [
            extract_with_compliance(prop, prefill + r, meta["kind"], meta.get("target")).value
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

    @property
    def scored_ids(self) -> list[str]:
        """Ids of the items every accuracy, baseline and paired difference of this run is on."""
        return [str(i) for i in self.table["id"][self.table["scored"].to_numpy(bool)]]


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
    """Accuracy and hypothetical compliance over the scored items ``keep`` (Wilson intervals)."""
    return {
        "n": int(keep.sum()),
        "accuracy": stats.accuracy(correct[keep]),
        "compliance": stats.accuracy(pred.compliant[keep]),
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
        items: a Dataset of items (see :mod:`innerprobe.protocol.tasks`).
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
        "dropped_reasons": dropped_reasons(obj, outside),
        "object_compliance": stats.accuracy(obj.compliant),
        "mode_baseline": stats.mode_baseline([v for v, k in zip(obj.values, keep) if k]),
        "intervals": "proportions: Wilson score; self − cross: paired bootstrap + exact McNemar",
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
