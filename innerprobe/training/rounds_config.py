"""The self-training loop's one config: :class:`SelfTrainConfig`, checked when built.

A self-training run repeats one round ``rounds`` times: the current model M_k answers fresh
items, a named data policy (:data:`POLICIES`, see :mod:`innerprobe.training.policies`) turns its
answers into training rows, and a LoRA adapter trained on them gives M_{k+1}. Every knob of that
loop lives here and fails at construction, before a model is loaded, with an error naming the
field, the value and what it must be:

* ``policy`` one of :data:`POLICIES` (the error lists them), ``rounds`` and ``n_items`` at
  least 1, ``tasks`` and ``properties`` known names (and each property applies to some task),
  ``ground_truth`` names from :data:`~innerprobe.training.ground_truth.GROUND_TRUTH_TASKS`;
* early stopping: ``patience`` (None: train every epoch, no held-out rows) and
  ``heldout_fraction`` in (0, 0.5];
* evaluation sizes ``n_eval`` (held-out test-split items, the same every round) and
  ``n_ground_truth`` (questions with known answers), ``calibration_samples`` (0: no MAD);
* the cross-predictor: ``cross`` one of :data:`CROSS_PREDICTORS`, ``cross_model`` a model name
  (None: the base model M_0).

**Fresh items.** Round k trains on items ``k·n_items … (k+1)·n_items − 1`` of one seeded draw of
``rounds · n_items`` train-split items per task (:meth:`SelfTrainConfig.round_slice`), so the
rounds' item sets are disjoint, and the same seed gives the same items. The draw holds one
slice more than the rounds (``(rounds + 1) · n_items``): slice k is also where M_k's trained
cross-predictor learns M_k's behaviour (:meth:`SelfTrainConfig.cross_slice`), the items round
k + 1 trains on, so M_k answers them once for both. The draw is prefix-stable: a larger draw
starts with the same items.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import get_task
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.ground_truth import GROUND_TRUTH_TASKS

POLICIES = ("self_prediction", "self_filtered", "object_only")
"""The data policies: hypothetical targets from own behaviour; own answers kept where the
model's self-report agrees; own object answers only (plain self-distillation)."""
CROSS_PREDICTORS = ("trained", "untrained")
"""What M_r's self-prediction is compared with: a peer finetuned on M_r's own behaviour
(Binder et al.'s M2, once per round: :mod:`innerprobe.training.rounds_cross`), or the untrained
peer (cheap: its predictions are computed once)."""
STEPS = ("data", "adapter", "cross", "measured")
"""A round's steps in order; each is saved before the next starts, so a rerun resumes there."""


def _as_tuple(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class SelfTrainConfig:
    """Knobs of a self-training run (recorded in every round's provenance).

    Attributes:
        rounds: finetuning rounds (>= 1); round k trains M_{k+1} on M_k's data.
        policy: data policy, one of :data:`POLICIES`.
        tasks: object-level tasks whose fresh items each round answers.
        properties: behavioural properties (each used on the tasks it applies to).
        n_items: fresh train-split items per task per round (>= 1).
        finetune: the LoRA hyper-parameters of every round (its seed seeds each round's adapter).
        patience: stop a round's training after this many epochs without a lower held-out loss
            (>= 1); None trains every epoch on all rows (no held-out split).
        heldout_fraction: share of a round's items held out for the early-stopping loss.
        n_eval: test-split items per task measured after every round (the same items each round).
        n_ground_truth: questions per ground-truth task (0: none measured).
        ground_truth: tasks with known answers (error amplification), from ``GROUND_TRUTH_TASKS``.
        calibration_samples: T=1 object samples per eval item for the calibration MAD and its
            noise floor (0: none).
        cross: the cross-predictor, one of :data:`CROSS_PREDICTORS`.
        cross_model: the peer model's name (None: the base model M_0, finetuned on M_r's
            behaviour when ``cross`` is ``"trained"``).
        batch_size: prompts per forward in generation and scoring.
        seed: items, held-out split, adapters (``finetune.seed + k`` in round k), bootstrap.
    """

    rounds: int = 3
    policy: str = "self_prediction"
    tasks: tuple[str, ...] = ("animals",)
    properties: tuple[str, ...] = ("second_character",)
    n_items: int = 100
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    patience: int | None = 1
    heldout_fraction: float = 0.2
    n_eval: int = 100
    n_ground_truth: int = 40
    ground_truth: tuple[str, ...] = GROUND_TRUTH_TASKS
    calibration_samples: int = 0
    cross: str = "trained"
    cross_model: str | None = None
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check_at_least("rounds", self.rounds, 1)
        check_choice("policy", self.policy, POLICIES)
        check_choice("cross-predictor", self.cross, CROSS_PREDICTORS)
        for name in ("tasks", "properties", "ground_truth"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        if not self.tasks:
            raise DataError("tasks is empty; name at least one task, e.g. ['animals']")
        if not self.properties:
            raise DataError("properties is empty; e.g. ['second_character']")
        kinds = [get_task(t).kind for t in self.tasks]  # UnknownNameError listing the tasks
        for name in self.properties:
            prop = get_property(name)  # UnknownNameError listing the properties
            if not any(prop.applies_to(k) for k in kinds):
                raise DataError(f"property {name!r} applies to none of tasks {list(self.tasks)} (kinds {kinds})")
        for name in self.ground_truth:
            check_choice("ground-truth task", name, GROUND_TRUTH_TASKS)
        for name in ("n_items", "n_eval", "batch_size"):
            check_at_least(name, getattr(self, name), 1)
        for name in ("n_ground_truth", "calibration_samples", "seed"):
            check_at_least(name, getattr(self, name), 0)
        check_at_least("patience", self.patience, 1, allow_none=True)
        if not 0 < self.heldout_fraction <= 0.5:
            raise DataError(f"heldout_fraction must be in (0, 0.5], got {self.heldout_fraction!r}")
        if not isinstance(self.finetune, FinetuneConfig):
            raise DataError(f"finetune must be a FinetuneConfig, got {type(self.finetune).__name__}")

    def round_slice(self, k: int) -> range:
        """The indices, in the seeded draw of ``rounds · n_items`` items per task, of round k's items."""
        if not 0 <= k < self.rounds:
            raise DataError(f"round must be in [0, {self.rounds}), got {k}")
        return range(k * self.n_items, (k + 1) * self.n_items)

    @property
    def draw_size(self) -> int:
        """Items per task in the seeded train draw: one slice per round plus the last model's cross slice."""
        return (self.rounds + 1) * self.n_items

    def cross_slice(self, k: int) -> range:
        """Indices of the items M_k's cross-predictor is trained on (k >= 1): slice k of the draw."""
        if not 1 <= k <= self.rounds:
            raise DataError(f"cross-predictor round must be in [1, {self.rounds}], got {k}")
        return range(k * self.n_items, (k + 1) * self.n_items)

    def round_finetune(self, k: int) -> FinetuneConfig:
        """Round k's LoRA config: the given one with seed ``finetune.seed + k``."""
        return dataclasses.replace(self.finetune, seed=self.finetune.seed + k)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(tasks=list(self.tasks), properties=list(self.properties), ground_truth=list(self.ground_truth))
        out["finetune"] = self.finetune.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelfTrainConfig:
        """Inverse of :meth:`to_dict` (what a round's provenance holds)."""
        fc = dict(data["finetune"])
        fc["target_modules"] = tuple(fc["target_modules"])
        return cls(**{**data, "finetune": FinetuneConfig(**fc)})


__all__ = ["CROSS_PREDICTORS", "POLICIES", "STEPS", "SelfTrainConfig"]
