"""The knobs of a probe run, checked once: :class:`ProbeConfig`.

Every value is validated in ``__post_init__``, so a bad setting fails before any activation is
read, with an error that names the value and what would be valid (the CLI only parses options
into this class). The config is recorded in every saved :class:`~innerprobe.probes.ProbeResult`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.probes.linear import STANDARDISE

__all__ = ["PROBES", "DEFAULT_PROBES", "ProbeConfig"]

PROBES: tuple[str, ...] = ("ridge", "logistic", "mass_mean")
"""Probe families: closed-form ridge, L-BFGS multinomial logistic, difference-in-means."""
DEFAULT_PROBES: tuple[str, ...] = ("ridge", "mass_mean")
"""The fast sweep: both closed form."""
DEVICE_TYPES = ("cpu", "cuda", "cuda:N", "mps")


@dataclass(frozen=True)
class ProbeConfig:
    """Knobs of a probe run (recorded in every artifact).

    ``probes`` defaults to the fast closed-form sweep (``ridge`` and ``mass_mean``); add
    ``"logistic"`` for the exact multinomial-logistic objective (L-BFGS: slow on CPU, meant for
    GPU or as a reference). ``ridge_alpha`` is scikit-learn's ``RidgeClassifier`` ``alpha`` on
    standardised features; ``ridge_mixed`` factors in float32 with float64 refinement, and
    ``ridge_refine=False`` drops that refinement (float32 answers, the fastest sweep).
    ``C`` is scikit-learn's inverse L2 strength on standardised features (logistic). ``min_count`` drops
    classes with fewer items (and reports how many); without it a class rarer than ``folds`` is
    an error. ``tol`` is scikit-learn's gradient tolerance. ``n_boot`` resamples and ``alpha``
    (``1 - alpha`` intervals) set the confidence intervals; ``seed`` fixes folds, controls and
    resamples. ``standardise`` is where every family's scaler statistics come from: each
    training fold (``"fold"``, scikit-learn's ``Pipeline`` semantics) or all items' activations
    (``"all"``: label-free; ridge then shares one kernel per layer across folds, the fast sweep).
    Transfer is computed between runs of different kinds (O ↔ H), never between two
    H positions.
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
    ridge_refine: bool = True
    standardise: str = "fold"

    def __post_init__(self) -> None:
        probes = (self.probes,) if isinstance(self.probes, str) else tuple(self.probes)
        object.__setattr__(self, "probes", probes)
        if not probes:
            raise DataError(f"ProbeConfig.probes must name at least one probe family; valid probes: {', '.join(PROBES)}")
        for p in probes:
            check_choice("probe", p, PROBES)
        if len(set(probes)) != len(probes):
            raise DataError(f"ProbeConfig.probes lists a family twice: {list(probes)}")
        check_choice("standardisation scope", self.standardise, STANDARDISE)
        check_at_least("ProbeConfig.folds", self.folds, 2)
        check_at_least("ProbeConfig.max_iter", self.max_iter, 1)
        check_at_least("ProbeConfig.n_boot", self.n_boot, 1)
        check_at_least("ProbeConfig.min_count", self.min_count, 1, allow_none=True)
        check_at_least("ProbeConfig.seed", self.seed, 0)
        for name in ("C", "tol", "ridge_alpha"):
            value = getattr(self, name)
            if not value > 0:  # also catches NaN
                raise DataError(f"ProbeConfig.{name} must be > 0, got {value!r}")
        if not 0 < self.alpha < 1:
            raise DataError(f"ProbeConfig.alpha must be in (0, 1) (0.05 gives 95% intervals), got {self.alpha!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise DataError(f"ProbeConfig.device {self.device!r} is not a torch device; valid: {', '.join(DEVICE_TYPES)}") from e

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
