"""What an intervention does to the residual vectors it touches.

Three edits cover steering, ablation and patching-by-value:

* :class:`AddVector` — steering: ``h ← h + s·v``. With ``relative=True`` the scale is set
  against the residual norm at that token, ``h ← h + s·‖h‖·v/‖v‖``, so one ``s`` means the same
  push at a layer whose residual norm is 5 and at one where it is 500.
* :class:`ProjectOut` — subspace ablation. The basis ``B`` (``k × d``, orthonormalised here by QR)
  spans the subspace; *zero* ablation removes the component, ``h ← h − (h Bᵀ) B``; *mean*
  ablation replaces it by the component of a reference mean ``μ`` (e.g. the mean activation over
  items), ``h ← h − ((h − μ) Bᵀ) B``, which keeps the activation on-distribution.
* :class:`Replace` — set ``h`` to a stored activation.

An edit is validated when made (finite, one-dimensional where it must be, rank between 1 and
``d``) and against the model's width when an intervention is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.core.errors import DataError


def _finite(name: str, t: Tensor) -> None:
    if not torch.isfinite(t).all():
        raise DataError(f"{name} has non-finite entries (NaN or inf)")


@dataclass(frozen=True)
class AddVector:
    """Steering: add ``scale · vector`` (or ``scale · ‖h‖ · v̂`` with ``relative=True``)."""

    vector: Float[Tensor, " d_model"]
    scale: float = 1.0
    relative: bool = False

    def __post_init__(self) -> None:
        if self.vector.ndim != 1:
            raise DataError(f"steering vector must be 1-D [d_model], got shape {tuple(self.vector.shape)}")
        _finite("steering vector", self.vector)
        if not math.isfinite(float(self.scale)):
            raise DataError(f"steering scale {self.scale!r} is not finite")
        if self.relative and float(self.vector.norm()) == 0.0:
            raise DataError("a zero vector has no direction to scale relative to the residual norm")

    @property
    def width(self) -> int:
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def apply(self, h: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        v = self.vector.to(device=h.device, dtype=h.dtype)
        if self.relative:
            return h + self.scale * h.norm(dim=-1, keepdim=True) * (v / v.norm())
        return h + self.scale * v

    def describe(self) -> dict[str, object]:
        return {"kind": "add", "norm": self.norm, "scale": self.scale, "relative": self.relative}


@dataclass(frozen=True)
class ProjectOut:
    """Ablation: remove (``mean=None``) or mean-replace the component in ``span(basis)``."""

    basis: Float[Tensor, "k d_model"]
    mean: Float[Tensor, " d_model"] | None = None
    _q: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        b = self.basis if self.basis.ndim == 2 else self.basis.reshape(1, -1)
        k, d = b.shape
        if k == 0 or k > d:
            raise DataError(f"subspace rank {k} is not between 1 and d_model={d}")
        _finite("ablation basis", b)
        q, r = torch.linalg.qr(b.to(torch.float64).T)
        rank = int((r.diagonal().abs() > 1e-9 * max(1.0, float(r.abs().max()))).sum())
        if rank < k:
            raise DataError(f"ablation basis has {k} rows but rank {rank}: drop dependent rows")
        object.__setattr__(self, "_q", q.T.contiguous())  # [k, d], orthonormal rows
        if self.mean is not None:
            if self.mean.shape != (d,):
                raise DataError(f"mean must be [d_model={d}], got shape {tuple(self.mean.shape)}")
            _finite("ablation mean", self.mean)

    @property
    def width(self) -> int:
        return int(self._q.shape[1])

    @property
    def rank(self) -> int:
        return int(self._q.shape[0])

    def apply(self, h: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        q = self._q.to(device=h.device, dtype=h.dtype)
        centred = h if self.mean is None else h - self.mean.to(device=h.device, dtype=h.dtype)
        return h - (centred @ q.T) @ q

    def describe(self) -> dict[str, object]:
        return {"kind": "project_out", "rank": self.rank, "mode": "zero" if self.mean is None else "mean"}


@dataclass(frozen=True)
class Replace:
    """Set the residual to ``value`` (a stored activation) at the selected positions."""

    value: Float[Tensor, " d_model"]

    def __post_init__(self) -> None:
        if self.value.ndim != 1:
            raise DataError(f"replacement must be 1-D [d_model], got shape {tuple(self.value.shape)}")
        _finite("replacement activation", self.value)

    @property
    def width(self) -> int:
        return int(self.value.shape[0])

    def apply(self, h: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
        return self.value.to(device=h.device, dtype=h.dtype).expand_as(h).clone()

    def describe(self) -> dict[str, object]:
        return {"kind": "replace", "norm": float(self.value.norm())}


Edit = AddVector | ProjectOut | Replace

__all__ = ["AddVector", "Edit", "ProjectOut", "Replace"]
