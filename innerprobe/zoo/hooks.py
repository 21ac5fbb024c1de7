"""Residual-stream sites of an HF Llama and the answer-subspace projection the zoo trains and checks with.

A *site* is the residual stream entering decoder block ``i`` (sites ``0..L-1``, TransformerLens'
``blocks.{i}.hook_resid_pre``) or entering the final norm (site ``L``, ``blocks.{L-1}.hook_resid_post``).
The zoo hooks the HF model directly (forward pre-hooks), because training runs on it, not on the
TransformerLens bridge.

:func:`project_out` removes, at every site and at the positions of a mask, the component of the
residual inside that site's subspace: ``h ← h − (h Bᵀ) B`` for orthonormal rows ``B`` [k, d]. It
also accumulates the fraction of squared norm the residual had inside the subspace *before* the
projection (the direct model's penalty: what each block wrote into the answer code).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def site_modules(model) -> list[torch.nn.Module]:  # noqa: ANN001 - any HF Llama-family model
    """The modules whose *input* is each site: the decoder layers, then the final norm."""
    return [*model.model.layers, model.model.norm]


def _hidden(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _replace(args: tuple, kwargs: dict, h: Tensor) -> tuple[tuple, dict]:
    if args:
        return (h, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


@contextmanager
def capture_sites(model, mask: Bool[Tensor, "b t"] | None = None) -> Iterator[list[Tensor]]:  # noqa: ANN001
    """Record each site's residual (``[b, t, d]``, detached) during the forwards inside the block."""
    out: list[Tensor] = []
    handles = []
    for module in site_modules(model):
        def hook(_m, args, kwargs):  # noqa: ANN001, ANN202
            out.append(_hidden(args, kwargs).detach())
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


@dataclass
class Projection:
    """Per-site orthonormal bases (``None`` or rank 0: that site is left alone) and a position mask."""

    bases: Sequence[Float[Tensor, "k d"] | None]
    mask: Bool[Tensor, "b t"]
    inside: list[Tensor] = field(default_factory=list)

    def penalty(self) -> Tensor:
        """Mean over sites of the masked mean fraction of squared norm inside the subspace."""
        return torch.stack(self.inside).mean() if self.inside else torch.zeros(())


@contextmanager
def project_out(model, projection: Projection) -> Iterator[Projection]:  # noqa: ANN001
    """Remove each site's subspace from the residual at ``projection.mask`` (see the module docstring)."""
    handles = []
    m = projection.mask.unsqueeze(-1).float()
    for module, basis in zip(site_modules(model), projection.bases):
        if basis is None or basis.shape[0] == 0:
            continue

        def hook(_m, args, kwargs, basis=basis):  # noqa: ANN001, ANN202
            h = _hidden(args, kwargs)
            comp = (h @ basis.T) @ basis
            frac = (comp.pow(2).sum(-1) / h.pow(2).sum(-1).clamp_min(1e-6)) * m[..., 0]
            projection.inside.append(frac.sum() / m.sum().clamp_min(1.0))
            return _replace(args, kwargs, h - comp * m)

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield projection
    finally:
        for h in handles:
            h.remove()


def positions_from(starts: Sequence[int], lengths: Sequence[int], width: int) -> Bool[Tensor, "b t"]:
    """Mask of positions ``start..length-1`` of each row (e.g. the quoted P through ``h_last``)."""
    idx = torch.arange(width)
    return torch.stack([(idx >= s) & (idx < n) for s, n in zip(starts, lengths)])


__all__ = ["Projection", "capture_sites", "positions_from", "project_out", "site_modules"]
