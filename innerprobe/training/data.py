"""Self-prediction training data: a model's own object-level behaviour as hypothetical → answer pairs.

The paper (Binder et al. 2024, §2.2) finetunes a model M on its *own* behaviour: for an object
prompt P, M's greedy answer has some property value v (e.g. the second character of the animal
it names); the training example is the hypothetical H(P, property) as the user turn and v as the
assistant's answer, in a fresh chat with an empty system message. Only items whose object-level
answer is compliant are kept.

Training uses some tasks and evaluation others: the paper trains on e.g. colors, countries and
numbers and holds out animals and english_words, so that a gain in self-prediction on held-out
tasks cannot come from memorising the input→behaviour map of a training task (a text-only
predictor learns that map too; see :mod:`innerprobe.behavior.baselines`).

The same rows train any model: M (self-training, "M1") or another model B trained on M1's
behaviour ("M2", cross-training). Each row keeps the chat ``messages``; :mod:`innerprobe.training.finetune`
renders them with the trained model's own :func:`innerprobe.protocol.prompts.render_chat`, exactly as
:func:`innerprobe.protocol.prompts.hypothetical_prompt` does at evaluation time.

**Which items.** :func:`build_training_data` takes task names (``n_per_combo`` items of each are
generated), files, or items the caller already holds (a ``datasets.Dataset`` or a list of dicts,
read by :func:`innerprobe.protocol.tasks.as_items` and grouped by their ``task``). Every row
carries the :func:`~innerprobe.protocol.tasks.items_digest` of the item set it came from, and
:func:`save_training_data` records those digests in the provenance file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from innerprobe.behavior import BehaviorConfig, build_hypotheticals, elicit_object
from innerprobe.core.errors import DataError, UnknownNameError, check_at_least
from innerprobe.core.io import atomic_path, provenance, write_json
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import PromptSpec, label_separator
from innerprobe.protocol.properties import Property, extract_with_compliance, get_property
from innerprobe.protocol.tasks import as_items, item_meta, items_digest

log = logging.getLogger(__name__)

TRAIN_TASKS = ("colors", "countries", "numbers")
HELDOUT_TASKS = ("animals", "english_words")
CHARACTER_PROPERTIES = ("first_character", "second_character", "third_character")
SPLITS = ("train", "test")
COLUMNS = ("messages", "prompt", "completion", "task", "property", "item_id", "prefill", "items_digest")


def assistant_text(label: str, prefill: str | None) -> str:
    """The assistant turn of a training example: ``prefill`` + separator + label."""
    return (prefill or "") + label_separator(prefill) + label


def balance_classes(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Downsample every label to the count of the rarest one (seeded; order kept)."""
    counts = Counter(r["completion"] for r in rows)
    if not counts:
        return rows
    floor = min(counts.values())
    rng = random.Random(seed)
    keep: set[int] = set()
    for label in sorted(counts):
        idx = [i for i, r in enumerate(rows) if r["completion"] == label]
        keep.update(rng.sample(idx, floor))
    return [r for i, r in enumerate(rows) if i in keep]


def property_values(
    responses: list[str], items: Dataset, prop: Property, spec: PromptSpec, skipped: Sequence[bool]
) -> list[str | None]:
    """Property values of already generated object answers (None: non-compliant or skipped)."""
    out: list[str | None] = []
    for r, row, skip in zip(responses, items, skipped):
        meta = item_meta(row)
        prefill = spec.object_prefill_text(row.get("task"))
        ext = extract_with_compliance(prop, prefill + r, meta["kind"], meta.get("target"))
        out.append(ext.value if ext.compliant and not skip else None)
    return out


def combo_rows(
    source: LoadedModel,
    items: Dataset,
    prop: Property,
    values: Sequence[str | None],
    spec: PromptSpec,
) -> list[dict[str, Any]]:
    """Rows for one (task, property) from ``source``'s object-level property ``values``."""
    hyps = build_hypotheticals(source, items, prop, spec)
    prefill = spec.hypothetical_prefill
    digest = items_digest(items)
    rows = []
    for row, hyp, value in zip(items, hyps, values):
        if value is None:
            continue
        messages = [
            {"role": "system", "content": spec.system or ""},
            {"role": "user", "content": hyp.user},
            {"role": "assistant", "content": assistant_text(value, prefill)},
        ]
        rows.append(
            {
                "messages": messages,
                "prompt": hyp.user,
                "completion": value,
                "task": row["task"],
                "property": prop.name,
                "item_id": row["id"],
                "prefill": prefill or "",
                "items_digest": digest,
            }
        )
    return rows


ItemSource = str | Path | Dataset | Sequence[Mapping[str, Any]]
"""Where items come from: a task name or path, a Dataset, or a list of dicts."""


@dataclass(frozen=True)
class TrainingDataConfig:
    """How :func:`build_training_data` turns items into rows.

    Attributes:
        properties: property names (see :func:`~innerprobe.protocol.properties.get_property`);
            each applies only to the tasks it fits (``is_even`` to numbers).
        n_per_combo: items generated per task given by name (in-memory items are used whole).
        split: split of generated tasks (``train`` | ``test``) and of question files.
        spec: prompt wording and prefills (the same as at evaluation).
        balance: downsample each (task, property) to its rarest label (seeded).
        seed: seed of item generation and of balancing.
        batch_size: prompts per forward of the object-level generation.
    """

    properties: tuple[str, ...] = CHARACTER_PROPERTIES
    n_per_combo: int = 100
    split: str = "train"
    spec: PromptSpec = PromptSpec()
    balance: bool = False
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        props = (self.properties,) if isinstance(self.properties, str) else tuple(self.properties)
        if not props:
            raise DataError(f"no properties given; e.g. {list(CHARACTER_PROPERTIES)}")
        for name in props:
            get_property(name)  # UnknownNameError listing the properties
        object.__setattr__(self, "properties", props)
        check_at_least("n_per_combo", self.n_per_combo, 1)
        check_at_least("batch_size", self.batch_size, 1)
        if self.split not in SPLITS:
            raise UnknownNameError("split", self.split, SPLITS)
        if not isinstance(self.spec, PromptSpec):
            raise DataError(f"spec must be a PromptSpec, got {type(self.spec).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "properties": list(self.properties), "spec": self.spec.to_dict()}


def _item_sets(sources: ItemSource | Sequence[ItemSource], config: TrainingDataConfig) -> list[Dataset]:
    """One Dataset per task: names generate ``n_per_combo`` items; held items are split by task."""
    if isinstance(sources, (str, Path, Dataset)) or (
        isinstance(sources, Sequence) and sources and all(isinstance(r, Mapping) for r in sources)
    ):
        sources = [sources]
    if not sources:
        raise DataError("no items given: pass task names, a Dataset or a list of dicts")
    out = []
    for src in sources:
        named = isinstance(src, (str, Path))
        items = as_items(src, n=config.n_per_combo if named else None, split=config.split, seed=config.seed)
        tasks = list(dict.fromkeys(items["task"]))
        column = items["task"]
        out += [items] if len(tasks) == 1 else [items.select([i for i, t in enumerate(column) if t == task]) for task in tasks]
    return out


def build_training_data(
    source: LoadedModel,
    items: ItemSource | Sequence[ItemSource] = TRAIN_TASKS,
    properties: Sequence[str] | None = None,
    n_per_combo: int | None = None,
    *,
    config: TrainingDataConfig | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    **options: Any,
) -> Dataset:
    """Hypothetical → property pairs from ``source``'s own greedy behaviour.

    Args:
        source: the model whose object-level behaviour becomes the answers.
        items: task names (the paper's training tasks by default), paths, a ``Dataset`` or a
            list of dicts, or a list mixing them. Each task's items are answered together.
        properties, n_per_combo, **options: :class:`TrainingDataConfig` fields, replacing those
            of ``config`` (``build_training_data(m, ["colors"], ["first_character"], 8, seed=1)``).
        config: the knobs (default: :class:`TrainingDataConfig` defaults).
        progress: ``progress(stage, total)`` returns a per-batch callback (a progress bar).

    For every (task, property) combination that applies, the items are answered greedily by
    ``source``; compliant answers become rows. One greedy generation per item serves every
    property of its task. ``balance`` downsamples each combination to its rarest label.

    Returns a Dataset with columns :data:`COLUMNS`; ``messages`` is the chat (system "", user
    H(P, property), assistant prefill + label).
    """
    given = {k: v for k, v in (("properties", properties), ("n_per_combo", n_per_combo)) if v is not None}
    fields = [f.name for f in dataclasses.fields(TrainingDataConfig)]
    for key in options:
        if key not in fields:
            raise UnknownNameError("training-data option", key, fields)
    cfg = dataclasses.replace(config or TrainingDataConfig(), **given, **options)
    spec = cfg.spec
    behavior = BehaviorConfig(mode="forced", spec=spec, batch_size=cfg.batch_size, seed=cfg.seed)
    props = [get_property(p) for p in cfg.properties]
    out: list[dict[str, Any]] = []
    for task_items in _item_sets(items, cfg):
        task = task_items[0]["task"]
        kind = item_meta(task_items[0])["kind"]
        applicable = [p for p in props if p.applies_to(kind)]
        for p in props:
            if p not in applicable:
                log.info("skipping %s × %s (property does not apply to %s items)", task, p.name, kind)
        if not applicable:
            continue
        bar = progress(f"{task} object answers", len(task_items)) if progress else None
        obj = elicit_object(source, task_items, applicable[0], behavior, bar)
        for prop in applicable:
            values = property_values(obj.responses, task_items, prop, spec, obj.skipped_too_long)
            rows = combo_rows(source, task_items, prop, values, spec)
            if cfg.balance:
                rows = balance_classes(rows, cfg.seed)
            log.info("%s × %s: %d/%d compliant rows", task, prop.name, len(rows), len(task_items))
            out.extend(rows)
    if not out:
        raise DataError(f"no compliant training rows for items {_describe(items)} × properties {list(cfg.properties)}")
    return Dataset.from_list(out)


def _describe(items: Any) -> str:
    if isinstance(items, (str, Path)):
        return repr(str(items))
    if isinstance(items, Dataset):
        return f"(a Dataset of {len(items)})"
    return repr([x if isinstance(x, (str, Path)) else type(x).__name__ for x in items][:8])


def data_hash(data: Dataset) -> str:
    """sha256 (16 hex) over the rows in order: what the model was trained on."""
    h = hashlib.sha256()
    for row in data:
        h.update(json.dumps({k: row[k] for k in ("messages", "completion")}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def save_training_data(data: Dataset, path: str | Path, source: LoadedModel | None = None, **extra: Any) -> Path:
    """Write rows as JSONL or Parquet (by suffix) plus ``<path>.provenance.json``.

    The provenance holds the model fingerprint, :func:`data_hash`, the row count and the
    ``items_digests`` of the item sets the rows came from, plus ``extra``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            data.to_parquet(str(tmp))
        elif path.suffix in (".jsonl", ".json"):
            data.to_json(str(tmp), lines=True)
        else:
            raise DataError(f"{path}: training data must end in .jsonl or .parquet")
    digests = sorted(set(data["items_digest"])) if "items_digest" in data.column_names else []
    prov = provenance(
        source.fingerprint if source else None, data_hash=data_hash(data), n_rows=len(data),
        items_digests=digests, **extra,
    )
    write_json(path.with_suffix(path.suffix + ".provenance.json"), prov)
    return path


def load_training_data(path: str | Path) -> Dataset:
    """Read rows written by :func:`save_training_data`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such training-data file")
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    return Dataset.from_json(str(path))
