"""What the steering and ablation experiments share: the prompts, the choices, the store check.

Both experiments read two things per item, before and after an intervention:

* the **object answer**: a forced choice over the task's answer vocabulary (the 30 animals)
  read at the end of O(P) (after its prefill ``Answer:``);
* the **self-prediction**: a forced choice over the property's labels (``a``–``z`` for a
  character) read at the end of H(P, property) (after its prefill).

Both are first-token readings (:mod:`.readout`). The answer classes the directions are made of
come from an activation store's O runs; the store must come from the same model weights and
have the model's width, which :func:`check_store` verifies before any forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from innerprobe.behavior.prediction import build_hypotheticals
from innerprobe.core.errors import DataError, StoreMismatchError
from innerprobe.interventions.readout import Choice, choice_tokens
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, PromptSpec, object_prompt
from innerprobe.protocol.properties import Property
from innerprobe.protocol.tasks import TASKS, as_items

__all__ = ["Trials", "check_store", "prepare_trials", "resolve_layer", "argmax_labels"]


@dataclass
class Trials:
    """The items of an experiment with their O and H prompts and the two forced choices."""

    items: Dataset
    o_prompts: list[Prompt]
    h_prompts: list[Prompt]
    objects: Choice
    properties: Choice
    prop: Property

    @property
    def n(self) -> int:
        return len(self.items)

    def property_of(self, answer: str | None) -> str | None:
        return self.prop.extract(answer) if answer else None


def check_store(store: Any, model: LoadedModel) -> None:
    """``StoreMismatchError`` unless ``store`` was captured from ``model``'s weights at its width."""
    if int(store.d_model) != model.d_model:
        raise StoreMismatchError(f"store {store.path} has d_model {store.d_model}, the model {model.d_model}")
    have = (store.manifest.get("model") or {}).get("weights_sha256")
    want = model.fingerprint.to_dict().get("weights_sha256")
    if have and want and have != want:
        raise StoreMismatchError(
            f"store {store.path} was captured from other weights ({str(have)[:12]}…), not {model.name} ({str(want)[:12]}…)"
        )


def resolve_layer(layer: int | None, n_layers: int, what: str = "layer") -> int:
    """``layer`` (negative counts from the end; None: the middle layer) in ``0..n_layers-1``."""
    if layer is None:
        return n_layers // 2
    if not -n_layers <= layer < n_layers:
        raise DataError(f"{what} {layer} is outside the model's layers 0..{n_layers - 1}")
    return layer % n_layers


def _vocabulary(items: Dataset, classes: Sequence[str]) -> list[str]:
    words: list[str] = []
    for task in sorted(set(items["task"])):
        if task in TASKS and TASKS[task].answer_vocabulary:
            words.extend(TASKS[task].answer_vocabulary)
    return list(dict.fromkeys([*words, *classes]))


def prepare_trials(
    model: LoadedModel,
    items: Any,
    prop: Property,
    spec: PromptSpec,
    classes: Sequence[str],
    *,
    n: int | None = None,
    split: str = "test",
    seed: int = 0,
) -> Trials:
    """Prompts and choices for ``items`` (a Dataset, a list of dicts or a task name).

    The object choice is the tasks' answer vocabulary plus the store's classes; the property
    choice is the property's fixed labels (characters, booleans). Properties whose labels depend
    on the items (words) are refused: their forced choice differs by item.
    """
    items = as_items(items, n=n, split=split, seed=seed)
    if len(items) == 0:
        raise DataError("no items")
    if prop.fixed_labels is None:
        raise DataError(f"property {prop.name!r} has per-item labels; steering and ablation need a fixed label "
                        "set (a character, starts_with_vowel, ...)")
    tok = model.tokenizer
    o_prompts = [object_prompt(tok, q, spec, task=t) for q, t in zip(items["question"], items["task"])]
    h_prompts = build_hypotheticals(model, items, prop, spec)
    o_prefill = spec.object_prefill_for(items[0]["task"])
    objects = choice_tokens(tok, _vocabulary(items, classes), o_prompts[0].text, o_prefill)
    properties = choice_tokens(tok, prop.labels(), h_prompts[0].text, spec.hypothetical_prefill)
    return Trials(items, o_prompts, h_prompts, objects, properties, prop)


def argmax_labels(logprobs: np.ndarray, choice: Choice) -> list[str]:
    """The chosen label of each row."""
    return [choice.labels[i] for i in np.asarray(logprobs).argmax(-1)]
