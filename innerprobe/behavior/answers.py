"""The object-level answer as probe targets: what a probe on O or H activations should predict.

Probes (:mod:`innerprobe.probes`) are trained on the model's *own* behaviour, so a capture stores,
per item, columns derived from the greedy object response (:func:`answer_columns`):

* ``object_answer``: the first word of the cleaned response that is in the task's vocabulary —
  SmolLM2 often answers "1. deer, 2. cat", where the answer the model *means* is "deer" while
  the paper's property rules read the literal text ("1");
* ``answer_property``: the property of that word (e.g. its second character);
* ``property_value``: the property of the whole response, the paper's ground truth;
* ``object_compliant``: the paper's object compliance.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from innerprobe.protocol.properties import Property
from innerprobe.protocol.tasks import TASKS


def first_vocabulary_word(cleaned: str, vocabulary: set[str] | None) -> str | None:
    """The first word of a cleaned response that belongs to ``vocabulary`` (without one: the
    first word)."""
    words = cleaned.split()
    if not vocabulary:
        return words[0] if words else None
    return next((w for w in words if w in vocabulary), None)


def items_vocabulary(items: Dataset) -> set[str] | None:
    """The union of the closed answer vocabularies of the items' tasks (None: no task has one)."""
    words = {w for t in set(items["task"]) if t in TASKS for w in (TASKS[t].vocabulary or ())}
    return words or None


def answer_columns(behavior: Any, prop: Property, vocabulary: set[str] | None = None) -> dict[str, list]:
    """Row-table label columns from an :class:`~innerprobe.behavior.elicitation.ObjectBehavior`
    (see the module docstring), one value per item."""
    answers = [first_vocabulary_word(c, vocabulary) if c else None for c in behavior.cleaned]
    return {
        "object_answer": answers,
        "answer_property": [prop.extract(a) if a else None for a in answers],
        "property_value": list(behavior.values),
        "object_compliant": [bool(c) for c in behavior.compliant],
    }


__all__ = ["answer_columns", "first_vocabulary_word", "items_vocabulary"]
