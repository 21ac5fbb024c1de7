"""Multinomial logistic probes for every layer and fold at once (full-batch L-BFGS).

The objective is scikit-learn's ``LogisticRegression``: on features standardised with the
*training fold's* mean and standard deviation, minimise ``C · Σ_i CE(y_i, W x_i + b) + ½‖W‖²``
(the intercept is not penalised). Instead of a Python loop over (layer, fold), the weights are one
tensor ``[layer, fold, d, C]`` and L-BFGS minimises the sum of the (separable) per-problem
objectives, each divided by its training-set size so every problem has the same scale: the
gradient of the sum with respect to one problem's weights is that problem's gradient alone.
The train-fold standardisation is folded into the weights (``W/σ`` and ``b − (μ/σ)·W``), so the
activations are never copied per fold. The reference loop is
:func:`~innerprobe.probes.reference.sklearn_logistic_oof`; tests check the two agree.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.probes.linear import LinearProbe, standardise_stats

__all__ = ["fit_logistic"]


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
    standardise: str = "fold",
) -> LinearProbe:
    """Multinomial L2 logistic regression for every (layer, fold) at once (full-batch L-BFGS).

    Problem (l, f) minimises ``(1/n_f)[C Σ_i w_fi CE_i + ½‖V‖²]`` over standardised features,
    with ``V`` the weights in standardised units (for two classes ``‖V‖²``, which matches
    scikit-learn's binomial objective); the returned weights are in raw units. The
    train-fold mean and std are computed in double precision; the optimisation runs in ``dtype``.
    L-BFGS stops after ``max_iter`` iterations or when the largest gradient entry of every problem
    is below ``tol`` in scikit-learn's scaling (its loss is this one divided by ``C``), so ``tol``
    means what it means for ``LogisticRegression``. ``standardise="all"`` takes the scaler's
    statistics from every item instead of each training fold (label-free; see
    :func:`~innerprobe.probes.linear.standardise_stats`).

    With ``warm_start`` the problem on all items (weights ``max`` over folds) is solved first,
    one problem per layer, and every fold starts from its solution. The folds then need fewer
    iterations, but on CPU the first phase costs about what it saves (measured), so it is off.
    """
    x = x.double()
    w = w.to(x)
    n_layer, _, d = x.shape
    n_fold = w.shape[0]
    full = w.max(0, keepdim=True).values
    mu, sd = standardise_stats(x, torch.cat([w, full]), standardise)
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
