"""The item contract: what every task loader hands to the rest of innerprobe.

An *item* is one object-level question. Items travel as a ``datasets.Dataset``
with four string columns:

``id``
    Stable and unique, e.g. ``"animals-test-00042"`` or, for a file,
    ``f"{file_stem}-{line_no:05d}"``.
``task``
    Our task name (``"animals"``, ``"wealth_seeking"``, ...).
``question``
    The full user message the model is asked, exactly as sent.
``meta``
    A JSON object (``json.dumps(..., sort_keys=True)``) with at least

    - ``kind``: ``"sequence"``, ``"numbers"``, ``"choice"`` or ``"free"``;
    - ``string``: the raw item pasted into the task template;
    - ``group``: a cross-validation key, ``normalise(string)``, so that two
      copies of one item always land in the same fold;
    - ``split``: ``"train"``, ``"test"``, ...

    and optionally ``target`` and ``options`` (lowercase letters, choice items),
    ``property`` and ``hypothetical`` (release files), ``source`` and others.

Meta is a JSON string rather than a struct column so that items from different
loaders, with different optional keys, concatenate without schema clashes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from datasets import Dataset, Features, Value

from innerprobe.core.errors import DataError

ITEM_COLUMNS: tuple[str, ...] = ("id", "task", "question", "meta")
KINDS: tuple[str, ...] = ("sequence", "numbers", "choice", "free")
REQUIRED_META_KEYS: tuple[str, ...] = ("kind", "string", "group", "split")

ITEM_FEATURES = Features({column: Value("string") for column in ITEM_COLUMNS})


def normalise(text: str) -> str:
    """Lowercase and collapse whitespace: the grouping and split-hash key of an item."""
    return " ".join(text.lower().split())


def item_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """Decode the ``meta`` JSON of one item row into a dict."""
    return json.loads(row["meta"])


def build_meta(kind: str, string: str, split: str, **extra: Any) -> dict[str, Any]:
    """The required meta keys for one item plus any optional ones given.

    ``group`` is derived from ``string`` so every loader groups the same way.
    Optional keys whose value is ``None`` are kept, so ``meta["target"]`` can
    say "this item has no target" explicitly.
    """
    if kind not in KINDS:
        raise DataError(f"unknown item kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return {"kind": kind, "string": string, "group": normalise(string), "split": split, **extra}


def _encode_meta(meta: object, record_index: int) -> str:
    """Accept meta as a dict or as a JSON string; return canonical JSON."""
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as err:
            raise DataError(f"item {record_index}: meta is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise DataError(f"item {record_index}: meta must be a JSON object, got {type(meta)}")
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise DataError(f"item {record_index}: meta lacks key(s) {', '.join(missing)}")
    if meta["kind"] not in KINDS:
        raise DataError(f"item {record_index}: meta kind {meta['kind']!r} not in {KINDS}")
    return json.dumps(meta, sort_keys=True)


def _check_record(record: Mapping[str, Any], record_index: int) -> dict[str, str]:
    """One record as the four contract columns, or a DataError naming what is wrong."""
    missing = [column for column in ITEM_COLUMNS if column not in record]
    if missing:
        raise DataError(f"item {record_index}: missing column(s) {', '.join(missing)}")
    extra = sorted(set(record) - set(ITEM_COLUMNS))
    if extra:
        raise DataError(f"item {record_index}: unexpected column(s) {', '.join(extra)}")
    for column in ("id", "task", "question"):
        if not isinstance(record[column], str) or not record[column]:
            raise DataError(f"item {record_index}: column {column} must be a non-empty string")
    return {
        "id": record["id"],
        "task": record["task"],
        "question": record["question"],
        "meta": _encode_meta(record["meta"], record_index),
    }


def make_items(records: list[Mapping[str, Any]]) -> Dataset:
    """Validate item records and pack them into a ``datasets.Dataset``.

    Each record needs exactly the columns ``id``, ``task``, ``question`` and
    ``meta`` (a dict or a JSON string holding ``kind``, ``string``, ``group``
    and ``split``). Ids must be unique. An empty list gives an empty dataset
    with the item schema.
    """
    rows = [_check_record(record, index) for index, record in enumerate(records)]
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise DataError(f"duplicate item id {row['id']!r}")
        seen.add(row["id"])
    columns = {column: [row[column] for row in rows] for column in ITEM_COLUMNS}
    return Dataset.from_dict(columns, features=ITEM_FEATURES)
