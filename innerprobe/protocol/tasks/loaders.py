"""Loading items from outside: the paper's release files, user files and Hugging Face datasets.

``load_items`` is the front door. It takes one string and decides:

1. a registered task name (``"animals"``, or the release's ``"animals_long"``):
   generate ``n`` items of ``split`` with ``seed``;
2. an existing ``.jsonl`` file in the release schema: ``load_release``;
3. any other ``.jsonl`` or ``.csv`` file: ``load_questions``;
4. a directory, a ``.json``/``.parquet`` file, or ``owner/name`` Hub id: ``load_hf``.

It then keeps the first ``n`` items *in file order* (no shuffling, so the same
file always gives the same items) and refuses an empty result.

Every error about a file names the file and the line (JSONL) or data row (CSV). Files are read
as UTF-8 (a leading byte-order mark is dropped); bytes that are not UTF-8 raise DataError naming
the file, the byte offset and the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, load_dataset, load_from_disk

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.protocol.tasks.items import ITEM_COLUMNS, KINDS, build_meta, make_items
from innerprobe.protocol.tasks.registry import RELEASE_NAMES, TASKS, canonical_task_name, get_task

RELEASE_FIELDS: tuple[str, ...] = (
    "original_question",
    "original_dataset",
    "object_level_prompt",
    "hypothetical_prompt",
    "behavioral_property",
)
"""Fields every release row must have; ``option_matching_ethical_stance`` may be absent."""

RELEASE_SPLITS = ("train", "test", "val", "validation")
QUESTION_FILE_SUFFIXES = (".jsonl", ".csv")
HF_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


# --- reading files line by line ---------------------------------------------


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    return path


def _utf8_text(path: Path, newline: str | None = None) -> io.StringIO:
    """The text of ``path`` decoded as UTF-8 (BOM dropped); DataError naming where it is not."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}: not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}, line {line}); "
            "re-save the file as UTF-8"
        ) from err
    return io.StringIO(text, newline=newline)


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_no, object)`` for each non-blank line (1-based line numbers).

    A line that is not a JSON object raises DataError naming the file and line.
    """
    path = _existing_file(path)
    with _utf8_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {line_no}: invalid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise DataError(f"{path} line {line_no}: expected a JSON object")
            yield line_no, row


def read_csv(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(row_no, row)`` for each CSV data row (1-based, header excluded)."""
    path = _existing_file(path)
    with _utf8_text(path, newline="") as handle:
        reader = csv.DictReader(handle)
        for row_no, row in enumerate(reader, start=1):
            if None in row:
                raise DataError(f"{path} row {row_no}: more cells than header columns")
            yield row_no, row


# --- the paper's release files ----------------------------------------------


def is_release_file(path: str | Path) -> bool:
    """Whether the first row of a JSONL file has the release schema."""
    for _, row in read_jsonl(path):
        return all(field in row for field in RELEASE_FIELDS)
    return False


def release_kind(original_dataset: str) -> tuple[str, list[str] | None]:
    """Item kind and option letters of a release ``original_dataset``.

    Registered tasks answer from the registry; unknown names are guessed from
    keywords (A/B evals, ARC/MMLU, completions) and default to ``"free"``.
    """
    name = canonical_task_name(original_dataset)
    if name in TASKS:
        task = TASKS[name]
        return task.kind, list(task.options) if task.options else None
    if any(word in name for word in ("wealth", "power", "myopic", "survival")):
        return "choice", ["a", "b"]
    if any(word in name for word in ("arc", "mmlu")):
        return "choice", ["a", "b", "c", "d"]
    return "free", None


def _user_content(messages: object, where: str) -> str:
    """The text of the last user turn of a chat-message list."""
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
    raise DataError(f"{where}: expected a list of chat messages with a user turn")


def _release_split(path: Path) -> str:
    """The release folder (``train``/``test``) a file sits in, else ``"release"``."""
    return path.parent.name if path.parent.name in RELEASE_SPLITS else "release"


def _release_item(row: dict[str, Any], where: str, path: Path, item_id: str) -> dict[str, Any]:
    missing = [field for field in RELEASE_FIELDS if field not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    kind, options = release_kind(str(row["original_dataset"]))
    stance = row.get("option_matching_ethical_stance")
    extra: dict[str, Any] = {
        "property": row["behavioral_property"],
        "hypothetical": _user_content(row["hypothetical_prompt"], f"{where} hypothetical_prompt"),
        "source": str(path),
        "target": None,
    }
    if kind == "choice" and options:
        extra["options"] = options
        if stance is not None:
            extra["target"] = str(stance).strip().lower()
            if extra["target"] not in options:
                raise DataError(f"{where}: target {stance!r} is not one of {options}")
    elif stance is not None:
        # The release stores e.g. Wikipedia's true next word here: keep it, not as a target letter.
        extra["reference"] = stance
    return {
        "id": item_id,
        "task": canonical_task_name(str(row["original_dataset"])),
        "question": _user_content(row["object_level_prompt"], f"{where} object_level_prompt"),
        "meta": build_meta(kind, str(row["original_question"]), _release_split(path), **extra),
    }


def load_release(path: str | Path) -> Dataset:
    """Items from one file of the paper's data release, one per line, verbatim.

    ``question`` is the object-level user turn and ``meta["hypothetical"]`` the
    hypothetical user turn, both byte for byte; ``meta["property"]`` is the
    behavioural property; ``meta["target"]`` the lowercase target letter of
    choice items (None otherwise); ``meta["split"]`` the release folder. Ids are
    ``f"{file_stem}-{line_no:05d}"`` with 1-based line numbers.
    """
    path = _existing_file(path)
    items = [
        _release_item(row, f"{path} line {line_no}", path, f"{path.stem}-{line_no:05d}")
        for line_no, row in read_jsonl(path)
    ]
    if not items:
        raise DataError(f"{path}: empty release file")
    return make_items(items)


def release_property(path: str | Path) -> str:
    """The behavioural property shared by every row of a release file."""
    properties = {str(row.get("behavioral_property")) for _, row in read_jsonl(path)}
    if len(properties) != 1:
        found = sorted(properties) or "no rows"
        raise DataError(f"{path}: expected one behavioral_property, found {found}")
    return properties.pop()


# --- user question files ----------------------------------------------------


def parse_options(value: object, where: str) -> list[str] | None:
    """Option letters from a list, a JSON list string or ``"a|b"``; None when empty."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: options {text!r} is not a JSON list") from err
        else:
            value = text.split("|")
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: options must be a list of letters or 'a|b', got {value!r}")
    return [str(option).strip().lower() for option in value]


def question_item(
    row: Mapping[str, Any],
    *,
    where: str,
    default_id: str,
    default_task: str,
    split: str,
    source: str,
    string: str | None = None,
) -> dict[str, Any]:
    """An item record from a row with ``question`` and optional ``id``, ``task``,
    ``target``, ``options``, ``kind`` and ``split``; the question is used verbatim.

    ``kind`` defaults to ``"choice"`` when options are given, else ``"free"``.
    ``string`` (the raw item, for meta) defaults to the question itself.
    """
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: missing or empty question")
    options = parse_options(row.get("options"), where)
    kind = row.get("kind") or ("choice" if options else "free")
    if kind not in KINDS:
        raise DataError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    extra: dict[str, Any] = {"source": source}
    if options:
        extra["options"] = options
    target = row.get("target")
    if target not in (None, ""):
        extra["target"] = str(target).strip().lower()
        if options and extra["target"] not in options:
            raise DataError(f"{where}: target {target!r} is not one of the options {options}")
    return {
        "id": str(row.get("id") or default_id),
        "task": str(row.get("task") or default_task),
        "question": question,
        "meta": build_meta(kind, string or question, str(row.get("split") or split), **extra),
    }


def load_questions(path: str | Path, *, split: str = "test") -> Dataset:
    """Items from a user JSONL or CSV file of questions, used verbatim as the user turn.

    Columns: ``question`` (required) and optional ``id`` (default
    ``f"{stem}-{line_no:05d}"``), ``task`` (default the file stem), ``target``,
    ``options`` (a JSON list or ``"a|b"``), ``kind`` and ``split`` (default ``split``).
    """
    path = _existing_file(path)
    if path.suffix == ".csv":
        rows, unit = read_csv(path), "row"
    elif path.suffix == ".jsonl":
        rows, unit = read_jsonl(path), "line"
    else:
        raise DataError(f"{path}: load_questions reads .jsonl or .csv files")
    items = [
        question_item(
            row,
            where=f"{path} {unit} {number}",
            default_id=f"{path.stem}-{number:05d}",
            default_task=path.stem,
            split=split,
            source=str(path),
        )
        for number, row in rows
    ]
    if not items:
        raise DataError(f"{path}: no questions in file")
    return make_items(items)


# --- Hugging Face datasets ---------------------------------------------------


def _open_hf(path_or_id: str, split: str, name: str | None) -> Dataset:
    """A ``datasets.Dataset`` from a local file, a saved dataset, a data folder or a Hub id."""
    path = Path(path_or_id)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = load_from_disk(str(path))
            if split not in splits:
                raise DataError(f"{path}: no split {split!r}; splits: {', '.join(splits)}")
            return splits[split]
        if (path / "dataset_info.json").is_file():
            return load_from_disk(str(path))
        return load_dataset(str(path), name, split=split)
    if path.is_file():
        builder = HF_FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise DataError(f"{path}: unsupported file type; use one of {list(HF_FILE_BUILDERS)}")
        return load_dataset(builder, data_files={split: str(path)}, split=split)
    try:
        return load_dataset(path_or_id, name, split=split)
    except Exception as err:  # network, missing repo, bad config: say which source failed
        raise DataError(f"could not load {path_or_id!r} split {split!r}: {err}") from err


def load_hf(
    path_or_id: str,
    *,
    split: str = "train",
    question_field: str = "question",
    task: str | None = None,
    n: int | None = None,
    name: str | None = None,
    id_field: str = "id",
    target_field: str = "target",
    options_field: str = "options",
    render: bool = False,
) -> Dataset:
    """Items from anything ``datasets`` can open: a Hub id (``"owner/name"``, with
    config ``name``), a local .jsonl/.json/.csv/.parquet file, a data folder, or a
    folder written by ``save_to_disk``.

    ``question_field`` holds the question; ``id_field``, ``target_field`` and
    ``options_field`` are used when present. ``task`` defaults to the file stem
    or the Hub name. With ``render=True`` the field is the raw item of the
    registered ``task`` and the question is ``get_task(task).render(value)``.
    Only the first ``n`` rows are read.
    """
    dataset = _open_hf(path_or_id, split, name)
    if question_field not in dataset.column_names:
        raise DataError(
            f"{path_or_id}: no column {question_field!r}; "
            f"columns: {', '.join(dataset.column_names)}"
        )
    if n is not None:
        if n > len(dataset):
            raise DataError(f"{path_or_id}: asked for {n} rows but only {len(dataset)} exist")
        dataset = dataset.select(range(n))
    task_name = task or Path(path_or_id.rstrip("/")).stem
    registered = get_task(task_name) if render else None
    records = []
    for index, row in enumerate(dataset):
        value = row[question_field]
        where = f"{path_or_id} row {index}"
        fields = {
            "question": registered.render(str(value)) if registered else value,
            "id": row.get(id_field),
            "target": row.get(target_field),
            "options": row.get(options_field),
            "kind": registered.kind if registered else None,
        }
        records.append(
            question_item(
                fields,
                where=where,
                default_id=f"{task_name}-{split}-{index:05d}",
                default_task=task_name,
                split=split,
                source=path_or_id,
                string=str(value) if registered else None,
            )
        )
    return make_items(records)


# --- the front door -----------------------------------------------------------


def _first(items: Dataset, n: int | None, source: str) -> Dataset:
    """The first ``n`` items in order, or all; DataError when empty or too few."""
    if len(items) == 0:
        raise DataError(f"{source}: no items")
    if n is None:
        return items
    if n > len(items):
        raise DataError(f"{source}: asked for {n} items but only {len(items)} exist")
    return items.select(range(n))


def load_items(source: str, *, n: int | None = None, split: str = "test", seed: int = 0) -> Dataset:
    """Items from a task name, a file, a folder or a Hub id (see the module docstring).

    ``n`` is required for generated tasks. ``split`` picks the generated split,
    the default split of question files and the split of Hugging Face datasets;
    release files keep their folder's split. A name that is neither a task nor
    an existing path nor an ``owner/name`` id raises UnknownNameError listing the tasks.
    """
    if n is not None and n < 1:
        raise DataError(f"need n >= 1 items, got n={n}")
    if source in TASKS or source in RELEASE_NAMES:
        if n is None:
            raise DataError(f"task {source!r} is generated: say how many items with n=")
        return get_task(source).generate(n, split=split, seed=seed)
    path = Path(source)
    if path.suffix in QUESTION_FILE_SUFFIXES and path.is_file():
        is_release = path.suffix == ".jsonl" and is_release_file(path)
        items = load_release(path) if is_release else load_questions(path, split=split)
    elif path.exists() or ("/" in source and path.suffix not in HF_FILE_BUILDERS):
        items = load_hf(source, split=split, n=n)
    elif path.suffix in HF_FILE_BUILDERS:
        raise DataError(f"no such file: {source}")
    else:
        raise UnknownNameError("task", source, TASKS)
    return _first(items, n, source)


# --- bring your own items -----------------------------------------------------

ITEM_SOURCES = (
    "a task name", "a file or folder path", "a Hub id", "a datasets.Dataset",
    "a list of dicts (item records or rows with a 'question')",
)


def _records_to_items(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], where: str, task: str | None, split: str) -> Dataset:
    if set(ITEM_COLUMNS) <= set(columns):
        return make_items([dict(r) for r in rows])
    if "question" in columns:
        name = task or "user"
        return make_items(
            [
                question_item(r, where=f"{where} row {i}", default_id=f"{name}-{i:05d}", default_task=name,
                              split=split, source=where)
                for i, r in enumerate(rows)
            ]
        )
    raise DataError(
        f"{where}: rows need the item columns {list(ITEM_COLUMNS)} or at least a 'question' column; "
        f"got columns {sorted(columns)}"
    )


def as_items(
    source: str | Path | Dataset | Sequence[Mapping[str, Any]],
    *,
    n: int | None = None,
    split: str = "test",
    seed: int = 0,
    task: str | None = None,
) -> Dataset:
    """Items from whatever the caller holds: the front door every stage takes items through.

    * a task name, a file, a folder or a Hub id → :func:`load_items`;
    * a ``datasets.Dataset`` or a list of dicts, either already item records (``id``, ``task``,
      ``question``, ``meta``: validated with :func:`make_items`) or rows with a ``question``
      (and optional ``id``, ``task``, ``target``, ``options``, ``kind``, ``split``), read as a
      question file's rows are (:func:`question_item`; ``task`` names them, default ``"user"``).

    ``n`` keeps the first ``n`` items. Anything else raises ``DataError`` naming the valid sources.
    """
    if isinstance(source, (str, Path)):
        return load_items(str(source), n=n, split=split, seed=seed)
    if isinstance(source, Dataset):
        items = _records_to_items(source, source.column_names, "dataset", task, split)
    elif isinstance(source, Sequence) and all(isinstance(r, Mapping) for r in source):
        if not source:
            raise DataError("an empty list of items")
        columns = sorted(set().union(*(r.keys() for r in source)))
        items = _records_to_items(source, columns, "list of dicts", task, split)
    else:
        raise DataError(f"cannot read items from a {type(source).__name__}; valid sources: {', '.join(ITEM_SOURCES)}")
    return _first(items, n, "items")


def items_digest(items: Dataset) -> str:
    """sha256 over the items' ids, questions and meta, in order: which items a result was made on."""
    h = hashlib.sha256()
    for row in items:
        for col in ITEM_COLUMNS:
            h.update(str(row[col]).encode())
            h.update(b"\x1f")
    return h.hexdigest()
