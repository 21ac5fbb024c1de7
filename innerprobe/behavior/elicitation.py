"""Object-level behaviour: what model M actually answers, the ground truth of every prediction.

M answers the object-level prompt O(P) greedily (T=0, one sample, as the paper does for local
models). The property of its cleaned answer (the second character, the first word, ...) is the
value every self- and cross-prediction is scored against. Items whose answer cannot be read
(empty, a refusal, no value, a prompt that leaves no room in the context) are dropped before
scoring and counted by reason (:func:`dropped_reasons`).

Each task family answers with its own prefill and token budget (:func:`.config.object_settings`);
items are decoded in one batch per distinct budget (:func:`per_budget`), and a model never decodes
the same prompt twice (``model.greedy_cache``, keyed on the model's state). The calibration MAD
needs the object-level *distribution*: :func:`object_distributions` samples it at T=1, memoised
the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from datasets import Dataset
from jaxtyping import Bool

from innerprobe.behavior.config import BehaviorConfig, object_settings
from innerprobe.behavior.inference import generate
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, object_prompt
from innerprobe.protocol.properties import Property, extract_with_compliance, get_property
from innerprobe.protocol.tasks import as_items, item_meta

T = TypeVar("T")

SKIPPED_TOO_LONG = "too_long"
"""Drop reason of an item whose object prompt leaves no room for the answer in the context."""


@dataclass
class ObjectBehavior:
    """M's object-level answers and the property values derived from them (one entry per item).

    ``values[i]`` is None when item ``i`` is dropped; ``reasons[i]`` then says why.
    """

    prompts: list[Prompt]
    responses: list[str]
    cleaned: list[str]
    values: list[str | None]
    compliant: Bool[np.ndarray, " n"]
    skipped_too_long: Bool[np.ndarray, " n"]
    prefills: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)


def _context_limit(model: LoadedModel) -> int:
    n_ctx = getattr(model.bridge.cfg, "n_ctx", None)
    return int(n_ctx) if n_ctx else 2048


def per_budget(
    budgets: Sequence[int],
    run: Callable[[list[int], int], Sequence[T]],
    fill: T,
    keep: Sequence[bool] | None = None,
) -> list[T]:
    """Call ``run(index, budget)`` once per distinct token budget and put the answers in item order.

    ``index`` lists the items (kept by ``keep``, default all) whose budget is ``budget``; budgets
    go in ascending order, so calls are deterministic. Items left out get ``fill``. Object answers
    and calibration samples both decode this way: one batched call per budget, not per item.
    """
    out = [fill] * len(budgets)
    for budget in sorted(set(budgets)):
        index = [i for i, b in enumerate(budgets) if b == budget and (keep is None or keep[i])]
        for i, answer in zip(index, run(index, budget)):
            out[i] = answer
    return out


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
    items: Dataset | Sequence[Mapping[str, Any]] | str,
    prop: Property | str,
    config: BehaviorConfig = BehaviorConfig(),
    progress: Callable[[int], None] | None = None,
) -> ObjectBehavior:
    """Greedy object-level answers of ``model`` and their property values (ground truth).

    Each item's prompt ends with its task's object prefill (:func:`.config.object_settings`: the
    user's prefill, or the measured default of the item's task family; none for story
    continuation, where ``Answer:`` makes SmolLM2 end the turn at once). The property is read off
    prefill + answer, so a prefill such as ``Answer:`` is cleaned away. ``reasons`` says why each
    dropped item was dropped (``"empty"``, ``"refusal"``, ``"not_a_letter"``, ``"no_value"``,
    ``"too_long"``). ``items`` is anything :func:`~innerprobe.protocol.tasks.as_items` takes.
    """
    items = as_items(items)
    prop = get_property(prop) if isinstance(prop, str) else prop
    tok = model.tokenizer
    tasks = list(items["task"])
    settings = [object_settings(config, t) for t in tasks]
    budgets = [s.max_new_tokens for s in settings]
    prompts = [object_prompt(tok, q, config.spec, task=t) for q, t in zip(items["question"], tasks)]
    context = _context_limit(model)
    too_long = np.array([len(p) > context - b for p, b in zip(prompts, budgets)])
    responses = per_budget(
        budgets,
        lambda index, budget: greedy_responses(
            model, [prompts[i].input_ids for i in index], budget, config.batch_size, progress
        ),
        fill="",
        keep=~too_long,
    )
    prefills = [s.prefill for s in settings]
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


def dropped_reasons(obj: ObjectBehavior, outside_labels: Bool[np.ndarray, " n"] | None = None) -> dict[str, int]:
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

    Item ``i``'s distribution is the share of each property value among its compliant samples
    (``{}`` when none complies). The samples depend on the prompts and settings only, never on
    ``prop``; a second property of the same items reuses them from ``model.sample_cache``
    (bit-identical to sampling again).
    """
    rows = [p.input_ids for p in obj.prompts]
    settings = [object_settings(config, t) for t in items["task"]]
    empty: list[str] = []
    samples = per_budget(
        [s.max_new_tokens for s in settings],
        lambda index, budget: _sampled(model, [rows[i] for i in index], budget, config),
        fill=empty,
    )
    out = []
    for row, drawn, setting in zip(items, samples, settings):
        meta = item_meta(row)
        vals = [
            extract_with_compliance(prop, setting.prefill + r, meta["kind"], meta.get("target")).value
            for r in drawn
        ]
        vals = [v for v in vals if v is not None]
        out.append({v: vals.count(v) / len(vals) for v in set(vals)} if vals else {})
    return out


# --- transitional -----------------------------------------------------------------------------
# Before the split this module held the whole behaviour floor. Importers not yet moved to
# ``innerprobe.behavior`` (innerprobe/__init__.py, tests/test_capture.py, tests/test_finetune.py,
# benchmarks/bench_capture.py) still read these names here; delete this block once they have.
# It sits at the bottom because run.py imports this module's functions above.
from innerprobe.behavior.config import (  # noqa: E402
    CHARACTER_LABELS,
    MODES,
    TASK_DEFAULT_TOKENS,
    TaskDefaultTokens,
)
from innerprobe.behavior.labels import ItemLabels, property_labels  # noqa: E402
from innerprobe.behavior.prediction import Predictions, build_hypotheticals, predict, score  # noqa: E402
from innerprobe.behavior.result import BehaviorResult  # noqa: E402
from innerprobe.behavior.run import behave  # noqa: E402

__all__ = [
    "SKIPPED_TOO_LONG",
    "ObjectBehavior",
    "dropped_reasons",
    "elicit_object",
    "greedy_responses",
    "object_distributions",
    "per_budget",
    # transitional re-exports (see above)
    "BehaviorConfig",
    "BehaviorResult",
    "CHARACTER_LABELS",
    "ItemLabels",
    "MODES",
    "Predictions",
    "TASK_DEFAULT_TOKENS",
    "TaskDefaultTokens",
    "behave",
    "build_hypotheticals",
    "predict",
    "property_labels",
    "score",
]
