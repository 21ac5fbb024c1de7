"""A sweep as one TOML file: the axes, the experiments, and their expansion into cells.

The schema::

    [sweep]
    name = "example"                       # optional, for the report
    models = ["smollm2-135m-instruct"]     # axes: every combination is a cell
    tasks = ["animals", "colors"]
    properties = ["first_character", "second_character"]
    modes = ["forced"]                     # used by kinds that have a mode (behave)
    seeds = [0]
    n = 16                                 # items per cell (an experiment may override)
    split = "test"

    [experiments.self_prediction]          # one table per experiment
    kind = "behave"                        # a stage kind (innerprobe.study.registry.KINDS)
    batch_size = 16                        # the stage config's own fields (BehaviorConfig here)

    [experiments.transfer]
    kind = "probes"
    target = "property_value"              # ProbeCellOptions fields
    [experiments.transfer.capture]         # a CaptureConfig
    layers = "all"
    [experiments.transfer.probes]          # a ProbeConfig
    folds = 2

Besides ``kind`` and its stage's fields, an experiment may set ``n``, ``split``, ``num_cpus`` and
``num_gpus`` (resources for the Ray executor). ``mode`` and ``seed`` come from the axes only.
Every table is checked when the file is read (the ``[sweep]`` table by pydantic through
:func:`~innerprobe.core.tomlconfig.config_from_mapping`, each experiment by its stage's config),
so a bad key or value fails before any model loads, with the file, key and line::

    sweep.toml:9: [experiments.self_prediction] unknown key 'batchsize'; valid keys: mode, spec, ...

:meth:`SweepConfig.cells` expands the grid into :class:`~innerprobe.study.cells.Cell` s in a
fixed order; their ids do not depend on that order (see :mod:`innerprobe.study.cells`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerprobe.core.errors import InnerprobeError, check_at_least
from innerprobe.core.tomlconfig import ConfigError, config_from_mapping, key_line, read_toml
from innerprobe.study.cells import Cell
from innerprobe.study.registry import Where, get_kind

COMMON_KEYS = ("kind", "n", "split", "num_cpus", "num_gpus")
"""Keys every experiment table may hold besides its stage's own fields."""


@dataclass(frozen=True)
class SweepAxes:
    """The ``[sweep]`` table: the axes every experiment is crossed with, and shared defaults."""

    models: tuple[str, ...] = ("tiny-random",)
    tasks: tuple[str, ...] = ("animals",)
    properties: tuple[str, ...] = ("first_character",)
    modes: tuple[str, ...] = ("forced",)
    seeds: tuple[int, ...] = (0,)
    n: int = 16
    split: str = "test"
    name: str = "sweep"

    def __post_init__(self) -> None:
        for axis in ("models", "tasks", "properties", "modes", "seeds"):
            values = getattr(self, axis)
            if not values:
                raise ValueError(f"[sweep] {axis} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"[sweep] {axis} lists a value twice: {list(values)}")
        check_at_least("n", self.n, 1)


@dataclass(frozen=True)
class ExperimentSpec:
    """One ``[experiments.<name>]`` table: its kind, common keys and the stage's own options."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    n: int | None = None
    split: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        check_at_least("n", self.n, 1, allow_none=True)
        check_at_least("num_cpus", self.num_cpus, 0)
        check_at_least("num_gpus", self.num_gpus, 0)


@dataclass(frozen=True)
class SweepConfig:
    """A whole sweep: the axes and the experiments (see the module docstring)."""

    axes: SweepAxes
    experiments: tuple[ExperimentSpec, ...]
    source: str = "<sweep>"
    text: str | None = None

    def cells(self) -> list[Cell]:
        """Every cell, experiment by experiment, in axis order; each validated by its stage."""
        out: list[Cell] = []
        a = self.axes
        for exp in self.experiments:
            kind = get_kind(exp.kind)
            modes: tuple[str | None, ...] = a.modes if kind.uses_mode else (None,)
            where = Where(self.source, self.text, ("experiments", exp.name))
            for model, task, prop, mode, seed in itertools.product(a.models, a.tasks, a.properties, modes, a.seeds):
                config = kind.build(exp.options, mode, seed, where)
                out.append(Cell(
                    experiment=exp.name, kind=exp.kind, model=model, task=task, property=prop, mode=mode,
                    seed=seed, n=exp.n or a.n, split=exp.split or a.split, options=dict(exp.options),
                    canonical=kind.canonical(config), num_cpus=exp.num_cpus, num_gpus=exp.num_gpus,
                ))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"axes": self.axes.__dict__, "experiments": [e.__dict__ for e in self.experiments],
                "source": self.source}


def _experiment(name: str, table: Any, where: Where) -> ExperimentSpec:
    prefix = list(where.prefix)
    line = key_line(where.text, prefix) if where.text else None
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{'.'.join(prefix)}] must be a table", source=where.source, line=line)
    if "kind" not in table:
        raise ConfigError(f"[{'.'.join(prefix)}] has no 'kind' (the stage it runs)", source=where.source,
                          key="kind", line=line)
    try:
        get_kind(str(table["kind"]))
    except InnerprobeError as error:
        raise ConfigError(f"[{'.'.join(prefix)}] kind: {error}", source=where.source, key="kind",
                          line=key_line(where.text, [*prefix, "kind"]) if where.text else line) from error
    common = {k: table[k] for k in COMMON_KEYS if k in table}
    options = {k: v for k, v in table.items() if k not in COMMON_KEYS}
    spec = config_from_mapping(ExperimentSpec, {"name": name, **common, "options": options},
                               source=where.source, text=where.text, prefix=where.prefix)
    return spec


def sweep_from_mapping(data: Mapping[str, Any], *, source: str = "<sweep>", text: str | None = None) -> SweepConfig:
    """A :class:`SweepConfig` from parsed TOML ``data``; every cell is validated here."""
    unknown = [k for k in data if k not in ("sweep", "experiments")]
    if unknown:
        raise ConfigError(f"unknown table {unknown[0]!r}; valid tables: sweep, experiments", source=source,
                          key=unknown[0], line=key_line(text, [unknown[0]]) if text else None)
    axes = config_from_mapping(SweepAxes, data.get("sweep", {}), source=source, text=text, prefix=["sweep"])
    tables = data.get("experiments", {})
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError("no [experiments.<name>] tables: a sweep needs at least one experiment", source=source)
    experiments = tuple(_experiment(name, t, Where(source, text, ("experiments", name))) for name, t in tables.items())
    config = SweepConfig(axes, experiments, source, text)
    cells = config.cells()
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError("two cells of the sweep are the same (same experiment and axes)", source=source)
    return config


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and check the sweep file ``path`` (errors name the file, key and line)."""
    data, text = read_toml(path)
    return sweep_from_mapping(data, source=str(path), text=text)


__all__ = ["SweepAxes", "ExperimentSpec", "SweepConfig", "COMMON_KEYS", "load_sweep", "sweep_from_mapping"]
