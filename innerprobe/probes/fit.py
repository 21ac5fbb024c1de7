"""Per-layer linear probes with controls, and object → hypothetical transfer.

A *probe* asks whether a label (the object-level answer word, its property value...) can be read
linearly off the residual stream at one layer. Three probe families, fitted at every layer
(the default sweep is ``ridge`` + ``mass_mean``, both closed-form; ``logistic`` is opt-in):

``ridge``
    scikit-learn's ``RidgeClassifier``: least squares onto one-vs-rest ±1 targets with an L2
    penalty ``alpha``, on train-fold standardised features; predict the argmax score. Closed form,
    so all layers and folds are solved exactly from per-layer sufficient statistics (one Gram
    matrix per layer, downdated per fold) with batched Cholesky solves — see :func:`fit_ridge`.
    It is the fast sweep; the reference is :func:`sklearn_ridge_oof`.
``logistic``
    Multinomial logistic regression with an L2 penalty, on features standardised with the
    *training fold's* mean and standard deviation. The objective is scikit-learn's:
    ``C · Σ_i CE(y_i, W x_i + b) + ½‖W‖²`` (the intercept is not penalised).
``mass_mean``
    Difference-in-means (Marks & Tegmark 2023). Each class c gets its mean ``μ_c``; an item goes
    to the nearest class mean, i.e. the argmax of ``w_c·x + b_c`` with ``w_c = μ_c − μ̄`` (``μ̄``
    the mean of class means) and ``b_c = −½‖μ_c‖²`` (the dropped ``x·μ̄`` is the same for every
    class). Distances are taken on train-fold standardised features by default (massive residual
    dimensions would otherwise dominate them); the saved directions are the raw ``μ_c − μ̄``, for
    two classes the classic ``θ = μ+ − μ−``.

**Logistic fast path.** All layers *and* all folds are fitted at once: the weights are one tensor
``[layer, fold, d, C]`` and full-batch L-BFGS minimises the sum of the (separable) per-problem
objectives, each divided by its training-set size so that every problem has the same scale. The
train-fold standardisation is folded into the weights (``W/σ`` and ``b − (μ/σ)·W``), so the
activations are never copied per fold. The **reference path**
(:func:`sklearn_logistic_oof`) runs ``StandardScaler`` + ``LogisticRegression`` in a Python
loop over (layer, fold) on the same folds; tests check the two agree.

**Cross-validation.** Grouped, stratified k-fold (``StratifiedGroupKFold``, shuffled with the
seed): items sharing a group (duplicate inputs) never straddle folds. Every accuracy is computed
from out-of-fold predictions, with a Wilson CI over items.

**Best layer.** The max over layers of noisy accuracies is biased upwards (with 30 pure-noise
layers it sits ~2 standard errors above chance). :func:`best_layers` on a :class:`ProbeResult`
selects the layer on one random half of the items (whole groups) and reports its accuracy on the
other half, with a ``selection`` column saying so; the naive max is kept beside it.

**Controls** (each fitted with the same probe, hyper-parameters and folds):

* ``shuffled`` — the labels permuted with the seed: what the probe gets from nothing.
* ``control_task`` — Hewitt & Liang (2019): every *type* gets one fixed random label drawn from the
  task's label marginals, so the control has recurring structure a probe can only fit by
  memorising types. Types must *recur*: with one type per item the held-out control is chance for
  any representation and ``selectivity`` degenerates into ``accuracy − chance``. Default types:
  the last word of each item's group (the last input word); :func:`probe_store` uses the answer
  word for property targets. Items without a type (``None``) are dropped from the control and
  counted, never pooled into one "None" type; a control with < 2 types, < 2 classes or no
  recurring type is not fitted: its columns are NaN and ``ProbeResult.warnings`` says why.
  ``selectivity = task acc − control-task acc`` on the control's items, with a paired-bootstrap CI.
* ``random_proj`` — the activations projected onto a random orthonormal subspace whose rank equals
  the probe's (``C − 1``; for a binary target this is the random-direction probe), then probed with
  task labels: how much a *random* low-rank readout already decodes.
* ``majority`` — always predicting the training fold's most common class.

**Transfer.** A probe trained on the O run (``("object", site, "o_last")``) is tested on an H run
(``("hypothetical", site, "h_last")``) and vice versa, rows aligned item by item. ``items ==
"held_out"`` trains on the training folds of the source run and tests on the held-out items of the
target run; ``items == "same"`` trains on all items of the source and tests on the same items in the
target run (same-item transfer, reported separately).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from safetensors.torch import save_file
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from innerprobe.core import stats
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.io import atomic_path, write_json

log = logging.getLogger(__name__)

__all__ = [
    "PROBES",
    "DEFAULT_PROBES",
    "ProbeConfig",
    "Labels",
    "LinearProbe",
    "ProbeResult",
    "encode_labels",
    "make_folds",
    "fold_weights",
    "fit_logistic",
    "fit_mass_mean",
    "fit_ridge",
    "sklearn_logistic_oof",
    "sklearn_ridge_oof",
    "heldout_predictions",
    "shuffled_labels",
    "control_task_labels",
    "ControlTask",
    "control_task",
    "default_control_types",
    "random_projection",
    "run_probes",
    "probe_store",
    "run_name",
    "plot_layer_curves",
    "best_layers",
]

PROBES: tuple[str, ...] = ("ridge", "logistic", "mass_mean")
DEFAULT_PROBES: tuple[str, ...] = ("ridge", "mass_mean")
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class ProbeConfig:
    """Knobs of a probe run (recorded in every artifact).

    ``probes`` defaults to the fast closed-form sweep (``ridge`` and ``mass_mean``); add
    ``"logistic"`` for the exact multinomial-logistic objective (L-BFGS: slow on CPU, meant for
    GPU or as a reference). ``ridge_alpha`` is scikit-learn's ``RidgeClassifier`` ``alpha`` on
    standardised features; ``ridge_mixed`` factors in float32 with float64 refinement.
    ``C`` is scikit-learn's inverse L2 strength on standardised features (logistic). ``min_count`` drops
    classes with fewer items (and reports how many); without it a class rarer than ``folds`` is
    an error. ``tol`` is scikit-learn's gradient tolerance. Transfer is computed between runs of
    different kinds (O ↔ H), never between two H positions.
    """

    folds: int = 5
    seed: int = 0
    C: float = 0.1
    max_iter: int = 200
    tol: float = 1e-4
    probes: tuple[str, ...] = DEFAULT_PROBES
    controls: bool = True
    min_count: int | None = None
    n_boot: int = 1000
    alpha: float = 0.05
    device: str = "cpu"
    mass_mean_standardise: bool = True
    ridge_alpha: float = 10.0
    ridge_mixed: bool = True

    def __post_init__(self) -> None:
        for p in self.probes:
            if p not in PROBES:
                raise UnknownNameError("probe", p, PROBES)
        if self.folds < 2:
            raise DataError(f"folds must be >= 2, got {self.folds}")
        if self.C <= 0:
            raise DataError(f"C must be > 0, got {self.C}")
        if self.ridge_alpha <= 0:
            raise DataError(f"ridge_alpha must be > 0, got {self.ridge_alpha}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- labels, folds


@dataclass(frozen=True)
class Labels:
    """Labels as class ids, after dropping rare classes.

    ``keep`` marks the items kept (a boolean mask over the input); ``ids`` and ``classes`` refer
    to the kept items only.
    """

    ids: np.ndarray
    classes: list[str]
    keep: np.ndarray
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


def _check_activations(x: Tensor, n: int, what: str) -> None:
    if x.ndim != 3:
        raise DataError(f"{what}: expected activations [n, layer, d], got shape {tuple(x.shape)}")
    if x.shape[0] != n:
        raise DataError(f"{what}: {x.shape[0]} activation rows but {n} labels; rows must align")
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten()
        raise DataError(
            f"{what}: {int(bad.sum())} NaN/inf activation values in {len(rows)} items "
            f"(first rows: {rows[:5].tolist()}); recapture or drop those items"
        )


# ----------------------------------------------------------------------------- probe fits


@dataclass
class LinearProbe:
    """Affine readouts in raw activation space, one per (layer, fold): ``logits = x W + b``."""

    W: Float[Tensor, "layer fold d n_class"]
    b: Float[Tensor, "layer fold n_class"]
    raw_directions: Float[Tensor, "layer fold n_class d"] | None = None

    def logits(self, x: Float[Tensor, "layer n d"]) -> Float[Tensor, "layer fold n n_class"]:
        return torch.einsum("lnd,lfdc->lfnc", x, self.W) + self.b[:, :, None, :]

    def directions(self) -> Float[Tensor, "layer n_class d"]:
        """Per-class weight vectors of the all-items fit (last fold row), centred over classes."""
        if self.raw_directions is not None:
            return self.raw_directions[:, -1].contiguous()
        w = self.W[:, -1]  # [layer, d, C]
        return (w - w.mean(-1, keepdim=True)).permute(0, 2, 1).contiguous()


def _standardise_stats(
    x: Float[Tensor, "layer n d"], w: Float[Tensor, "fold n"]
) -> tuple[Float[Tensor, "layer fold d"], Float[Tensor, "layer fold d"]]:
    """Weighted mean and population std per (layer, fold); zero std becomes 1 (as StandardScaler)."""
    cnt = w.sum(1)[None, :, None]
    mu = torch.einsum("fn,lnd->lfd", w, x) / cnt
    ex2 = torch.einsum("fn,lnd->lfd", w, x * x) / cnt
    var = (ex2 - mu * mu).clamp_min(0)
    sd = var.sqrt()
    sd = torch.where(sd < 1e-7 * (mu.abs() + 1), torch.ones_like(sd), sd)
    return mu, sd


def _lbfgs_logistic(
    x: Float[Tensor, "layer n d"],
    onehot: Float[Tensor, "n n_class"],
    w: Float[Tensor, "fold n"],
    sd: Float[Tensor, "layer fold d"],
    shift: Float[Tensor, "layer fold d"],
    V0: Float[Tensor, "layer fold d n_class"],
    b0: Float[Tensor, "layer fold n_class"],
    C: float,
    max_iter: int,
    tol: float,
) -> tuple[Tensor, Tensor, int]:
    """Minimise the summed, per-problem-normalised objective from (V0, b0); returns (V, b, evals)."""
    n_f = w.sum(1)
    # Two classes: scikit-learn fits one vector u with penalty ½‖u‖²; the symmetric optimum here
    # has v1 = −v0 = u/2, so the penalty ‖v0‖² + ‖v1‖² (not half of it) gives the same solution.
    pen_scale = 1.0 if onehot.shape[-1] == 2 else 0.5
    V = V0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [V, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=tol, tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        W = V / sd[..., None]
        bias = b - torch.einsum("lfd,lfdc->lfc", shift, V)
        logits = torch.einsum("lnd,lfdc->lfnc", x, W) + bias[:, :, None, :]
        ce = torch.logsumexp(logits, -1) - (logits * onehot).sum(-1)  # [l, f, n]
        data = (ce * w).sum(-1) * C
        pen = pen_scale * (V * V).sum((-1, -2))
        loss = ((data + pen) / n_f).sum()
        loss.backward()
        return loss

    opt.step(closure)
    evals = int(opt.state[opt._params[0]].get("func_evals", 0))
    return V.detach(), b.detach(), evals


def fit_logistic(
    x: Float[Tensor, "layer n d"],
    y: Int[Tensor, " n"],
    w: Float[Tensor, "fold n"],
    n_classes: int,
    *,
    C: float = 0.1,
    max_iter: int = 200,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
    warm_start: bool = False,
) -> LinearProbe:
    """Multinomial L2 logistic regression for every (layer, fold) at once (full-batch L-BFGS).

    Problem (l, f) minimises ``(1/n_f)[C Σ_i w_fi CE_i + ½‖V‖²]`` over standardised features,
    with ``V`` the weights in standardised units (for two classes ``‖V‖²``, which matches
    scikit-learn's binomial objective); the returned weights are in raw units. The
    train-fold mean and std are computed in double precision; the optimisation runs in ``dtype``.
    L-BFGS stops after ``max_iter`` iterations or when the largest gradient entry of every problem
    is below ``tol`` in scikit-learn's scaling (its loss is this one divided by ``C``), so ``tol``
    means what it means for ``LogisticRegression``.

    With ``warm_start`` the problem on all items (weights ``max`` over folds) is solved first,
    one problem per layer, and every fold starts from its solution. The folds then need fewer
    iterations, but on CPU the first phase costs about what it saves (measured), so it is off.
    """
    x = x.double()
    w = w.to(x)
    n_layer, _, d = x.shape
    n_fold = w.shape[0]
    full = w.max(0, keepdim=True).values
    mu, sd = _standardise_stats(x, torch.cat([w, full]))
    # centre each layer once (removes the large mean of "massive" dims before float32 maths)
    centre = mu[:, -1:]
    x, mu = (x - centre).to(dtype), (mu - centre).to(dtype)
    sd, w, full = sd.to(dtype), w.to(dtype), full.to(dtype)
    shift = mu / sd  # standardised x = x/sd - shift; folded into the weights below
    onehot = torch.nn.functional.one_hot(y.to(x.device), n_classes).to(x)
    V = torch.zeros(n_layer, n_fold, d, n_classes, dtype=dtype, device=x.device)
    b = torch.zeros(n_layer, n_fold, n_classes, dtype=dtype, device=x.device)
    if warm_start and n_fold > 1:
        V1, b1, _ = _lbfgs_logistic(
            x, onehot, full, sd[:, -1:], shift[:, -1:], V[:, :1], b[:, :1], C, max_iter, tol * C
        )
        V, b = V1.expand_as(V).contiguous(), b1.expand_as(b).contiguous()
    V, b, _ = _lbfgs_logistic(x, onehot, w, sd[:, :-1], shift[:, :-1], V, b, C, max_iter, tol * C)
    W = V / sd[:, :-1, :, None]
    b = b - torch.einsum("lfd,lfdc->lfc", (mu[:, :-1] + centre.to(dtype)) / sd[:, :-1], V)
    return LinearProbe(W.float(), b.float())


def fit_mass_mean(
    x: Float[Tensor, "layer n d"],
    y: Int[Tensor, " n"],
    w: Float[Tensor, "fold n"],
    n_classes: int,
    *,
    standardise: bool = True,
) -> LinearProbe:
    """Nearest-class-mean classifier per (layer, fold), as ``w_c·x + b_c`` with ``w_c ∝ μ_c − μ̄``.

    ``argmin_c ‖x − μ_c‖² = argmax_c x·μ_c − ½‖μ_c‖²``; subtracting the class-independent
    ``x·μ̄`` changes no prediction and makes ``w_c = μ_c − μ̄`` the weight vectors. With
    ``standardise`` the distances are taken on train-fold standardised features (a diagonal
    version of Marks & Tegmark's whitened "IID" variant), so a few massive, high-variance
    residual dimensions do not swamp the class signal; the returned *directions* are always the
    raw ``μ_c − μ̄`` (for two classes ``θ = μ+ − μ−``).
    """
    x = x.double()
    w = w.to(x)
    onehot = torch.nn.functional.one_hot(y.to(x.device), n_classes).to(x)  # [n, C]
    cw = w[:, :, None] * onehot[None]  # [f, n, C]
    counts = cw.sum(1).clamp_min(1)  # [f, C]
    means = torch.einsum("fnc,lnd->lfcd", cw, x) / counts[None, :, :, None]  # [l, f, C, d]
    raw_dirs = means - means.mean(2, keepdim=True)
    if standardise:
        mu, sd = _standardise_stats(x, w)
    else:
        mu, sd = torch.zeros_like(means[:, :, 0]), torch.ones_like(means[:, :, 0])
    m = (means - mu[:, :, None]) / sd[:, :, None]  # class means in standardised units
    mc = m - m.mean(2, keepdim=True)
    W = (mc / sd[:, :, None]).transpose(-1, -2)  # [l, f, d, C]
    b = -0.5 * (m * m).sum(-1) - torch.einsum("lfd,lfcd->lfc", mu / sd, mc)
    return LinearProbe(W.float(), b.float(), raw_dirs.float())


def _ridge_targets(y: Int[Tensor, " n"], n_classes: int, dtype: torch.dtype) -> Float[Tensor, "n k"]:
    """scikit-learn's ``RidgeClassifier`` targets: one ±1 column per class, or one column for two."""
    onehot = torch.nn.functional.one_hot(y, n_classes).to(dtype)
    t = 2 * onehot - 1
    return t[:, 1:] if n_classes == 2 else t


def _ridge_cost(n: int, d: int, n_train: Sequence[int]) -> tuple[float, float]:
    """Flop estimates per layer of the primal (shared Gram, downdated) and dual (kernel) solves."""
    primal = 4.0 * n * d * d + len(n_train) * d**3 / 3
    dual = sum(2.0 * m * m * d + m**3 / 3 for m in n_train)
    return primal, dual


def _refined_solve(
    system: Float[Tensor, "*batch m m"],
    matvec: Callable[[Tensor], Tensor],
    rhs: Float[Tensor, "*batch m k"],
    mixed: bool,
    max_refine: int = 10,
    rtol: float = 1e-5,
) -> Float[Tensor, "*batch m k"]:
    """Solve SPD ``system · u = rhs`` (float64 answer), batched.

    With ``mixed`` the Cholesky factor is computed in float32 (about twice as fast on CPU) and the
    answer is polished by iterative refinement: residuals ``rhs − A u`` are taken in float64 with
    the exact operator ``matvec`` (thin products, no float64 matrix needed), each correction
    solved with the float32 factor, until a correction is below ``rtol`` of the answer (each
    step shrinks the error by ~cond·1e-7; typically two steps, leaving ~1e-10 relative error).
    If the float32 factorisation fails or refinement stalls
    (very ill-conditioned systems), it falls back to a float64 factorisation.
    """
    if mixed:
        chol, info = torch.linalg.cholesky_ex(system.float())
        if not bool((info != 0).any()):
            u = _chol_solve(chol, rhs.float()).double()
            for _ in range(max_refine):
                delta = _chol_solve(chol, (rhs - matvec(u)).float()).double()
                u = u + delta
                # the error left is about (convergence factor) × |delta|: stop once that is negligible
                if float(delta.abs().amax()) <= rtol * float(u.abs().amax()):
                    return u
            log.debug("fit_ridge: mixed-precision refinement stalled; refactoring in float64")
    return _chol_solve(torch.linalg.cholesky(system.double()), rhs)


def _chol_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """``(L Lᵀ)⁻¹ rhs`` by two triangular solves (faster than ``torch.cholesky_solve`` on CPU)."""
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True)


def fit_ridge(
    x: Float[Tensor, "layer n d"],
    y: Int[Tensor, " n"],
    w: Float[Tensor, "fold n"],
    n_classes: int,
    *,
    alpha: float = 1.0,
    solver: str = "auto",
    mixed: bool = True,
) -> LinearProbe:
    """Ridge (least-squares) classifier for every (layer, fold) at once, in closed form.

    This is scikit-learn's ``RidgeClassifier(alpha)`` on ``StandardScaler``-ed training folds:
    targets ``t_ic = +1`` if item ``i`` is in class ``c`` else ``−1`` (one column for two
    classes), an unpenalised intercept, and per (layer, fold) the weights minimising
    ``Σ_train ‖t_i − z_i V − b‖² + α‖V‖²`` with ``z = (x − μ_f)/σ_f`` standardised by the training
    fold. The prediction is the argmax of the scores (for two classes, the sign).

    **Primal form (shared work).** Write ``S_f = Σ_train (x−μ_f)(x−μ_f)ᵀ`` (the fold's scatter
    matrix) and ``D_f = diag(σ_f)``. Substituting ``z = D_f⁻¹(x−μ_f)`` shows that the weights in
    *raw* units, ``W = D_f⁻¹V``, solve ``(S_f + α D_f²) W = Σ_train (x−μ_f) t_iᵀ``: the
    standardisation is just a per-feature penalty ``α σ_j²``, and the centring comes from sums.
    So each layer needs one Gram matrix ``XᵀX``, ``XᵀT`` and ``Σx`` over *all* items; a fold's
    training statistics are those minus the held-out items' contribution (downdating, costing
    ``n_heldout·d²``), and all ``layer × fold`` systems are solved by one batched Cholesky.
    **Dual form.** When ``n_train < d`` the ``n_train × n_train`` kernel system
    ``(Z Zᵀ + αI) A = T_c``, ``V = Zᵀ A`` can be cheaper, but needs each fold's own kernel;
    ``solver="auto"`` picks whichever needs fewer flops (both give the same solution).

    **Precision.** Answers are float64-accurate. With ``mixed`` (default) matrices are formed and
    factored in float32 and the solution is refined with float64 residuals (see
    :func:`_refined_solve`); ``mixed=False`` does everything in float64.

    ``w`` holds 0/1 training indicators (rows of :func:`fold_weights`). The returned probe's
    weights are float64; for two classes column 0 is zero and column 1 holds the score.
    """
    if solver not in ("auto", "primal", "dual"):
        raise UnknownNameError("ridge solver", solver, ("auto", "primal", "dual"))
    if alpha <= 0:
        raise DataError(f"ridge alpha must be > 0, got {alpha}")
    x = x.double()
    w = w.to(x)
    if not bool(((w == 0) | (w == 1)).all()):
        raise DataError("fit_ridge needs 0/1 training indicators in w (rows of fold_weights)")
    n_layer, n, d = x.shape
    n_fold = w.shape[0]
    centre = x.mean(1, keepdim=True)  # [l, 1, d]
    x = x - centre  # centre each layer once: no cancellation in XᵀX below
    xm = x.float() if mixed else x  # the precision the matrices are formed and factored in
    t = _ridge_targets(y.to(x.device), n_classes, x.dtype)  # [n, k]
    train = [torch.nonzero(w[f] > 0).flatten() for f in range(n_fold)]
    n_tr = [len(i) for i in train]
    if min(n_tr) < 2:
        raise DataError(f"fit_ridge: a fold has {min(n_tr)} training items; need >= 2")
    if solver == "auto":
        primal, dual = _ridge_cost(n, d, n_tr)
        solver = "primal" if primal <= dual else "dual"
    mu, sd = _standardise_stats(x, w)  # [l, f, d] each
    cnt = w.sum(1)  # [f]
    t_mean = (w @ t) / cnt[:, None]  # [f, k]
    if solver == "primal":
        # everything fold-major ([fold, layer, ...]) so that each fold's block is contiguous
        gram = xm.transpose(1, 2) @ xm  # [l, d, d], once per layer
        m = torch.empty(n_fold, n_layer, d, d, dtype=xm.dtype, device=x.device)
        mu_f, s2 = mu.transpose(0, 1), (sd**2).transpose(0, 1)  # [f, l, d]
        for f in range(n_fold):
            held = torch.nonzero(w[f] == 0).flatten()
            xh = xm[:, held]
            mf = mu_f[f].to(xm)
            # downdate, centre about the fold mean, add the standardisation-as-penalty diagonal
            torch.baddbmm(gram, xh.transpose(1, 2), xh, alpha=-1.0, out=m[f])
            m[f].baddbmm_(mf[:, :, None], mf[:, None, :], alpha=-float(cnt[f]))
            m[f].diagonal(dim1=-2, dim2=-1).add_(alpha * s2[f].to(xm))
        k = t.shape[1]
        wt = (w[:, :, None] * t[None]).permute(1, 0, 2).reshape(n, n_fold * k)  # [n, f·k]
        rhs = (x.transpose(1, 2) @ wt).view(n_layer, d, n_fold, k).permute(2, 0, 1, 3)
        rhs = rhs - cnt[:, None, None, None] * mu_f[..., None] * t_mean[:, None, None, :]  # [f, l, d, k]
        wk = w.T.repeat_interleave(k, dim=1)  # [n, f·k]: each fold's training mask per column

        def matvec(u: Tensor) -> Tensor:
            """``(S_f + α D_f²) u`` for every fold at once, reading ``x`` twice (float64)."""
            xu = x @ u.permute(1, 2, 0, 3).reshape(n_layer, d, n_fold * k)  # [l, n, f·k]
            back = (x.transpose(1, 2) @ (xu * wk)).view(n_layer, d, n_fold, k).permute(2, 0, 1, 3)
            centre_term = cnt[:, None, None, None] * mu_f[..., None] * (mu_f[:, :, None, :] @ u)
            return back - centre_term + alpha * s2[..., None] * u

        W = _refined_solve(m, matvec, rhs, mixed).transpose(0, 1)  # [l, f, d, k]
    else:
        W = torch.empty(n_layer, n_fold, d, t.shape[1], dtype=x.dtype, device=x.device)
        for f, idx in enumerate(train):
            z = (x[:, idx] - mu[:, f, None]) / sd[:, f, None]  # [l, m, d]
            zm = z.float() if mixed else z
            kern = zm @ zm.transpose(1, 2)
            kern.diagonal(dim1=-2, dim2=-1).add_(alpha)
            tc = (t[idx] - t_mean[f]).expand(n_layer, -1, -1)

            def matvec(a: Tensor, z: Tensor = z) -> Tensor:
                return z @ (z.transpose(1, 2) @ a) + alpha * a

            a = _refined_solve(kern, matvec, tc, mixed)
            W[:, f] = (z.transpose(1, 2) @ a) / sd[:, f, :, None]
    # scores on raw x: (x − centre − μ_f)·W + t̄_f, so the centring moves into the bias
    b = t_mean[None] - torch.einsum("lfd,lfdk->lfk", mu + centre, W)
    return _ridge_probe(W, b, n_classes)


def _ridge_probe(W: Tensor, b: Tensor, n_classes: int) -> LinearProbe:
    if n_classes == 2:
        W = torch.cat([torch.zeros_like(W), W], -1)
        b = torch.cat([torch.zeros_like(b), b], -1)
    return LinearProbe(W, b)


def heldout_predictions(
    probe: LinearProbe, x: Float[Tensor, "layer n d"], fold: Int[np.ndarray, " n"]
) -> tuple[Int[Tensor, "layer n"], Int[Tensor, "layer n"]]:
    """(out-of-fold predictions from each item's own held-out fold, predictions of the all-items fit)."""
    logits = probe.logits(x.to(probe.W))  # [l, F+1, n, C]
    pred = logits.argmax(-1)
    f = torch.as_tensor(fold, device=pred.device)
    oof = pred.gather(1, f[None, None, :].expand(pred.shape[0], 1, -1)).squeeze(1)
    return oof, pred[:, -1]


def sklearn_logistic_oof(
    x: Float[Tensor, "n layer d"] | np.ndarray,
    y: Int[np.ndarray, " n"],
    fold: Int[np.ndarray, " n"],
    *,
    C: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> Int[np.ndarray, "layer n"]:
    """Reference path: ``StandardScaler`` + ``LogisticRegression`` in a loop over (layer, fold)."""

    arr = x.double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    n, n_layer, _ = arr.shape
    out = np.zeros((n_layer, n), dtype=np.int64)
    for layer in range(n_layer):
        for f in np.unique(fold):
            tr, te = fold != f, fold == f
            scaler = StandardScaler().fit(arr[tr, layer])
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
            scaler = StandardScaler().fit(arr[tr, layer])
            clf = RidgeClassifier(alpha=alpha).fit(scaler.transform(arr[tr, layer]), y[tr])
            z = scaler.transform(arr[te, layer])
            pred[layer, te] = clf.predict(z)
            dec[layer, te] = clf.decision_function(z).reshape(int(te.sum()), k)
    return pred, dec


# ------------------------------------------------------------------------------- controls


def shuffled_labels(y: Int[np.ndarray, " n"], seed: int) -> Int[np.ndarray, " n"]:
    """The labels permuted across items (seeded): destroys any item–label relation."""
    return np.random.default_rng([seed, 1]).permutation(y)


def _type_key(t: Any) -> str | None:
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
    keep: np.ndarray
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
    keys = [_type_key(t) for t in types]
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
    words = [str(g).split() if _type_key(g) is not None else [] for g in groups]
    return [w[-1] if w else None for w in words]


def random_projection(x: Float[Tensor, "layer n d"], rank: int, seed: int) -> Float[Tensor, "layer n rank"]:
    """Project onto a seeded random orthonormal ``rank``-dim subspace (the same for every layer)."""
    g = torch.Generator().manual_seed(seed + 3)
    q, _ = torch.linalg.qr(torch.randn(x.shape[-1], rank, generator=g, dtype=torch.float64))
    return x @ q.to(x)


def _majority_oof(y: np.ndarray, fold: np.ndarray, n_classes: int) -> np.ndarray:
    pred = np.zeros_like(y)
    for f in np.unique(fold):
        counts = np.bincount(y[fold != f], minlength=n_classes)
        pred[fold == f] = int(np.argmax(counts))
    return pred


# -------------------------------------------------------------------------------- running


def run_name(run: str, position: str) -> str:
    """Short run label: ``"O"`` for the object run at ``o_last``, else ``"O:pos"`` / ``"H:pos"``."""
    kind = {"object": "O", "hypothetical": "H"}.get(run, run)
    return "O" if (kind == "O" and position == "o_last") else f"{kind}:{position}"


def _kind(name: str) -> str:
    return name.split(":")[0]


@dataclass
class ProbeResult:
    """Probe accuracies per (layer, probe, split) beside their controls, plus fitted directions.

    ``table`` is tidy (see :meth:`to_dataframe`); ``directions[(probe, run)]`` is a
    ``[layer, n_class, d_model]`` tensor of per-class weight vectors (all-items fit, raw units).
    """

    target: str
    classes: list[str]
    layers: list[int]
    runs: list[str]
    table: pd.DataFrame
    directions: dict[tuple[str, str], Tensor]
    n_items: int
    n_dropped: int
    dropped_classes: dict[str, int]
    config: ProbeConfig
    control: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    correct: dict[tuple[str, str, str, str], np.ndarray] = field(default_factory=dict, repr=False)
    """Per-item out-of-fold correctness ``[layer, n]`` of the task probe, keyed by
    ``(probe, train_run, test_run, items)``: what :func:`best_layers` selects on."""
    groups: list[Any] | None = field(default=None, repr=False)

    def to_dataframe(self) -> pd.DataFrame:
        """Columns: layer, probe, target, split, train_run, test_run, items, metric, value,
        ci_low, ci_high, n, and the controls (majority, shuffled, control_task(+CI),
        random_proj, selectivity(+CI), control_n: the items the control was fitted and scored on)."""
        return self.table.copy()

    def save_directions(self, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
        """Directions as safetensors (keys ``"{probe}/{run}"``) with a JSON sidecar of provenance."""


        path = Path(path)
        tensors = {f"{p}/{r}": t.contiguous().float() for (p, r), t in self.directions.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"target": self.target})
        write_json(
            path.with_suffix(".json"),
            {
                "target": self.target,
                "classes": self.classes,
                "layers": self.layers,
                "keys": sorted(tensors),
                "shape": "[layer, n_class, d_model]; rows are w_c (centred over classes), raw activation units",
                "config": self.config.to_dict(),
                "n_items": self.n_items,
                "dropped_classes": self.dropped_classes,
                "provenance": dict(provenance or {}),
            },
        )
        return path


def _boot(correct: np.ndarray, cfg: ProbeConfig) -> stats.Estimate:
    return stats.accuracy(correct, n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed)


def run_probes(
    runs: Mapping[str, Float[Tensor, "n layer d"]],
    y: Sequence[Any],
    groups: Sequence[Any] | None = None,
    *,
    control_types: Sequence[Any] | None = None,
    layers: Sequence[int] | None = None,
    target: str = "label",
    config: ProbeConfig = ProbeConfig(),
    progress: Progress | None = None,
) -> ProbeResult:
    """Probe every run at every layer, with controls, and transfer between O and H runs.

    ``runs`` maps a run name (``"O"``, ``"H:h_last"``, ...; the part before ``:`` is its kind) to
    activations ``[n, layer, d]`` whose rows are the same items in the same order. ``groups`` keep
    duplicates in one fold; ``control_types`` are the Hewitt–Liang types (default:
    :func:`default_control_types` of ``groups``; ``None`` entries are dropped from the control).
    """
    if not runs:
        raise DataError("run_probes: no activation runs given")
    n_in = len(y)
    for name, x in runs.items():
        _check_activations(x, n_in, f"run {name!r}")
    if groups is not None and len(groups) != n_in:
        raise DataError(f"groups has {len(groups)} entries but there are {n_in} labels")
    if control_types is not None and len(control_types) != n_in:
        raise DataError(f"control_types has {len(control_types)} entries but there are {n_in} labels")
    shapes = {tuple(x.shape[1:]) for x in runs.values()}
    if len(shapes) != 1:
        raise DataError(f"runs differ in [layer, d] shape: {sorted(shapes)}")
    n_layer = next(iter(shapes))[0]
    layers = list(range(n_layer)) if layers is None else list(layers)
    if len(layers) != n_layer:
        raise DataError(f"{len(layers)} layer numbers for {n_layer} layers of activations")

    labels = encode_labels(y, folds=config.folds, min_count=config.min_count)
    keep = labels.keep
    ids = labels.ids
    n_cls = len(labels.classes)
    grp = None if groups is None else [g for g, k in zip(groups, keep, strict=True) if k]
    types = default_control_types(grp) if control_types is None else [t for t, k in zip(control_types, keep, strict=True) if k]
    fold = make_folds(ids, grp, config.folds, config.seed)
    w = fold_weights(fold, config.folds)
    dev = torch.device(config.device)
    xs = {name: x[torch.as_tensor(keep)].permute(1, 0, 2).contiguous().to(dev) for name, x in runs.items()}

    label_sets: dict[str, np.ndarray] = {"task": ids}
    warnings: list[str] = []
    ctrl: ControlTask | None = None
    if config.controls:
        label_sets["shuffled"] = shuffled_labels(ids, config.seed)
        ctrl, warning = _control_for(ids, types, n_cls, config.seed)
        if warning:
            log.warning("%s", warning)
            warnings.append(warning)
        if ctrl is not None and ctrl.warning is None:
            label_sets["control_task"] = ctrl.labels
    names = list(xs)
    pairs = [(s, t) for s in names for t in names if s == t or _kind(s) != _kind(t)]
    n_fits = len(config.probes) * len(names) * (len(label_sets) + int(config.controls))
    advance = progress("fitting probes", n_fits) if progress else (lambda k: None)

    # correct[(probe, view, src, tgt, items)] -> bool [layer, n]
    correct: dict[tuple[str, str, str, str, str], np.ndarray] = {}
    directions: dict[tuple[str, str], Tensor] = {}
    w_dev = w.to(dev)
    views = list(label_sets) + (["random_proj"] if config.controls else [])
    everyone = np.ones(len(ids), dtype=bool)
    for probe in config.probes:
        for src in names:
            for view in views:
                # The control is fitted on the items with a type only (compact class ids).
                rows = ctrl.keep if view == "control_task" and ctrl is not None else everyone
                lab, n_view = _view_labels(label_sets.get(view, ids), rows, n_cls)
                fold_v = fold[rows]
                w_v = w_dev if rows is everyone else fold_weights(fold_v, config.folds).to(dev)
                sub = (lambda x: x) if rows is everyone else (lambda x, r=torch.as_tensor(rows, device=dev): x[:, r])
                y_t = torch.as_tensor(lab, device=dev)
                proj = (lambda x: random_projection(x, max(1, n_cls - 1), config.seed)) if view == "random_proj" else (lambda x: x)
                if probe == "logistic":
                    fitted = fit_logistic(proj(sub(xs[src])), y_t, w_v, n_view, C=config.C, max_iter=config.max_iter, tol=config.tol)
                elif probe == "ridge":
                    fitted = fit_ridge(proj(sub(xs[src])), y_t, w_v, n_view, alpha=config.ridge_alpha, mixed=config.ridge_mixed)
                else:
                    fitted = fit_mass_mean(proj(sub(xs[src])), y_t, w_v, n_view, standardise=config.mass_mean_standardise)
                if view == "task":
                    directions[(probe, src)] = fitted.directions().cpu()
                for s, tgt in pairs:
                    if s != src:
                        continue
                    oof, same = heldout_predictions(fitted, proj(sub(xs[tgt])), fold_v)
                    correct[(probe, view, src, tgt, "held_out")] = (oof.cpu().numpy() == lab[None])
                    if tgt != src:
                        correct[(probe, view, src, tgt, "same")] = (same.cpu().numpy() == lab[None])
                advance(1)

    majority = _majority_oof(ids, fold, n_cls) == ids
    ctrl_rows = ctrl.keep if ctrl is not None else None
    table = _tabulate(correct, majority, layers, target, config, progress, ctrl_rows)
    return ProbeResult(
        target=target, classes=labels.classes, layers=layers, runs=names, table=table,
        directions=directions, n_items=len(ids), n_dropped=labels.n_dropped,
        dropped_classes=labels.dropped_classes, config=config,
        control=ctrl.to_dict() if ctrl is not None else {}, warnings=warnings,
        correct={(k[0], k[2], k[3], k[4]): v for k, v in correct.items() if k[1] == "task"}, groups=grp,
    )


def _control_for(
    ids: np.ndarray, types: Sequence[Any] | None, n_cls: int, seed: int
) -> tuple[ControlTask | None, str | None]:
    """The control task of a run and the warning to record (None when it is usable)."""
    if types is None:
        return None, "control task not fitted: no control_types and no groups to take types from"
    ctrl = control_task(ids, types, n_cls, seed)
    return ctrl, ctrl.warning


def _view_labels(lab: np.ndarray, rows: np.ndarray, n_cls: int) -> tuple[np.ndarray, int]:
    """Labels of ``rows`` as compact class ids (a control may miss some classes) and their count."""
    sub = lab[rows]
    if len(sub) == len(lab) and sub.min(initial=0) >= 0:
        return sub, n_cls
    uniq, compact = np.unique(sub, return_inverse=True)
    return compact.astype(np.int64), max(2, len(uniq))


def _split_name(src: str, tgt: str) -> str:
    return src if src == tgt else f"{src}→{tgt}"


def _tabulate(
    correct: dict[tuple[str, str, str, str, str], np.ndarray],
    majority: np.ndarray,
    layers: list[int],
    target: str,
    cfg: ProbeConfig,
    progress: Progress | None,
    ctrl_rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per (probe, split, items, layer). Control columns are NaN when the control task
    was not fitted; selectivity pairs task and control on the control's items."""
    keys = [k for k in correct if k[1] == "task"]
    advance = progress("bootstrap CIs", len(keys) * len(layers)) if progress else (lambda k: None)
    maj = float(majority.mean())
    rows = []
    for probe, _, src, tgt, items in keys:
        for li, layer in enumerate(layers):
            task = correct[(probe, "task", src, tgt, items)][li]
            est = _boot(task, cfg)
            row: dict[str, Any] = {
                "layer": layer, "probe": probe, "target": target, "split": _split_name(src, tgt),
                "train_run": src, "test_run": tgt, "items": items, "metric": "accuracy",
                "value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n,
                "majority": maj,
            }
            if cfg.controls:
                row.update(
                    shuffled=float(correct[(probe, "shuffled", src, tgt, items)][li].mean()),
                    random_proj=float(correct[(probe, "random_proj", src, tgt, items)][li].mean()),
                    **_control_columns(correct.get((probe, "control_task", src, tgt, items)), task, li, ctrl_rows, cfg),
                )
            rows.append(row)
            advance(1)
    return pd.DataFrame(rows)


def _control_columns(
    ctrl_correct: np.ndarray | None, task: np.ndarray, li: int, rows: np.ndarray | None, cfg: ProbeConfig
) -> dict[str, float]:
    """control_task (+Wilson CI), selectivity (+paired bootstrap CI) and the control's n."""
    names = ("control_task", "control_task_ci_low", "control_task_ci_high", "selectivity",
             "selectivity_ci_low", "selectivity_ci_high")
    if ctrl_correct is None or rows is None:
        return {**dict.fromkeys(names, float("nan")), "control_n": 0}
    ctrl = ctrl_correct[li]
    cest = _boot(ctrl, cfg)
    diff = stats.paired_bootstrap_diff(
        task[rows].astype(float), ctrl.astype(float), n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed
    )
    values = (cest.value, cest.ci_low, cest.ci_high, diff.diff.value, diff.diff.ci_low, diff.diff.ci_high)
    return {**dict(zip(names, values)), "control_n": int(ctrl.size)}


# ------------------------------------------------------------------------------ the store


def _default_control_types(rows: pd.DataFrame, target: str) -> list[Any] | None:
    """Hewitt–Liang types: the answer word for property targets, the last input word for answers.

    A missing answer word stays ``None`` (the row is dropped from the control, and counted).
    """
    if target != "object_answer" and "object_answer" in rows:
        return [_type_key(a) for a in rows["object_answer"].tolist()]
    if "group" in rows:
        return default_control_types(rows["group"].tolist())
    return None


def probe_store(
    store: Any,
    target: str,
    *,
    site: str = "resid_post",
    object_positions: Sequence[str] = ("o_last",),
    hypothetical_positions: Sequence[str] = ("h_last",),
    layers: Sequence[int] | None = None,
    config: ProbeConfig = ProbeConfig(),
    progress: Progress | None = None,
) -> ProbeResult:
    """Read runs from an activation store (``.rows``, ``.keys()``, ``.layers``, ``.read``) and probe.

    Only rows with ``object_compliant`` True are used when that column exists; rows whose target
    is missing are dropped too.
    """
    rows = store.rows.reset_index(drop=True)
    if target not in rows:
        label_cols = [c for c in rows.columns if c not in ("index", "id", "task", "group")]
        raise UnknownNameError("target", target, label_cols)
    mask = rows[target].notna().to_numpy().copy()
    if "object_compliant" in rows:
        mask &= rows["object_compliant"].fillna(False).astype(bool).to_numpy()
    if mask.sum() == 0:
        raise DataError(f"no rows with a {target!r} label (and object_compliant True) in the store")
    sub = rows[mask].reset_index(drop=True)
    available = set(map(tuple, store.keys()))
    wanted = [("object", site, p) for p in object_positions] + [("hypothetical", site, p) for p in hypothetical_positions]
    missing = [k for k in wanted if k not in available]
    if missing:
        raise DataError(f"store has no {missing}; available keys: {sorted(available)}")
    layer_list = list(store.layers) if layers is None else list(layers)
    idx = torch.as_tensor(np.nonzero(mask)[0])
    runs = {run_name(r, p): store.read(r, s, p, layers=layer_list)[idx] for r, s, p in wanted}
    return run_probes(
        runs, sub[target].tolist(), sub["group"].tolist() if "group" in sub else None,
        control_types=_default_control_types(sub, target), layers=layer_list, target=target,
        config=config, progress=progress,
    )


# ------------------------------------------------------------------------------- summaries


def best_layers(result: ProbeResult | pd.DataFrame) -> pd.DataFrame:
    """The best layer per (probe, split, items), with an honest accuracy and its controls.

    Given a :class:`ProbeResult`: the layer is selected on a random half of the items (split A,
    whole groups) and its accuracy, with a Wilson CI, is estimated on the other half (split B)
    by :func:`innerprobe.core.stats.select_and_estimate`; ``naive_layer`` / ``naive_value`` /
    ``naive_ci_*`` keep the usual max over layers on all items (biased upwards), and
    ``selection`` says which was done. The control columns (control task, selectivity,
    majority...) are those of the selected layer on all items.

    Given only the tidy DataFrame (no per-item data), the naive max, labelled so in
    ``selection``.
    """
    if isinstance(result, pd.DataFrame):
        return _naive_best(result)
    df = result.table
    rows = []
    for (probe, src, tgt, items), correct in result.correct.items():
        sel = stats.select_and_estimate(
            correct.T.astype(float), seed=result.config.seed, groups=result.groups,
            alpha=result.config.alpha, what="layer",
        )
        part = df[(df["probe"] == probe) & (df["train_run"] == src) & (df["test_run"] == tgt) & (df["items"] == items)]
        row = part[part["layer"] == result.layers[sel.index]].iloc[0].to_dict()
        row.update(
            value=sel.estimate.value, ci_low=sel.estimate.ci_low, ci_high=sel.estimate.ci_high, n=sel.estimate.n,
            naive_layer=result.layers[sel.naive_index], naive_value=sel.naive.value,
            naive_ci_low=sel.naive.ci_low, naive_ci_high=sel.naive.ci_high, naive_n=sel.naive.n,
            selection=sel.selection,
        )
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["probe", "items", "split"]).reset_index(drop=True)


def _naive_best(df: pd.DataFrame) -> pd.DataFrame:
    acc = df[df["metric"] == "accuracy"]
    idx = acc.groupby(["probe", "split", "items"])["value"].idxmax()
    best = acc.loc[idx].sort_values(["probe", "items", "split"]).reset_index(drop=True)
    n_layers = acc.groupby(["probe", "split", "items"])["layer"].nunique()
    best["selection"] = [
        f"naive max over {n_layers[(r.probe, r.split, r.items)]} layers on all n={r.n} items "
        "(optimistic: selected and estimated on the same items)"
        for r in best.itertuples()
    ]
    return best


def plot_layer_curves(df: pd.DataFrame, *, probe: str | None = None, items: str = "held_out") -> Any:
    """Accuracy by layer per split with CI bands, beside the control task, shuffled and majority lines."""

    acc = df[(df["metric"] == "accuracy") & (df["items"] == items)]
    probe = probe or str(acc["probe"].iloc[0])
    acc = acc[acc["probe"] == probe]
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (split, part) in enumerate(acc.groupby("split", sort=False)):
        part = part.sort_values("layer")
        color = palette[i % len(palette)]
        band_x = list(part["layer"]) + list(part["layer"])[::-1]
        fig.add_trace(go.Scatter(
            x=band_x, y=list(part["ci_high"]) + list(part["ci_low"])[::-1], fill="toself",
            fillcolor=color, opacity=0.2, line={"width": 0}, showlegend=False, hoverinfo="skip",
        ))
        fig.add_trace(go.Scatter(x=part["layer"], y=part["value"], name=f"{split} (task)", line={"color": color}))
        if "control_task" in part:
            fig.add_trace(go.Scatter(
                x=part["layer"], y=part["control_task"], name=f"{split} (control task)",
                line={"color": color, "dash": "dot"},
            ))
    if "shuffled" in acc and len(acc):
        first = acc[acc["split"] == acc["split"].iloc[0]].sort_values("layer")
        fig.add_trace(go.Scatter(x=first["layer"], y=first["shuffled"], name="shuffled labels", line={"color": "grey", "dash": "dash"}))
        fig.add_trace(go.Scatter(x=first["layer"], y=first["majority"], name="majority class", line={"color": "black", "dash": "dash"}))
    target = acc["target"].iloc[0] if len(acc) else ""
    fig.update_layout(
        title=f"{probe} probe · {target} · {items} items", xaxis_title="layer", yaxis_title="accuracy",
        yaxis_range=[0, 1.02], template="plotly_white",
    )
    return fig


# ------------------------------------------------------------------------- synthetic data


def synthetic_activations(
    n: int = 400,
    n_layers: int = 6,
    d: int = 64,
    n_classes: int = 4,
    *,
    signal: Sequence[float] | None = None,
    seed: int = 0,
    outlier_dims: int = 2,
) -> tuple[Float[Tensor, "n layer d"], np.ndarray, Float[Tensor, "n_class d"]]:
    """Activations shaped like a real residual stream, for tests and benchmarks.

    Anisotropic noise (a power-law spectrum, as residual streams have), a few "massive"
    dimensions with a large mean and variance, and a class signal along ``n_classes`` random
    unit directions whose strength rises and falls over layers (``signal`` per layer). Returns
    ``(x, y, class_directions)`` with ``y`` string labels ``"c0", "c1", ...``.
    """
    rng = np.random.default_rng(seed)
    sig = np.asarray(signal if signal is not None else 2.0 * np.sin(np.linspace(0.2, 3.0, n_layers)), dtype=float)
    y = rng.integers(0, n_classes, size=n)
    dirs = rng.standard_normal((n_classes, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    scales = 1.0 / np.sqrt(np.arange(1, d + 1)) * 3
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = np.empty((n, n_layers, d))
    for layer in range(n_layers):
        noise = (rng.standard_normal((n, d)) * scales) @ basis.T
        x[:, layer] = noise + sig[layer] * dirs[y]
        x[:, layer, :outlier_dims] += 50.0 + 5.0 * rng.standard_normal((n, outlier_dims))
    labels = np.array([f"c{k}" for k in y])
    return torch.tensor(x, dtype=torch.float32), labels, torch.tensor(dirs, dtype=torch.float32)
