"""Ridge probes on all-items-standardised features: one kernel per layer shared by every fold.

When the standardisation statistics come from all items (``standardise="all"``, label-free),
every fold sees the same features ``z = (x − x̄)/σ`` and differs only in which items train it.
In the dual (kernel) form of ridge that is a *sub-matrix*: with ``K = Z Zᵀ`` over all ``n``
items, fold ``f``'s system is ``(C K_TT C + αI) A = T_c`` on its training rows ``T``, where
``C = I − 11ᵀ/m`` centres them (the unpenalised intercept) and ``T_c`` are the fold-centred ±1
targets. So one ``n × n`` kernel per layer (``n²d`` flops) replaces a ``d × d`` scatter matrix
and factorisation per fold, and each fold factors an ``m × m`` block (``m³/3``, cheaper than
``d³/3`` whenever ``m < d``). The weights are ``V = Z_Tᵀ A`` (``A``'s columns sum to zero, so the
centring of ``Z_T`` drops out), ``W = V/σ`` in raw units, and the intercept
``b = t̄_f − μ_f·W`` with ``μ_f`` the training mean.

Precision follows :func:`~innerprobe.probes.ridge.fit_ridge`: with ``mixed`` the kernel and its
blocks' factors are float32 and the answers are refined in float64 against the exact operator,
applied to all folds at once through two products with ``Z``
(:func:`~innerprobe.probes.ridge_algebra.refine`); if refinement stalls, a float64 kernel is
formed and factored. The result equals the primal solve with the same standardisation and
scikit-learn's ``StandardScaler().fit(all items)`` + ``RidgeClassifier(alpha)`` per fold
(:func:`~innerprobe.probes.reference.sklearn_ridge_oof` with ``standardise="all"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.probes.linear import LinearProbe, unit_if_constant
from innerprobe.probes.ridge_algebra import chol_solve, refine, ridge_probe, ridge_targets

__all__ = ["fit_ridge_kernel", "kernel_cost"]


def kernel_cost(n: int, d: int, n_train: list[int]) -> float:
    """Flops per layer of the shared-kernel solve: one ``n × n`` kernel, one factor per fold."""
    return 2.0 * n * n * d + sum(m**3 / 3 for m in n_train)


def _block(kern: Float[Tensor, "layer n n"], idx: Int[Tensor, " m"]) -> Float[Tensor, "layer m m"]:
    """``kern[:, idx][:, :, idx]`` as one flat gather (several times faster than two on CPU)."""
    n = kern.shape[-1]
    flat = (idx[:, None] * n + idx[None, :]).flatten()
    return kern.reshape(kern.shape[0], n * n).index_select(1, flat).view(kern.shape[0], len(idx), len(idx))


def _factors(
    kern: Float[Tensor, "layer n n"], train: list[Tensor], alpha: float
) -> list[Float[Tensor, "layer m m"]] | None:
    """Cholesky factors of each fold's centred kernel block plus ``αI`` (``None`` if one fails)."""
    out = []
    for idx in train:
        kt = _block(kern, idx)
        r = kt.mean(2, keepdim=True)
        kt.sub_(r).sub_(r.mT).add_(r.mean(1, keepdim=True))
        kt.diagonal(dim1=-2, dim2=-1).add_(alpha)
        chol, info = torch.linalg.cholesky_ex(kt)
        if bool((info != 0).any()):
            return None
        out.append(chol)
    return out


def _standardised(
    x: Float[Tensor, "layer n d"], dtype: torch.dtype
) -> tuple[Float[Tensor, "layer n d"], Float[Tensor, "layer 1 d"], Float[Tensor, "layer 1 d"]]:
    """``(z, x̄, σ)``: features standardised over all items, in ``dtype`` (statistics returned
    as float64). A zero std becomes 1 (as ``StandardScaler``); ``z`` is built in place from one
    copy of ``x``, and centring first keeps the variance free of cancellation.
    """
    z = x.to(dtype, copy=True)
    centre = z.mean(1, keepdim=True)
    z.sub_(centre)
    centre = centre.double()
    sd = unit_if_constant(z.square().mean(1, keepdim=True).double().sqrt_(), centre)
    return z.div_(sd.to(dtype)), centre, sd


def fit_ridge_kernel(
    x: Float[Tensor, "layer n d"],
    y: Int[Tensor, " n"],
    w: Float[Tensor, "fold n"],
    n_classes: int,
    *,
    alpha: float = 1.0,
    mixed: bool = True,
    refine_answers: bool = True,
) -> LinearProbe:
    """Ridge classifier per (layer, fold) on all-items-standardised features via one shared kernel.

    Same arguments as :func:`~innerprobe.probes.ridge.fit_ridge` (``w`` holds 0/1 training
    indicators); the module docstring derives the method. Weights are float64, or float32 with
    ``mixed`` and not ``refine_answers`` (everything in float32: the fastest, ~``cond·1e-7``
    relative error).
    """
    fast = mixed and not refine_answers
    z, centre, sd = _standardised(x, torch.float32 if fast else torch.float64)
    n_layer, n, d = z.shape
    w = w.to(z)
    t = ridge_targets(y.to(z.device), n_classes, z.dtype)
    k, n_fold = t.shape[1], w.shape[0]
    mask = (w.T > 0).to(z)[:, :, None]  # [n, f, 1]
    cnt = w.sum(1)
    t_mean = (w @ t) / cnt[:, None]  # [f, k]
    rhs = ((t[:, None] - t_mean[None]) * mask).expand(n_layer, n, n_fold, k)
    train = [torch.nonzero(w[f] > 0).flatten() for f in range(n_fold)]

    def solve_with(factors: list[Tensor]) -> Callable[[Tensor], Tensor]:
        def solve(r: Float[Tensor, "layer n fold k"]) -> Float[Tensor, "layer n fold k"]:
            out = torch.zeros(n_layer, n, n_fold, k, dtype=z.dtype, device=z.device)
            for f, (idx, chol) in enumerate(zip(train, factors, strict=True)):
                out[:, idx, f] = chol_solve(chol, r[:, idx, f].to(chol.dtype)).to(z.dtype)
            return out
        return solve

    def matvec(u: Float[Tensor, "layer n fold k"]) -> Float[Tensor, "layer n fold k"]:
        """``(C Z_T Z_Tᵀ C + αI) u`` for every fold at once (float64; ``u`` is zero off ``T``)."""
        uc = (u - u.sum(1, keepdim=True) / cnt[:, None]) * mask
        v = (z @ (z.mT @ uc.reshape(n_layer, n, n_fold * k))).view(n_layer, n, n_fold, k)
        return (v - (v * mask).sum(1, keepdim=True) / cnt[:, None]) * mask + alpha * u

    a = None
    if mixed:
        zm = z.float()
        factors = _factors(zm @ zm.mT, train, alpha)
        if factors is not None:
            a = solve_with(factors)(rhs) if fast else refine(solve_with(factors), matvec, rhs)
    if a is None:
        if fast:  # float32 could not factor: redo it all in float64
            return fit_ridge_kernel(x, y, w, n_classes, alpha=alpha, mixed=False)
        factors = _factors(z @ z.mT, train, alpha)
        if factors is None:
            raise torch.linalg.LinAlgError("fit_ridge_kernel: a float64 kernel block is not positive definite")
        a = solve_with(factors)(rhs)
    V = (z.mT @ a.reshape(n_layer, n, n_fold * k)).view(n_layer, d, n_fold, k).permute(0, 2, 1, 3)
    W = V / sd.to(z)[..., None]  # [l, f, d, k] in raw units
    mu = (w @ z) / cnt[:, None] * sd.to(z)  # [l, f, d]: training means of the centred x
    b = t_mean[None] - ((mu + centre.to(z))[:, :, None] @ W).squeeze(2)
    return ridge_probe(W, b, n_classes)
