"""Difference-in-means probes (Marks & Tegmark 2023): the nearest class mean, as a linear readout.

Each class ``c`` gets its mean ``μ_c``; an item goes to the nearest class mean, i.e. the argmax of
``w_c·x + b_c`` with ``w_c = μ_c − μ̄`` (``μ̄`` the mean of class means) and ``b_c = −½‖μ_c‖²``
(the dropped ``x·μ̄`` is the same for every class). No optimisation: the class means of every
(layer, fold) are one weighted sum. Distances are taken on train-fold standardised features by
default (massive residual dimensions would otherwise dominate them); the saved directions are the
raw ``μ_c − μ̄``, for two classes the classic ``θ = μ+ − μ−``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.probes.linear import LinearProbe, standardise_stats

__all__ = ["fit_mass_mean"]


def fit_mass_mean(
    x: Float[Tensor, "layer n d"],
    y: Int[Tensor, " n"],
    w: Float[Tensor, "fold n"],
    n_classes: int,
    *,
    standardise: bool = True,
    scope: str = "fold",
) -> LinearProbe:
    """Nearest-class-mean classifier per (layer, fold), as ``w_c·x + b_c`` with ``w_c ∝ μ_c − μ̄``.

    ``argmin_c ‖x − μ_c‖² = argmax_c x·μ_c − ½‖μ_c‖²``; subtracting the class-independent
    ``x·μ̄`` changes no prediction and makes ``w_c = μ_c − μ̄`` the weight vectors. With
    ``standardise`` the distances are taken on train-fold standardised features (a diagonal
    version of Marks & Tegmark's whitened "IID" variant), so a few massive, high-variance
    residual dimensions do not swamp the class signal; the returned *directions* are always the
    raw ``μ_c − μ̄`` (for two classes ``θ = μ+ − μ−``). ``scope`` is where the standardisation
    statistics come from: each training fold (``"fold"``) or every item (``"all"``).
    """
    x = x.double()
    w = w.to(x)
    onehot = torch.nn.functional.one_hot(y.to(x.device), n_classes).to(x)  # [n, C]
    cw = w[:, :, None] * onehot[None]  # [f, n, C]
    counts = cw.sum(1).clamp_min(1)  # [f, C]
    means = torch.einsum("fnc,lnd->lfcd", cw, x) / counts[None, :, :, None]  # [l, f, C, d]
    raw_dirs = means - means.mean(2, keepdim=True)
    if standardise:
        mu, sd = standardise_stats(x, w, scope)
    else:
        mu, sd = torch.zeros_like(means[:, :, 0]), torch.ones_like(means[:, :, 0])
    m = (means - mu[:, :, None]) / sd[:, :, None]  # class means in standardised units
    mc = m - m.mean(2, keepdim=True)
    W = (mc / sd[:, :, None]).transpose(-1, -2)  # [l, f, d, C]
    b = -0.5 * (m * m).sum(-1) - torch.einsum("lfd,lfcd->lfc", mu / sd, mc)
    return LinearProbe(W.float(), b.float(), raw_dirs.float())
