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
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from innerprobe.behavior.elicitation import BehaviorConfig, build_hypotheticals, elicit_object
from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_path, provenance, write_json
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import PromptSpec, label_separator
from innerprobe.protocol.properties import Property, extract_with_compliance, get_property
from innerprobe.protocol.tasks import item_meta, load_items

log = logging.getLogger(__name__)

TRAIN_TASKS = ("colors", "countries", "numbers")
HELDOUT_TASKS = ("animals", "english_words")
CHARACTER_PROPERTIES = ("first_character", "second_character", "third_character")
COLUMNS = ("messages", "prompt", "completion", "task", "property", "item_id", "prefill")


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
            }
        )
    return rows


def build_training_data(
    source: LoadedModel,
    tasks: Sequence[str] = TRAIN_TASKS,
    properties: Sequence[str] = CHARACTER_PROPERTIES,
    n_per_combo: int = 100,
    *,
    split: str = "train",
    spec: PromptSpec = PromptSpec(),
    balance: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Dataset:
    """Hypothetical → property pairs from ``source``'s own greedy behaviour.

    For every (task, property) combination that applies (``is_even`` only to numbers, ...),
    ``n_per_combo`` items of ``split`` are answered greedily by ``source``; compliant answers
    become rows. ``balance`` downsamples each combination to its rarest label (seeded).
    The object prompt is shared across properties of a task, so items are loaded once per task.

    Returns a Dataset with columns :data:`COLUMNS`; ``messages`` is the chat (system "", user
    H(P, property), assistant prefill + label).
    """
    config = BehaviorConfig(mode="forced", spec=spec, batch_size=batch_size, seed=seed)
    out: list[dict[str, Any]] = []
    for task in tasks:
        items = load_items(task, n=n_per_combo, split=split, seed=seed)
        kind = item_meta(items[0])["kind"]
        props = [get_property(p) for p in properties]
        applicable = [p for p in props if p.applies_to(kind)]
        for p in props:
            if p not in applicable:
                log.info("skipping %s × %s (property does not apply to %s items)", task, p.name, kind)
        if not applicable:
            continue
        # One greedy generation per item serves every property of the task.
        bar = progress(f"{task} object answers", len(items)) if progress else None
        obj = elicit_object(source, items, applicable[0], config, bar)
        for prop in applicable:
            values = property_values(obj.responses, items, prop, spec, obj.skipped_too_long)
            rows = combo_rows(source, items, prop, values, spec)
            if balance:
                rows = balance_classes(rows, seed)
            log.info("%s × %s: %d/%d compliant rows", task, prop.name, len(rows), len(items))
            out.extend(rows)
    if not out:
        raise DataError(f"no compliant training rows for tasks {list(tasks)} × properties {list(properties)}")
    return Dataset.from_list(out)


def data_hash(data: Dataset) -> str:
    """sha256 (16 hex) over the rows in order: what the model was trained on."""
    h = hashlib.sha256()
    for row in data:
        h.update(json.dumps({k: row[k] for k in ("messages", "completion")}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def save_training_data(data: Dataset, path: str | Path, source: LoadedModel | None = None, **extra: Any) -> Path:
    """Write rows as JSONL or Parquet (by suffix) plus ``<path>.provenance.json``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            data.to_parquet(str(tmp))
        elif path.suffix in (".jsonl", ".json"):
            data.to_json(str(tmp), lines=True)
        else:
            raise DataError(f"{path}: training data must end in .jsonl or .parquet")
    prov = provenance(source.fingerprint if source else None, data_hash=data_hash(data), n_rows=len(data), **extra)
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
