"""The linear algebra the ridge probes share: ±1 targets, mixed-precision SPD solves, assembly.

Every ridge fit ends in symmetric positive-definite systems ``A u = b`` (a scatter or kernel
matrix plus ``α`` on its diagonal). On CPU a float32 Cholesky factorisation is about twice as
fast as a float64 one, but a ridge system over raw activations can have a condition number of
1e4–1e6, so a float32 answer may be wrong in the third digit. Classical *iterative refinement*
recovers float64 accuracy cheaply: keep the float32 factor, take the residual ``b − A u`` in
float64 with the exact operator (thin products, never a float64 matrix), solve for a correction
with the cheap factor, and repeat. Each step shrinks the error by about ``cond(A)·1e-7``, so two
steps usually leave ~1e-10 relative error (Higham, *Accuracy and Stability of Numerical
Algorithms*, ch. 12).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.probes.linear import LinearProbe

log = logging.getLogger(__name__)

__all__ = ["ridge_targets", "ridge_probe", "chol_solve", "refine", "refined_solve"]


def ridge_targets(y: Int[Tensor, " n"], n_classes: int, dtype: torch.dtype) -> Float[Tensor, "n k"]:
    """scikit-learn's ``RidgeClassifier`` targets: one ±1 column per class, or one column for two."""
    onehot = torch.nn.functional.one_hot(y, n_classes).to(dtype)
    t = 2 * onehot - 1
    return t[:, 1:] if n_classes == 2 else t


def ridge_probe(W: Float[Tensor, "layer fold d k"], b: Float[Tensor, "layer fold k"], n_classes: int) -> LinearProbe:
    """Two classes: scikit-learn's one score column becomes (0, score), so argmax is its sign."""
    if n_classes == 2:
        W = torch.cat([torch.zeros_like(W), W], -1)
        b = torch.cat([torch.zeros_like(b), b], -1)
    return LinearProbe(W, b)


def chol_solve(chol: Float[Tensor, "*batch m m"], rhs: Float[Tensor, "*batch m k"]) -> Float[Tensor, "*batch m k"]:
    """``(L Lᵀ)⁻¹ rhs`` by two triangular solves (faster than ``torch.cholesky_solve`` on CPU)."""
    half = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.mT, half, upper=True)


def refine(
    solve_low: Callable[[Tensor], Tensor],
    matvec: Callable[[Tensor], Tensor],
    rhs: Tensor,
    max_refine: int = 10,
    rtol: float = 1e-5,
) -> Tensor | None:
    """Iterative refinement of ``A u = rhs``; ``None`` if it stalls (then factor in float64).

    ``solve_low`` applies an approximate inverse (a float32 factor; float64 in, float64 out),
    ``matvec`` the exact operator in float64. Stops once a correction is below ``rtol`` of the
    answer: the error left is about the convergence factor times that correction.
    """
    u = solve_low(rhs)
    for _ in range(max_refine):
        delta = solve_low(rhs - matvec(u))
        u = u + delta
        if float(delta.abs().amax()) <= rtol * float(u.abs().amax()):
            return u
    log.debug("ridge: mixed-precision refinement stalled; refactoring in float64")
    return None


def refined_solve(
    system: Float[Tensor, "*batch m m"],
    matvec: Callable[[Tensor], Tensor],
    rhs: Float[Tensor, "*batch m k"],
    mixed: bool,
    refine_answers: bool = True,
) -> Float[Tensor, "*batch m k"]:
    """Solve the batched SPD ``system · u = rhs`` (float64 answer).

    With ``mixed`` the Cholesky factor is float32 and :func:`refine` polishes the answer with
    ``matvec`` (the exact float64 operator) to float64 accuracy; if the float32 factorisation
    fails or refinement stalls (very ill-conditioned systems) it falls back to a float64
    factorisation. ``refine_answers=False`` returns the float32 factor's answer as it is.
    """
    if mixed:
        chol, info = torch.linalg.cholesky_ex(system.float())
        if not bool((info != 0).any()):
            if not refine_answers:
                return chol_solve(chol, rhs.float()).double()
            u = refine(lambda r: chol_solve(chol, r.float()).double(), matvec, rhs)
            if u is not None:
                return u
    return chol_solve(torch.linalg.cholesky(system.double()), rhs)
