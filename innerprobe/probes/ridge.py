"""Ridge (least-squares) classifier probes for every layer and fold, in closed form.

This is scikit-learn's ``RidgeClassifier``: least squares onto one-vs-rest ±1 targets with an L2
penalty ``alpha`` on train-fold standardised features, predicting the argmax score. Because the
solution is closed form, all layers and folds are solved exactly from per-layer sufficient
statistics (one Gram matrix per layer, downdated per fold) with batched Cholesky solves, in
mixed precision with float64 refinement; see :func:`fit_ridge` for the derivation. With the
scaler fitted on all items the folds share one kernel per layer instead
(:mod:`~innerprobe.probes.ridge_kernel`). It is the fast default sweep; the reference loop is
:func:`~innerprobe.probes.reference.sklearn_ridge_oof`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.probes.linear import STANDARDISE, LinearProbe, standardise_stats
from innerprobe.probes.ridge_algebra import refined_solve, ridge_probe, ridge_targets
from innerprobe.probes.ridge_kernel import fit_ridge_kernel, kernel_cost

log = logging.getLogger(__name__)

__all__ = ["fit_ridge"]


def _ridge_cost(n: int, d: int, n_train: Sequence[int]) -> tuple[float, float]:
    """Flop estimates per layer of the primal (shared Gram, downdated) and dual (kernel) solves."""
    primal = 4.0 * n * d * d + len(n_train) * d**3 / 3
    dual = sum(2.0 * m * m * d + m**3 / 3 for m in n_train)
    return primal, dual


def fit_ridge(
    x: Float[Tensor, "layer n d"],
    y: Int[Tensor, " n"],
    w: Float[Tensor, "fold n"],
    n_classes: int,
    *,
    alpha: float = 1.0,
    solver: str = "auto",
    mixed: bool = True,
    standardise: str = "fold",
    refine_answers: bool = True,
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

    **Standardisation.** ``standardise="fold"`` (default) fits the scaler on each training fold,
    as a scikit-learn ``Pipeline`` inside cross-validation does. ``standardise="all"`` takes
    ``σ`` from every item's activations (label-free; the centring is still the training fold's,
    which is what the intercept does). Then every fold shares one ``n × n`` kernel per layer and
    the dual needs only an ``m × m`` factor per fold (:mod:`~innerprobe.probes.ridge_kernel`):
    the fast path for wide sweeps.

    **Precision.** Answers are float64-accurate. With ``mixed`` (default) matrices are formed and
    factored in float32 and the solution is refined with float64 residuals (see
    :func:`~innerprobe.probes.ridge_algebra.refined_solve`); ``mixed=False`` does everything in
    float64. ``refine_answers=False`` (with ``mixed``) skips the refinement and keeps the float32
    answer, about ``cond·1e-7`` off in relative terms: predictions change only on near-ties, and
    it is the fastest sweep (``ProbeConfig.ridge_refine``).

    ``w`` holds 0/1 training indicators (rows of :func:`fold_weights`). The returned probe's
    weights are float64 (float32 from the shared kernel without refinement); for two classes column 0 is zero and column 1 holds the score.
    """
    if solver not in ("auto", "primal", "dual"):
        raise UnknownNameError("ridge solver", solver, ("auto", "primal", "dual"))
    if standardise not in STANDARDISE:
        raise UnknownNameError("standardisation scope", standardise, STANDARDISE)
    if alpha <= 0:
        raise DataError(f"ridge alpha must be > 0, got {alpha}")
    w = w.to(device=x.device, dtype=torch.float64)
    if not bool(((w == 0) | (w == 1)).all()):
        raise DataError("fit_ridge needs 0/1 training indicators in w (rows of fold_weights)")
    n_layer, n, d = x.shape
    n_fold = w.shape[0]
    train = [torch.nonzero(w[f] > 0).flatten() for f in range(n_fold)]
    n_tr = [len(i) for i in train]
    if min(n_tr) < 2:
        raise DataError(f"fit_ridge: a fold has {min(n_tr)} training items; need >= 2")
    if solver == "auto":
        primal, dual = _ridge_cost(n, d, n_tr)
        dual = kernel_cost(n, d, n_tr) if standardise == "all" else dual
        solver = "primal" if primal <= dual else "dual"
    if solver == "dual" and standardise == "all":
        return fit_ridge_kernel(x, y, w, n_classes, alpha=alpha, mixed=mixed, refine_answers=refine_answers)
    x = x.double()
    centre = x.mean(1, keepdim=True)  # [l, 1, d]
    x = x - centre  # centre each layer once: no cancellation in XᵀX below
    xm = x.float() if mixed else x  # the precision the matrices are formed and factored in
    t = ridge_targets(y.to(x.device), n_classes, x.dtype)  # [n, k]
    mu, sd = standardise_stats(x, w)  # [l, f, d] each: the training means centre every fold
    if standardise == "all":
        sd = standardise_stats(x, w, "all")[1]
    cnt = w.sum(1)  # [f]
    t_mean = (w @ t) / cnt[:, None]  # [f, k]
    if solver == "primal":
        # everything fold-major ([fold, layer, ...]) so that each fold's block is contiguous
        m = torch.empty(n_fold, n_layer, d, d, dtype=xm.dtype, device=x.device)
        mu_f, s2 = mu.transpose(0, 1), (sd**2).transpose(0, 1)  # [f, l, d]
        held = [torch.nonzero(w[f] == 0).flatten() for f in range(n_fold)]
        disjoint = bool(((w == 0).sum(0) <= 1).all())  # cross-validation: each item held out at most once
        if disjoint:
            # the held-out blocks' Grams partition the whole Gram: form each once, sum them, and
            # a fold's training Gram is the whole minus its own block (half the work of a downdate)
            for f in range(n_fold):
                torch.bmm(xm[:, held[f]].transpose(1, 2), xm[:, held[f]], out=m[f])
            never = torch.nonzero((w == 0).sum(0) == 0).flatten()
            gram = m.sum(0) + (xm[:, never].transpose(1, 2) @ xm[:, never])  # [l, d, d]
            torch.sub(gram[None], m, out=m)
        else:
            gram = xm.transpose(1, 2) @ xm  # [l, d, d], once per layer
            for f in range(n_fold):
                torch.baddbmm(gram, xm[:, held[f]].transpose(1, 2), xm[:, held[f]], alpha=-1.0, out=m[f])
        for f in range(n_fold):
            mf = mu_f[f].to(xm)
            # centre about the fold mean, add the standardisation-as-penalty diagonal
            m[f].baddbmm_(mf[:, :, None], mf[:, None, :], alpha=-float(cnt[f]))
            m[f].diagonal(dim1=-2, dim2=-1).add_(alpha * s2[f].to(xm))
        k = t.shape[1]
        wt = (w[:, :, None] * t[None]).permute(1, 0, 2).reshape(n, n_fold * k)  # [n, f·k]
        rhs = (x.transpose(1, 2) @ wt).view(n_layer, d, n_fold, k).permute(2, 0, 1, 3)
        rhs = rhs - cnt[:, None, None, None] * mu_f[..., None] * t_mean[:, None, None, :]  # [f, l, d, k]
        wk = w.T.repeat_interleave(k, dim=1)  # [n, f·k]: each fold's training mask per column

        def matvec(u: Float[Tensor, "fold layer d k"]) -> Float[Tensor, "fold layer d k"]:
            """``(S_f + α D_f²) u`` for every fold at once, reading ``x`` twice (float64)."""
            xu = x @ u.permute(1, 2, 0, 3).reshape(n_layer, d, n_fold * k)  # [l, n, f·k]
            back = (x.transpose(1, 2) @ (xu * wk)).view(n_layer, d, n_fold, k).permute(2, 0, 1, 3)
            centre_term = cnt[:, None, None, None] * mu_f[..., None] * (mu_f[:, :, None, :] @ u)
            return back - centre_term + alpha * s2[..., None] * u

        W = refined_solve(m, matvec, rhs, mixed, refine_answers).transpose(0, 1)  # [l, f, d, k]
    else:
        W = torch.empty(n_layer, n_fold, d, t.shape[1], dtype=x.dtype, device=x.device)
        for f, idx in enumerate(train):
            z = (x[:, idx] - mu[:, f, None]) / sd[:, f, None]  # [l, m, d]
            zm = z.float() if mixed else z
            kern = zm @ zm.transpose(1, 2)
            kern.diagonal(dim1=-2, dim2=-1).add_(alpha)
            tc = (t[idx] - t_mean[f]).expand(n_layer, -1, -1)

            def matvec(a: Float[Tensor, "layer m k"], z: Float[Tensor, "layer m d"] = z) -> Float[Tensor, "layer m k"]:
                return z @ (z.transpose(1, 2) @ a) + alpha * a

            a = refined_solve(kern, matvec, tc, mixed, refine_answers)
            W[:, f] = (z.transpose(1, 2) @ a) / sd[:, f, :, None]
    # scores on raw x: (x − centre − μ_f)·W + t̄_f, so the centring moves into the bias
    b = t_mean[None] - torch.einsum("lfd,lfdk->lfk", mu + centre, W)
    return ridge_probe(W, b, n_classes)

