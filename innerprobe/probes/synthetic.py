"""Synthetic activations shaped like a real residual stream, for tests and benchmarks.

Real residual streams are anisotropic (a power-law spectrum) and carry a few "massive"
dimensions with a large mean and variance; a probe that does not standardise, or that forms
``XᵀX`` without centring, breaks on them. :func:`synthetic_activations` plants a class signal
of known strength per layer in such noise, so a probe's accuracy curve has a known shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["synthetic_activations"]


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
