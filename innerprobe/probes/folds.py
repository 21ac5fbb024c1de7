"""Cross-validation folds: grouped, stratified, seeded; and their training indicators.

Every probe accuracy is computed from *out-of-fold* predictions: the item is scored by a probe
that never saw it. :func:`make_folds` uses scikit-learn's ``StratifiedGroupKFold`` (shuffled
with the seed): each fold keeps roughly the label proportions of the whole set (stratified),
and items sharing a group (duplicate inputs, the same item string) never straddle folds
(grouped), so a probe cannot score a held-out item by having memorised its twin.

The fitters take the folds as a weight matrix from :func:`fold_weights`: row ``f`` is the 0/1
training indicator of fold ``f`` (every item not held out in ``f``), and one extra last row
trains on all items (the fit whose weights are reported as *directions*). Fitting all rows at
once is what lets every (layer, fold) problem share one batched solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from sklearn.model_selection import StratifiedGroupKFold
from torch import Tensor

from innerprobe.core.errors import DataError

__all__ = ["make_folds", "fold_weights"]


def make_folds(y: Int[np.ndarray, " n"], groups: Sequence[Any] | None, k: int, seed: int) -> Int[np.ndarray, " n"]:
    """Fold id (0..k-1) of every item: stratified by ``y``, grouped by ``groups``, seeded."""
    n = len(y)
    g = np.arange(n) if groups is None else np.asarray([str(x) for x in groups])
    if len(g) != n:
        raise DataError(f"groups has {len(g)} entries but there are {n} labels")
    n_groups = len(set(g.tolist()))
    if n_groups < k:
        raise DataError(f"{k}-fold CV needs >= {k} distinct groups, found {n_groups}")
    fold = np.full(n, -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, test) in enumerate(splitter.split(np.zeros(n), y, g)):
        fold[test] = f
    return fold


def fold_weights(fold: Int[np.ndarray, " n"], k: int) -> Float[Tensor, "fold_plus_one n"]:
    """Training-set indicator per fold; row ``k`` (the last) trains on all items."""
    f = torch.as_tensor(fold)
    w = torch.stack([(f != j) for j in range(k)] + [torch.ones_like(f, dtype=torch.bool)])
    return w.float()
