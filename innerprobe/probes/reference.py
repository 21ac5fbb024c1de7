"""Reference paths: scikit-learn estimators looped over (layer, fold), for parity tests and benchmarks.

The batched fitters (:mod:`~innerprobe.probes.ridge`, :mod:`~innerprobe.probes.logistic`) claim
to solve exactly the problems scikit-learn solves: ``StandardScaler`` fitted on the training
fold (or, with ``standardise="all"``, on every item), then ``RidgeClassifier(alpha)`` or
``LogisticRegression(C)``. These functions run that
literally, one (layer, fold) at a time on the same folds, and return out-of-fold predictions in
the batched paths' layout, so tests and ``benchmarks/bench_probes.py`` can compare the two.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from innerprobe.core.errors import UnknownNameError
from innerprobe.probes.linear import STANDARDISE

__all__ = ["sklearn_logistic_oof", "sklearn_ridge_oof"]


def _scaler(arr: Float[np.ndarray, "n d"], train: np.ndarray, standardise: str) -> StandardScaler:
    """``StandardScaler`` fitted on the training rows (``"fold"``) or on every row (``"all"``)."""
    if standardise not in STANDARDISE:
        raise UnknownNameError("standardisation scope", standardise, STANDARDISE)
    return StandardScaler().fit(arr[train] if standardise == "fold" else arr)


def sklearn_logistic_oof(
    x: Float[Tensor, "n layer d"] | np.ndarray,
    y: Int[np.ndarray, " n"],
    fold: Int[np.ndarray, " n"],
    *,
    C: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
    standardise: str = "fold",
) -> Int[np.ndarray, "layer n"]:
    """Reference path: ``StandardScaler`` + ``LogisticRegression`` in a loop over (layer, fold)."""
    arr = x.double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    n, n_layer, _ = arr.shape
    out = np.zeros((n_layer, n), dtype=np.int64)
    for layer in range(n_layer):
        for f in np.unique(fold):
            tr, te = fold != f, fold == f
            scaler = _scaler(arr[:, layer], tr, standardise)
            clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
            clf.fit(scaler.transform(arr[tr, layer]), y[tr])
            out[layer, te] = clf.predict(scaler.transform(arr[te, layer]))
    return out


def sklearn_ridge_oof(
    x: Float[Tensor, "n layer d"] | np.ndarray,
    y: Int[np.ndarray, " n"],
    fold: Int[np.ndarray, " n"],
    *,
    alpha: float = 1.0,
    standardise: str = "fold",
) -> tuple[Int[np.ndarray, "layer n"], Float[np.ndarray, "layer n k"]]:
    """Reference path: ``StandardScaler`` + ``RidgeClassifier`` looped over (layer, fold).

    Returns out-of-fold (predictions, decision values); decision values have one column for
    two classes (scikit-learn's convention), else one per class.
    """
    arr = x.double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    n, n_layer, _ = arr.shape
    k = 1 if len(np.unique(y)) == 2 else len(np.unique(y))
    pred = np.zeros((n_layer, n), dtype=np.int64)
    dec = np.zeros((n_layer, n, k))
    for layer in range(n_layer):
        for f in np.unique(fold):
            tr, te = fold != f, fold == f
            scaler = _scaler(arr[:, layer], tr, standardise)
            clf = RidgeClassifier(alpha=alpha).fit(scaler.transform(arr[tr, layer]), y[tr])
            z = scaler.transform(arr[te, layer])
            pred[layer, te] = clf.predict(z)
            dec[layer, te] = clf.decision_function(z).reshape(int(te.sum()), k)
    return pred, dec
