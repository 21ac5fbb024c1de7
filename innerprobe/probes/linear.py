"""The one shape every fitted probe takes: affine readouts ``logits = x W + b`` per (layer, fold).

All three probe families (ridge, logistic, mass-mean) end as a :class:`LinearProbe` in *raw*
activation units: whatever standardisation a family fits in is folded into ``W`` and ``b``
(``z = (x − μ)/σ`` gives ``z·V + c = x·(V/σ) + (c − (μ/σ)·V)``), so scoring a run never copies or
rescales the activations. Held-out predictions come from each item's own fold
(:func:`heldout_predictions`); the last fold row is the all-items fit whose class-centred weight
vectors are the probe's *directions*.

:func:`standardise_stats` computes the mean and standard deviation that scikit-learn's
``StandardScaler`` would, for every (layer, fold) at once: fitted on each training fold
(``scope="fold"``, a ``Pipeline`` inside cross-validation), or once on every item's activations
(``scope="all"``: label-free, so no label leaks into the held-out fold, but the held-out items'
feature statistics do; it lets ridge share one kernel per layer across folds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.core.errors import UnknownNameError

__all__ = ["STANDARDISE", "LinearProbe", "standardise_stats", "unit_if_constant", "heldout_predictions"]

STANDARDISE: tuple[str, ...] = ("fold", "all")
"""Where the standardisation statistics come from: each training fold, or all items."""


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


def standardise_stats(
    x: Float[Tensor, "layer n d"], w: Float[Tensor, "fold n"], scope: str = "fold"
) -> tuple[Float[Tensor, "layer fold d"], Float[Tensor, "layer fold d"]]:
    """Mean and population std per (layer, fold); zero std becomes 1 (as ``StandardScaler``).

    ``scope="fold"`` weights items by ``w`` (each fold's training items); ``scope="all"`` uses
    every item for every fold (the result is expanded over folds).
    """
    if scope not in STANDARDISE:
        raise UnknownNameError("standardisation scope", scope, STANDARDISE)
    if scope == "all":
        mu, sd = standardise_stats(x, torch.ones_like(w[:1]))
        return mu.expand(-1, w.shape[0], -1), sd.expand(-1, w.shape[0], -1)
    cnt = w.sum(1)[None, :, None]
    mu = torch.einsum("fn,lnd->lfd", w, x) / cnt
    ex2 = torch.einsum("fn,lnd->lfd", w, x * x) / cnt
    var = (ex2 - mu * mu).clamp_min(0)
    return mu, unit_if_constant(var.sqrt(), mu)


def unit_if_constant(sd: Float[Tensor, "*shape"], mu: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
    """``StandardScaler``'s rule: a (numerically) constant feature keeps scale 1, not 1/0."""
    return torch.where(sd < 1e-7 * (mu.abs() + 1), torch.ones_like(sd), sd)


def heldout_predictions(
    probe: LinearProbe, x: Float[Tensor, "layer n d"], fold: Int[np.ndarray, " n"]
) -> tuple[Int[Tensor, "layer n"], Int[Tensor, "layer n"]]:
    """(out-of-fold predictions from each item's own held-out fold, predictions of the all-items fit).

    Each item is scored only by its own fold's probe and by the all-items fit (two readouts per
    item, not one per fold).
    """
    x = x.to(probe.W)
    f = torch.as_tensor(fold, device=x.device)
    oof = torch.empty(x.shape[0], x.shape[1], dtype=torch.long, device=x.device)
    for v in torch.unique(f).tolist():
        idx = torch.nonzero(f == v).flatten()
        oof[:, idx] = (x[:, idx] @ probe.W[:, v] + probe.b[:, v, None]).argmax(-1)
    return oof, (x @ probe.W[:, -1] + probe.b[:, -1, None]).argmax(-1)
