"""``BatteryConfig``: what one battery runs (model, task, property, sizes, experiments, decision rule).

Loaded from a study TOML's ``[battery]`` table by :func:`load_battery_config` (errors name the
file, key and line; ``[battery.decision]`` holds the :class:`DecisionConfig` thresholds).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.core.tomlconfig import config_from_mapping, read_toml
from innerprobe.study.decision import DecisionConfig
from innerprobe.study.evidence import EXPERIMENTS


@dataclass(frozen=True)
class BatteryConfig:
    """Settings of one battery run.

    Attributes:
        model: the base model M (embedded name, directory or hub id).
        task, property: what is asked and which property of the answer is predicted.
        n_items: items per stage (test split); ``quick_n_items`` under ``--quick``.
        experiments: which of E1..E8, E3b run (the others get an explicit "not run" row).
        models: which models run side by side: ``M`` and/or ``M1`` (self-trained with LoRA).
        m1_steps: LoRA steps for M1 (trained once, cached by the config hash).
        batch_size, n_boot, seed: passed to every stage.
        decision: the decision rule's thresholds.
    """

    model: str = "smollm2-135m-instruct"
    task: str = "animals"
    property: str = "second_character"
    n_items: int = 60
    quick_n_items: int = 20
    experiments: tuple[str, ...] = EXPERIMENTS
    models: tuple[str, ...] = ("M",)
    m1_steps: int = 40
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self) -> None:
        check_at_least("n_items", self.n_items, 2)
        check_at_least("quick_n_items", self.quick_n_items, 2)
        check_at_least("m1_steps", self.m1_steps, 1)
        check_at_least("batch_size", self.batch_size, 1)
        check_at_least("n_boot", self.n_boot, 100)
        for e in self.experiments:
            check_choice("experiment", e, EXPERIMENTS)
        if not self.models:
            raise DataError("models must name at least one of M, M1")
        for m in self.models:
            check_choice("model role", m, ("M", "M1"))

    def items(self, quick: bool) -> int:
        return self.quick_n_items if quick else self.n_items

    def digest(self) -> str:
        """A short hash of every setting (names M1's cache and the run)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_battery_config(path: str | Path) -> BatteryConfig:
    """The ``[battery]`` table of a study TOML (``[battery.decision]`` for the thresholds)."""
    data, text = read_toml(path)
    table = dict(data.get("battery", {}))
    decision = table.pop("decision", {})
    dc = config_from_mapping(DecisionConfig, decision, source=str(path), text=text, prefix=["battery", "decision"])
    cfg = config_from_mapping(BatteryConfig, table, source=str(path), text=text, prefix=["battery"])
    return BatteryConfig(**{**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "decision": dc})


__all__ = ["BatteryConfig", "load_battery_config"]
