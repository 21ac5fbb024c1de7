"""``StepContext``: what one battery step gets — settings, item count, model role, a work folder.

Steps share expensive inputs through it: the model is loaded once per role, and a step that
needs an activation store (E3, E3b, E6, E7) writes it under ``work_dir`` (the role's folder of the
battery's output) so that the next step, and a resumed battery, reuse it. ``shared`` holds
in-memory objects (a store) for the rest of the role's run. What does not depend on the role (the
peer model of E3b and its activations) lives in ``common`` and ``cache_dir``, which every role's
context of one battery shares: M1 reuses what M computed.

For role ``M1`` the model is M after the battery's short LoRA self-training
(:func:`~innerprobe.study.m1_model.load_m1`): trained once, cached, and loaded from the cache by
every later context; a step never needs to know which role it runs for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerprobe.models.load import load_model
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.m1_model import load_m1


@dataclass
class StepContext:
    """What a step needs: settings, items per stage, the model role and a lazily loaded model.

    Attributes:
        config: the battery's settings.
        n: items per stage (test split).
        role: ``M`` (the base model) or ``M1`` (self-trained).
        work_dir: where steps may keep artifacts shared between steps (None: a step that needs
            one makes a temporary folder).
        shared: in-memory objects shared between steps of this role.
        cache_dir: where role-independent artifacts live, shared by every role of the battery
            (None: ``work_dir``).
        common: in-memory objects shared by every role (the same dict in each context).
    """

    config: BatteryConfig
    n: int
    role: str = "M"
    work_dir: Path | None = None
    shared: dict[str, Any] = field(default_factory=dict, repr=False)
    cache_dir: Path | None = None
    common: dict[str, Any] = field(default_factory=dict, repr=False)
    _model: Any = field(default=None, repr=False)

    @property
    def model(self) -> Any:
        """The role's model, loaded on first use: M (``config.model``) or M1 (trained once, cached)."""
        if self._model is None:
            self._model = load_m1(self.config) if self.role == "M1" else load_model(self.config.model)
        return self._model


__all__ = ["StepContext"]
