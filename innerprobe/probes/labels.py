"""What a probe predicts: labels as class ids, and the activations they must align with.

A probe's target is a column of strings (the object-level answer word, its property value...).
:func:`encode_labels` turns it into class ids ``0..C-1`` (classes sorted by string), drops classes
rarer than ``min_count`` when asked (and records which), and refuses targets that
cross-validation cannot handle: fewer than two classes, or a class with fewer items than folds
(stratified k-fold must put at least one item of every class in every fold).
:func:`check_activations` refuses activations that do not line up with the labels or hold
NaN/inf, naming the rows, before any fit sees them.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jaxtyping import Bool, Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["Labels", "encode_labels", "check_activations"]


@dataclass(frozen=True)
class Labels:
    """Labels as class ids, after dropping rare classes.

    ``keep`` marks the items kept (a boolean mask over the input); ``ids`` and ``classes`` refer
    to the kept items only.
    """

    ids: Int[np.ndarray, " n_kept"]
    classes: list[str]
    keep: Bool[np.ndarray, " n"]
    dropped_classes: dict[str, int] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped_classes.values()))


def encode_labels(y: Sequence[Any], *, folds: int, min_count: int | None = None) -> Labels:
    """Map labels to class ids (sorted by string); check every class can fill ``folds`` folds.

    ``None``/NaN labels are errors (filter non-compliant rows first). With ``min_count`` classes
    with fewer items are dropped; at least ``folds`` items per class are needed either way.
    """
    values = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v) for v in y]
    missing = sum(v is None for v in values)
    if missing:
        raise DataError(f"{missing} of {len(values)} labels are missing (None/NaN); drop those rows first")
    counts = Counter(values)
    dropped: dict[str, int] = {}
    if min_count is not None:
        dropped = {c: k for c, k in counts.items() if k < min_count}
        if dropped:
            log.info("dropped %d rare classes (%d items) with < %d items", len(dropped), sum(dropped.values()), min_count)
    keep = np.array([v not in dropped for v in values], dtype=bool)
    kept_counts = {c: k for c, k in counts.items() if c not in dropped}
    if len(kept_counts) < 2:
        only = ", ".join(repr(c) for c in kept_counts) or "none"
        raise DataError(
            f"probing needs >= 2 classes, found {len(kept_counts)} ({only})"
            + (f" after dropping {len(dropped)} classes with min_count={min_count}" if dropped else "")
        )
    for c, k in sorted(kept_counts.items(), key=lambda kv: kv[1]):
        if k < folds:
            raise DataError(
                f"class {c!r} has {k} items; {folds}-fold CV needs >= {folds} per class — "
                f"drop rare classes with min_count={folds} (or use fewer folds)"
            )
    classes = sorted(kept_counts)
    index = {c: i for i, c in enumerate(classes)}
    ids = np.array([index[v] for v, k in zip(values, keep, strict=True) if k], dtype=np.int64)
    return Labels(ids=ids, classes=classes, keep=keep, dropped_classes=dropped)


def check_activations(x: Float[Tensor, "n layer d"], n: int, what: str) -> None:
    """``DataError`` unless ``x`` is ``[n, layer, d]`` with ``n`` rows (one per label), all finite."""
    if x.ndim != 3:
        raise DataError(f"{what}: expected activations [n, layer, d], got shape {tuple(x.shape)}")
    if x.shape[0] != n:
        raise DataError(f"{what}: {x.shape[0]} activation rows but {n} labels; rows must align")
    bad = ~x.isfinite()
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten()
        raise DataError(
            f"{what}: {int(bad.sum())} NaN/inf activation values in {len(rows)} items "
            f"(first rows: {rows[:5].tolist()}); recapture or drop those items"
        )
