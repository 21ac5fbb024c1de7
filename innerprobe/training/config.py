"""The finetuning stage's one config: :class:`FinetuneConfig`, every LoRA knob checked when built.

Each bad value fails at construction, before a model is loaded or a directory written, with an
error naming the field, the value and what it must be: ``rank``, ``epochs`` and ``batch_size``
are at least 1, ``lr`` and ``alpha`` positive, ``dropout`` in [0, 1), ``warmup_steps``,
``save_every`` and ``weight_decay`` at least 0, and ``target_modules`` a non-empty list of module
names (whether the model has them is checked when the LoRA wrapper is built,
:func:`innerprobe.training.finetune.lora_model`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from innerprobe.core.errors import DataError, check_at_least

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The default LoRA targets: every linear projection of a Llama/Gemma-style block."""
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one LoRA run (recorded with the adapter), checked when built.

    Attributes:
        rank: LoRA rank r (>= 1); ``alpha`` (> 0) scales the update by ``alpha / r``.
        dropout: LoRA dropout, in [0, 1).
        lr: peak AdamW learning rate (> 0); linear warm-up over ``warmup_steps`` (>= 0), then
            linear decay to 0.
        epochs: full passes over the data (>= 1); ``max_steps`` caps the optimiser steps
            (None: no cap).
        batch_size: rows per optimiser step (>= 1).
        weight_decay: AdamW weight decay (>= 0).
        seed: data order, LoRA initialisation.
        save_every: write a resumable checkpoint every so many steps (0: only at the end).
        target_modules: names of the linear modules to adapt (module names such as ``q_proj``;
            the defaults :data:`LORA_TARGETS` are kept where the model has them, any other
            list must exist in the model, see :func:`lora_model`).
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 5e-4
    epochs: int = 2
    batch_size: int = 8
    max_steps: int | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    save_every: int = 0
    target_modules: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        for name in ("rank", "epochs", "batch_size"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("max_steps", self.max_steps, 1, allow_none=True)
        for name in ("warmup_steps", "save_every", "weight_decay"):
            check_at_least(name, getattr(self, name), 0)
        for name in ("alpha", "lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
                raise DataError(f"{name} must be > 0, got {name}={value!r}")
        if not 0 <= self.dropout < 1:
            raise DataError(f"dropout must be in [0, 1), got {self.dropout!r}")
        targets = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
        if not targets:
            raise DataError(f"target_modules is empty; e.g. {list(LORA_TARGETS)}")
        for t in targets:
            if not isinstance(t, str) or not _MODULE_NAME.fullmatch(t):
                raise DataError(
                    f"target module {t!r} is not a module name (letters, digits, '_'); e.g. {list(LORA_TARGETS)}"
                )
        if len(set(targets)) != len(targets):
            raise DataError(f"target_modules lists a module twice: {list(targets)}")
        object.__setattr__(self, "target_modules", targets)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}


__all__ = ["LORA_TARGETS", "FinetuneConfig"]
