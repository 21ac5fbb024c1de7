"""The forced-choice label set of a property: every answer a predictor may choose among.

In forced mode a self-prediction is the argmax over labels, not free text, so the label set
decides what can be predicted at all. It has to hold every value the object model can produce,
or items become unscorable (they are dropped and counted as ``value_outside_labels``):

* characters: a–z and 0–9; binary properties: their two labels;
* words: *per item* (an :class:`ItemLabels`): the task's closed answer vocabulary where it has
  one, every observed object-level value, and the item's own words, which small models copy;
* ``identity`` on choice tasks: the observed values plus the items' option letters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from datasets import Dataset

from innerprobe.core.errors import DataError
from innerprobe.protocol.properties import Property, clean_response
from innerprobe.protocol.tasks import TASKS, item_meta


class ItemLabels(Sequence[str]):
    """Forced-choice labels that differ by item: a shared set plus each item's own words.

    As a sequence it is the *columns*: the shared labels, then every item's extra words (sorted),
    the order of a forced-choice distribution. ``for_item(i)`` is item ``i``'s label set (the
    shared labels, then its own words that are not shared); an item's probability of any other
    column is 0. :func:`~innerprobe.behavior.prediction.predict` scores each group of items that
    share a label set in one call.
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


def label_groups(labels: Sequence[str], n: int) -> dict[tuple[str, ...], list[int]]:
    """Item indices by label set: :meth:`ItemLabels.groups`, or one set shared by all ``n``."""
    return labels.groups() if isinstance(labels, ItemLabels) else {tuple(labels): list(range(n))}


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


__all__ = ["ItemLabels", "label_groups", "property_labels"]
