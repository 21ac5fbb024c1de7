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
        m1_steps: LoRA steps for M1 (trained once, cached by :meth:`m1_digest` and the base
            model's fingerprint; see :mod:`innerprobe.study.m1_model`).
        m1_train_items: train-split items whose own self-predictions M1 is trained on (never the
            test items the battery measures).
        m1_rank, m1_lr: LoRA rank and peak learning rate of M1.
        patch_pairs: minimal pairs of E4/E5 (the decision rule reads rows on >= ``min_n`` items).
        patch_items: test items searched for those pairs.
        patch_layers: layers patched (``"all"``, ``"0,5,9"`` or a slice such as ``"::8"``).
        patch_p_tokens, patch_last: P tokens and last prompt tokens patched besides the word.
        patch_min_gap: the pairs' logit-difference gap filter.
        transplant_from: E5 transplants at the patched layers from this fraction of the depth on
            (at the first layers the O residual at the word is its token embedding, so a
            transplant there just rewrites H's input).
        peer: the peer model of E1's cross-model row and of E3b (an embedded name, directory or
            hub id; ``""``: no peer, those rows say "not run").
        batch_size, n_boot, seed: passed to every stage.
        decision: the decision rule's thresholds.
    """

    model: str = "smollm2-135m-instruct"
    task: str = "animals"
    property: str = "second_character"
    n_items: int = 60
    quick_n_items: int = 20
    experiments: tuple[str, ...] = EXPERIMENTS
    models: tuple[str, ...] = ("M", "M1")
    m1_steps: int = 40
    m1_train_items: int = 80
    m1_rank: int = 8
    m1_lr: float = 1e-3
    patch_pairs: int = 20
    patch_items: int = 200
    patch_layers: str = "::8"
    patch_p_tokens: int = 3
    patch_last: int = 1
    patch_min_gap: float = 0.5
    transplant_from: float = 0.33
    peer: str = "gemma-3-270m"
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self) -> None:
        check_at_least("n_items", self.n_items, 2)
        check_at_least("quick_n_items", self.quick_n_items, 2)
        check_at_least("m1_steps", self.m1_steps, 1)
        check_at_least("m1_train_items", self.m1_train_items, 2)
        check_at_least("m1_rank", self.m1_rank, 1)
        if not self.m1_lr > 0:
            raise DataError(f"m1_lr must be > 0, got {self.m1_lr!r}")
        check_at_least("patch_pairs", self.patch_pairs, 1)
        check_at_least("patch_items", self.patch_items, 2)
        check_at_least("patch_p_tokens", self.patch_p_tokens, 0)
        check_at_least("patch_last", self.patch_last, 1)
        if not 0 <= self.transplant_from < 1:
            raise DataError(f"transplant_from must be in [0, 1), got {self.transplant_from!r}")
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
        return _digest(asdict(self))

    def evidence_settings(self) -> dict:
        """The settings the evidence rows depend on: all but the decision rule and which
        experiments and models run (a rerun may add experiments or change a threshold and keep
        what was measured; see :func:`~innerprobe.study.battery.run_battery`)."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_CHANGES}

    def m1_digest(self) -> str:
        """A short hash of the settings M1's training reads (names M1's cache, with the base fingerprint).

        Only these fields: changing a threshold or an experiment list must not retrain M1.
        """
        return _digest({k: getattr(self, k) for k in M1_FIELDS})


#: Settings a battery run may change on resume (they do not change a measured row).
RESUMABLE_CHANGES = ("decision", "experiments", "models")
#: The settings M1's training depends on (see :meth:`BatteryConfig.m1_digest`).
M1_FIELDS = ("model", "task", "property", "m1_steps", "m1_train_items", "m1_rank", "m1_lr", "batch_size", "seed")


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_battery_config(path: str | Path) -> BatteryConfig:
    """The ``[battery]`` table of a study TOML (``[battery.decision]`` for the thresholds)."""
    data, text = read_toml(path)
    table = dict(data.get("battery", {}))
    decision = table.pop("decision", {})
    dc = config_from_mapping(DecisionConfig, decision, source=str(path), text=text, prefix=["battery", "decision"])
    cfg = config_from_mapping(BatteryConfig, table, source=str(path), text=text, prefix=["battery"])
    return BatteryConfig(**{**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "decision": dc})


__all__ = ["M1_FIELDS", "RESUMABLE_CHANGES", "BatteryConfig", "load_battery_config"]
