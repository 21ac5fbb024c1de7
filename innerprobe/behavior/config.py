"""The knobs of a behaviour run, checked once, and the task defaults they leave open.

:class:`BehaviorConfig` says how to measure: free text or forced choice, the prompt wording
(:class:`~innerprobe.protocol.prompts.PromptSpec`), token budgets, batch size, calibration samples
and the seed. Every value is checked in ``__post_init__``, so a bad one fails at construction
with its name, the value and what is allowed, before any model is loaded; the CLI only parses.

Two settings default to *"whatever this task family was measured to need"*
(``experiments/results/compliance_by_task.md``): the object-level prefill
(``spec.object_prefill``, marked by :class:`~innerprobe.protocol.prompts.TaskDefaultPrefill`) and
the object-level token budget (``object_max_new_tokens``, marked by :class:`TaskDefaultTokens`).
A marker is an ``int``/``str`` subclass holding the generic value, so code that reads the field
without a task still gets a number or a string; a plain value the user sets is used as given.
The markers are read in two places only: :func:`object_settings` (the prefill and budget of one
task's items) and :func:`config_record` (the JSON record, where a marker is written as
:data:`TASK_DEFAULT`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.protocol.prompts import PromptSpec, TaskDefaultPrefill
from innerprobe.protocol.tasks.registry import GENERIC_OBJECT_MAX_NEW_TOKENS, object_defaults

Mode = Literal["free", "forced"]
MODES = ("free", "forced")
"""``free``: generated text, cleaned and exact-matched; ``forced``: argmax over the labels."""
CHARACTER_LABELS = tuple("abcdefghijklmnopqrstuvwxyz0123456789")
TASK_DEFAULT = "task default"
"""How :func:`config_record` writes a setting left to each task family's measured default."""


class TaskDefaultTokens(int):
    """Marks an object-level token budget nobody chose: each task family's measured one is used.

    :func:`object_settings` swaps it for the budget of the item's family
    (``innerprobe.protocol.tasks.registry.FAMILY_DEFAULTS``; 2 tokens for choice tasks, so the
    answer is the option letter). It is an ``int`` holding the generic 24, so code that reads
    ``config.object_max_new_tokens`` without a task keeps working; a plain 24 given by the user
    is used as given.
    """

    def __repr__(self) -> str:
        return f"TaskDefaultTokens({int(self)})"


TASK_DEFAULT_TOKENS = TaskDefaultTokens(GENERIC_OBJECT_MAX_NEW_TOKENS)


def _check_int(name: str, value: object, minimum: int) -> None:
    """``DataError`` naming ``BehaviorConfig.<name>`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"BehaviorConfig.{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise DataError(f"BehaviorConfig.{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class BehaviorConfig:
    """Knobs of a behaviour run (recorded in its summary by :func:`config_record`).

    Attributes:
        mode: ``"free"`` or ``"forced"`` (see :data:`MODES`).
        spec: prompt wording and prefills; its object prefill defaults to each task's.
        object_max_new_tokens: greedy tokens of the object-level answer (>= 1); defaults to
            each task family's budget (:data:`TASK_DEFAULT_TOKENS`).
        hypothetical_max_new_tokens: tokens of a free-text self-prediction (>= 1).
        batch_size: prompts per forward (>= 1).
        calibration_samples: object-level samples at T=1 per item for the calibration MAD
            (forced mode; 0 skips it).
        seed: seeds sampling and the bootstrap (>= 0, as numpy's generators need).
    """

    mode: str = "forced"
    spec: PromptSpec = PromptSpec()
    object_max_new_tokens: int = TASK_DEFAULT_TOKENS
    hypothetical_max_new_tokens: int = 8
    batch_size: int = 16
    calibration_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UnknownNameError("mode", self.mode, MODES)
        if not isinstance(self.spec, PromptSpec):
            raise DataError(f"BehaviorConfig.spec must be a PromptSpec, got {type(self.spec).__name__}")
        for name, minimum in (
            ("object_max_new_tokens", 1),
            ("hypothetical_max_new_tokens", 1),
            ("batch_size", 1),
            ("calibration_samples", 0),
            ("seed", 0),
        ):
            _check_int(name, getattr(self, name), minimum)

    def object_tokens_for(self, task: str | None = None) -> int:
        """The object-level token budget for items of ``task``: the one set, else the family's."""
        return object_settings(self, task).max_new_tokens


@dataclass(frozen=True)
class ObjectSettings:
    """What the object-level answer of one task's items runs with, markers resolved.

    ``prefill``: the assistant text that opens the answer (``""`` for none), prepended to the
    answer before the property is read off it. ``max_new_tokens``: the greedy budget.
    """

    prefill: str
    max_new_tokens: int


def object_settings(config: BehaviorConfig, task: str | None = None) -> ObjectSettings:
    """The object-level prefill and token budget of items of ``task`` under ``config``.

    The one place both task-default markers are resolved: a value the user set wins; a marker
    becomes the measured default of the task's family (the generic ``Answer:`` and 24 tokens
    when ``task`` is None or not registered).
    """
    tokens = config.object_max_new_tokens
    budget = object_defaults(task).object_max_new_tokens if isinstance(tokens, TaskDefaultTokens) else int(tokens)
    return ObjectSettings(prefill=config.spec.object_prefill_text(task), max_new_tokens=budget)


def spec_record(spec: PromptSpec) -> dict[str, Any]:
    """``spec`` as a JSON-safe dict; an object prefill left to the task is :data:`TASK_DEFAULT`."""
    out = spec.to_dict()
    if isinstance(spec.object_prefill, TaskDefaultPrefill):
        out["object_prefill"] = TASK_DEFAULT
    return out


def config_record(config: BehaviorConfig) -> dict[str, Any]:
    """``config`` as a JSON-safe dict for a summary; settings left to the task are :data:`TASK_DEFAULT`.

    Writing a marker as its generic value (24, ``"Answer:"``) would lose what it meant: a reader
    could not tell "24 for every task" from "each task's own budget".
    """
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    out["spec"] = spec_record(config.spec)
    tokens = config.object_max_new_tokens
    out["object_max_new_tokens"] = TASK_DEFAULT if isinstance(tokens, TaskDefaultTokens) else int(tokens)
    return out


__all__ = [
    "CHARACTER_LABELS",
    "MODES",
    "TASK_DEFAULT",
    "TASK_DEFAULT_TOKENS",
    "BehaviorConfig",
    "Mode",
    "ObjectSettings",
    "TaskDefaultTokens",
    "config_record",
    "object_settings",
    "spec_record",
]
