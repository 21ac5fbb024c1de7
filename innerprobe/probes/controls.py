"""Controls: what a probe decodes from nothing, from memorised types, and from a random readout.

A probe accuracy means little alone: a flexible enough probe decodes *something* from any
high-dimensional activation. Each control is fitted with the same probe, hyper-parameters and
folds as the task, so the difference is what the representation adds:

* ``shuffled`` (:func:`shuffled_labels`): the labels permuted with the seed. Destroys every
  item–label relation; what remains is what the probe gets from nothing (chance, or below).
* ``control_task`` (:func:`control_task`; Hewitt & Liang 2019): every *type* (a recurring unit
  of the input, e.g. its last word) gets one fixed random label drawn from the task's label
  marginals. A probe scores above chance on held-out items of this control only by memorising
  which type an activation came from, so ``selectivity = task acc − control-task acc`` says how
  much of the task accuracy is not memorisation. Types must *recur*: with one type per item the
  held-out control is chance for any representation and selectivity degenerates into
  ``accuracy − chance``, so such a control is not fitted and a warning says why. Items without a
  type (``None``) are dropped from the control and counted, never pooled into one "None" type.
* ``random_proj`` (:func:`random_projection`): the activations projected onto a seeded random
  orthonormal subspace whose rank equals the probe's (``C − 1``; for a binary target the
  random-direction probe), then probed with the task labels: how much a *random* low-rank readout
  already decodes.
* ``majority`` (:func:`majority_oof`): always predict the training fold's most common class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError

__all__ = [
    "ControlTask",
    "control_task",
    "control_task_labels",
    "default_control_types",
    "majority_oof",
    "random_projection",
    "shuffled_labels",
    "type_key",
]


def shuffled_labels(y: Int[np.ndarray, " n"], seed: int) -> Int[np.ndarray, " n"]:
    """The labels permuted across items (seeded): destroys any item–label relation."""
    return np.random.default_rng([seed, 1]).permutation(y)


def type_key(t: Any) -> str | None:
    """A type's string key; ``None`` / NaN / empty mean "no type"."""
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return None
    key = str(t)
    return key if key.strip() else None


@dataclass(frozen=True)
class ControlTask:
    """A Hewitt–Liang control task over the items that have a type.

    ``keep`` marks the items with a type (the control is fitted and scored on those only);
    ``labels`` are their control labels (``-1`` where dropped). ``n_recurring`` counts kept items
    whose type occurs at least twice: only those let a probe show it memorised the type.
    ``warning`` is set when the control cannot mean anything (then it is not fitted).
    """

    labels: Int[np.ndarray, " n"]
    keep: Bool[np.ndarray, " n"]
    n_types: int
    n_missing: int
    n_recurring: int
    n_classes: int
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_items": int(self.keep.sum()), "n_types": self.n_types, "n_missing_type": self.n_missing,
            "n_recurring_type_items": self.n_recurring, "n_control_classes": self.n_classes,
            "warning": self.warning,
        }


def _control_warning(n_kept: int, n_types: int, n_recurring: int, n_classes: int, n_missing: int) -> str | None:
    dropped = f" ({n_missing} items without a type dropped)" if n_missing else ""
    if n_types < 2:
        return f"control task collapsed to {n_types} type(s) over {n_kept} items{dropped}: not fitted"
    if n_classes < 2:
        return f"control task labels collapsed to one class over {n_types} types{dropped}: not fitted"
    if n_recurring == 0:
        return (
            f"control task: each of the {n_types} types occurs once (one type per item), so the control "
            f"is chance for any representation{dropped}: not fitted; pass recurring control_types"
        )
    return None


def control_task(y: Int[np.ndarray, " n"], types: Sequence[Any], n_classes: int, seed: int) -> ControlTask:
    """Hewitt–Liang control task: each distinct type gets one label drawn from ``y``'s marginals.

    A type is a recurring unit of the input (a word type); every item of the type gets the
    type's label, so a probe scores above chance on held-out items only by having memorised
    which type an activation came from. Items whose type is ``None`` (no answer word) are
    dropped and counted rather than merged into one big "None" type.
    """
    if len(types) != len(y):
        raise DataError(f"control types has {len(types)} entries but there are {len(y)} labels")
    keys = [type_key(t) for t in types]
    keep = np.array([k is not None for k in keys], dtype=bool)
    counts = Counter(k for k in keys if k is not None)
    uniq = sorted(counts)
    rng = np.random.default_rng([seed, 2])
    marg = np.bincount(y, minlength=n_classes) / len(y)
    draw = dict(zip(uniq, rng.choice(n_classes, size=len(uniq), p=marg), strict=True)) if uniq else {}
    labels = np.array([draw[k] if k is not None else -1 for k in keys], dtype=np.int64)
    n_recurring = int(sum(c for c in counts.values() if c >= 2))
    n_cls = len(set(labels[keep].tolist()))
    n_missing = int((~keep).sum())
    warning = _control_warning(int(keep.sum()), len(uniq), n_recurring, n_cls, n_missing)
    return ControlTask(labels, keep, len(uniq), n_missing, n_recurring, n_cls, warning)


def control_task_labels(
    y: Int[np.ndarray, " n"], types: Sequence[Any], n_classes: int, seed: int
) -> Int[np.ndarray, " n"]:
    """The labels of :func:`control_task`; every item must have a type (else a DataError)."""
    ct = control_task(y, types, n_classes, seed)
    if ct.n_missing:
        raise DataError(f"{ct.n_missing} of {len(y)} control types are missing (None); use control_task()")
    return ct.labels


def default_control_types(groups: Sequence[Any] | None) -> list[str | None] | None:
    """Default Hewitt–Liang types: the last word of each item's group (its last input word).

    A group is the normalised item string, one per item; its last word recurs across items
    (the last animal of the list), which a type must. ``None`` without groups.
    """
    if groups is None:
        return None
    words = [str(g).split() if type_key(g) is not None else [] for g in groups]
    return [w[-1] if w else None for w in words]


def random_projection(x: Float[Tensor, "layer n d"], rank: int, seed: int) -> Float[Tensor, "layer n rank"]:
    """Project onto a seeded random orthonormal ``rank``-dim subspace (the same for every layer)."""
    g = torch.Generator().manual_seed(seed + 3)
    q, _ = torch.linalg.qr(torch.randn(x.shape[-1], rank, generator=g, dtype=torch.float64))
    return x @ q.to(x)


def majority_oof(y: Int[np.ndarray, " n"], fold: Int[np.ndarray, " n"], n_classes: int) -> Int[np.ndarray, " n"]:
    """Out-of-fold predictions of the majority-class baseline: each fold's training majority."""
    pred = np.zeros_like(y)
    for f in np.unique(fold):
        counts = np.bincount(y[fold != f], minlength=n_classes)
        pred[fold == f] = int(np.argmax(counts))
    return pred
