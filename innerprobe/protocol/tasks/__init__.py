"""Object-level tasks: the questions whose answers a model is asked to predict.

- ``items``: the item contract (a ``datasets.Dataset`` of id/task/question/meta).
- ``templates``: the paper's prompt wording.
- ``generators``: seeded synthetic items with disjoint train/test splits, and
  A/B or multiple-choice items from question records.
- ``registry``: ``Task`` objects by name.
- ``loaders``: release files, user files, Hugging Face datasets and ``load_items``.

Typical use::

    from innerprobe.protocol.tasks import load_items, item_meta
    items = load_items("animals", n=200, split="test")
    items[0]["question"]   # the exact user message
    item_meta(items[0])    # {"kind": "sequence", "string": ..., "group": ..., "split": "test"}
"""

from innerprobe.protocol.tasks.generators import choice_items, english_words, split_of
from innerprobe.protocol.tasks.items import ITEM_COLUMNS, KINDS, item_meta, make_items, normalise
from innerprobe.protocol.tasks.loaders import (
    as_items,
    is_release_file,
    items_digest,
    load_hf,
    load_items,
    load_questions,
    load_release,
    release_property,
)
from innerprobe.protocol.tasks.registry import (
    TASKS,
    Task,
    canonical_task_name,
    get_task,
    list_tasks,
)

__all__ = [
    "ITEM_COLUMNS",
    "KINDS",
    "TASKS",
    "Task",
    "canonical_task_name",
    "choice_items",
    "english_words",
    "as_items",
    "items_digest",
    "get_task",
    "is_release_file",
    "item_meta",
    "list_tasks",
    "load_hf",
    "load_items",
    "load_questions",
    "load_release",
    "make_items",
    "normalise",
    "release_property",
    "split_of",
]
