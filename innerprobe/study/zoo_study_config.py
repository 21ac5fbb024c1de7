"""``ZooStudyConfig``: which zoo models the battery is tested on, and the battery's sizes there.

Read from a study TOML's ``[zoo]`` table by :func:`load_zoo_study` (errors name the file, key and
line). Every zoo model of the grid ``task_kinds × routes × seeds`` is built with the ``ZooConfig``
defaults except the fields given here, and measured by the battery with the thresholds in
``[zoo.decision]`` — the battery's defaults unless a file changes them. Thresholds must not be
chosen on the zoo's results; ``held_out_seeds`` names the seeds that no threshold was looked at
for (all of them, when the defaults are used), and the result reports them apart.
"""

from __future__ import annotations

import builtins
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.core.tomlconfig import config_from_mapping, read_toml
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.decision import DecisionConfig
from innerprobe.study.evidence import EXPERIMENTS
from innerprobe.zoo.config import ROUTES, TASK_KINDS, ZooConfig


@dataclass(frozen=True)
class ZooStudyConfig:
    """Settings of one zoo study (the confusion table of planted mechanism vs verdict).

    Attributes:
        task_kinds, routes, seeds: the grid of zoo models (each a :class:`ZooConfig`).
        held_out_seeds: seeds whose results no threshold was chosen on (default: every seed).
        task, property: the zoo models' task and property (closed vocabulary, one character).
        build: any other :class:`ZooConfig` field (sizes, steps, learning rate; ``[zoo.build]``
            in TOML), the same for every model of the grid.
        n_items: the battery's test items per stage (at most the zoo's ``n_test``: a memorised
            model knows only the items it was built on).
        experiments: battery experiments run on each model.
        patch_layers, patch_pairs, patch_items: E4/E5 sizes (tiny models: every layer).
        peer: ``"sibling"`` (the same construction at the next seed of ``seeds``: a near-identical
            M′ that lacks a memorised model's planted answers) or ``""`` (no peer rows).
        n_boot: bootstrap resamples of every interval.
        decision: the decision rule's thresholds.
    """

    task_kinds: tuple[str, ...] = TASK_KINDS
    routes: tuple[str, ...] = ROUTES
    seeds: tuple[int, ...] = (0, 1)
    held_out_seeds: tuple[int, ...] | None = None
    task: str = "animals"
    property: str = "second_character"
    build: dict[str, Any] = field(default_factory=dict)
    n_items: int = 48
    experiments: tuple[str, ...] = EXPERIMENTS
    patch_layers: str = "all"
    patch_pairs: int = 20
    patch_items: int = 200
    peer: str = "sibling"
    n_boot: int = 1000
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def __post_init__(self) -> None:
        for k in self.task_kinds:
            check_choice("task_kinds", k, TASK_KINDS)
        for r in self.routes:
            check_choice("routes", r, ROUTES)
        if not self.task_kinds or not self.routes or not self.seeds:
            raise DataError("task_kinds, routes and seeds must each name at least one value")
        if len(set(self.seeds)) != len(self.seeds):
            raise DataError(f"seeds must be distinct, got {list(self.seeds)}")
        for s in self.seeds:
            check_at_least("seeds", s, 0)
        unknown = set(self.held_out_seeds or ()) - set(self.seeds)
        if unknown:
            raise DataError(f"held_out_seeds {sorted(unknown)} are not among seeds {list(self.seeds)}")
        for e in self.experiments:
            check_choice("experiment", e, EXPERIMENTS)
        check_choice("peer", self.peer, ("sibling", ""))
        fixed = ("task_kind", "route", "seed", "task", "property")
        for key in self.build:
            check_choice("build key", key, tuple(f.name for f in fields(ZooConfig) if f.name not in fixed))
        n_test = self.zoo_config("text", "simulation", self.seeds[0]).n_test
        if not 2 <= self.n_items <= n_test:
            raise DataError(f"n_items must be in [2, {n_test}] (the zoo's n_test test items), got {self.n_items} "
                            "(raise n_test in build to measure more)")
        check_at_least("n_boot", self.n_boot, 100)

    @builtins.property  # the field ``property`` shadows the builtin in the class body
    def held_out(self) -> tuple[int, ...]:
        return tuple(self.seeds if self.held_out_seeds is None else self.held_out_seeds)

    def zoo_config(self, task_kind: str, route: str, seed: int) -> ZooConfig:
        """The :class:`ZooConfig` of one grid point (build settings from this config)."""
        return ZooConfig(**{**self.build, "task_kind": task_kind, "route": route, "seed": seed, "task": self.task,
                            "property": self.property})

    def grid(self) -> list[ZooConfig]:
        """Every zoo model of the study, in task_kind, route, seed order."""
        return [self.zoo_config(k, r, s) for k in self.task_kinds for r in self.routes for s in self.seeds]

    def peer_seed(self, seed: int) -> int | None:
        """The seed of a model's peer: the next seed of ``seeds`` (cyclic); None without a peer."""
        if self.peer != "sibling" or len(self.seeds) < 2:
            return None
        i = self.seeds.index(seed)
        return self.seeds[(i + 1) % len(self.seeds)]

    def battery_config(self, model_dir: str | Path, peer_dir: str | Path | None, zoo: ZooConfig) -> BatteryConfig:
        """The battery run on one zoo model: M only (no self-training), items of the zoo's seed."""
        return BatteryConfig(
            model=str(model_dir), task=zoo.task, property=zoo.property, n_items=self.n_items,
            quick_n_items=self.n_items, experiments=self.experiments, models=("M",),
            patch_pairs=self.patch_pairs, patch_items=self.patch_items, patch_layers=self.patch_layers,
            peer="" if peer_dir is None else str(peer_dir), n_boot=self.n_boot, seed=zoo.item_seed,
            decision=self.decision,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def load_zoo_study(path: str | Path) -> ZooStudyConfig:
    """The ``[zoo]`` table of a study TOML (``[zoo.decision]``: the thresholds; ``[zoo.build]``: the
    zoo models' build settings)."""
    data, text = read_toml(path)
    table = dict(data.get("zoo", {}))
    decision = table.pop("decision", {})
    build = table.pop("build", {})
    dc = config_from_mapping(DecisionConfig, decision, source=str(path), text=text, prefix=["zoo", "decision"])
    zc = config_from_mapping(ZooConfig, build, source=str(path), text=text, prefix=["zoo", "build"])
    cfg = config_from_mapping(ZooStudyConfig, table, source=str(path), text=text, prefix=["zoo"])
    return ZooStudyConfig(**{**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "decision": dc,
                             "build": {k: getattr(zc, k) for k in build}})


__all__ = ["ZooStudyConfig", "load_zoo_study"]
