"""One cell of a sweep: one stage run on one (model, task, property, mode, seed), with a stable id.

A sweep is a grid; a *cell* is one point of it: which experiment (its name, its stage kind and
the stage's options as written in the TOML), which model, task, property, mode (``None`` for a
kind that has no mode) and seed, how many items of which split, and what it needs to run
(``num_cpus``, ``num_gpus``). Its id is the first 16 hex digits of the sha256 of its canonical
JSON (keys sorted, validated options with their defaults filled in, see
:func:`innerprobe.study.registry.canonical_options`), so the id

* is the same in every run and in every order the axes or tables are written in, and
* changes exactly when something that changes the numbers changes.

A cell's outcome (:class:`CellOutcome`) is what an executor hands back: metric rows (see
:data:`METRIC_COLUMNS`) or the error that stopped it, the model fingerprint and the wall time.
Outcomes are plain data, so they cross process and Ray boundaries without pickling models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

METRIC_COLUMNS = ("metric", "estimate", "ci_low", "ci_high", "n")
"""The columns of one metric row: its name, the point estimate, the interval and the item count."""

CELL_COLUMNS = ("cell_id", "experiment", "kind", "model", "task", "property", "mode", "seed")
"""The columns that say which cell a metric row came from (every stored row carries them)."""


def canonical_json(data: Any) -> str:
    """``data`` as JSON with sorted keys and no whitespace: equal data give equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def digest(data: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the sha256 of ``canonical_json(data)``."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    """One experiment on one point of the sweep's axes (see the module docstring).

    ``options`` are the experiment's stage options as written (JSON-able; validated again where
    the cell runs), ``canonical`` the validated options with every default filled in (what the
    id and ``config_hash`` are made from).
    """

    experiment: str
    kind: str
    model: str
    task: str
    property: str
    mode: str | None
    seed: int
    n: int
    split: str
    options: dict[str, Any] = field(default_factory=dict)
    canonical: dict[str, Any] = field(default_factory=dict)
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def identity(self) -> dict[str, Any]:
        """Everything that decides the cell's numbers (resources do not)."""
        return {
            "experiment": self.experiment, "kind": self.kind, "model": self.model, "task": self.task,
            "property": self.property, "mode": self.mode, "seed": self.seed, "n": self.n,
            "split": self.split, "options": self.canonical,
        }

    @property
    def id(self) -> str:
        """Stable id: hash of :meth:`identity` (same across runs and orderings)."""
        return digest(self.identity())

    @property
    def config_hash(self) -> str:
        """Hash of the experiment's validated stage options alone (groups cells of one setting)."""
        return digest({"kind": self.kind, "options": self.canonical})

    def labels(self) -> dict[str, Any]:
        """The :data:`CELL_COLUMNS` of this cell."""
        return {"cell_id": self.id, "experiment": self.experiment, "kind": self.kind, "model": self.model,
                "task": self.task, "property": self.property, "mode": self.mode, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**{k: v for k, v in data.items() if k != "id"})


@dataclass(frozen=True)
class CellOutcome:
    """What running one cell gave: metric rows, or the error (type and message) that stopped it."""

    cell_id: str
    rows: list[dict[str, Any]] | None
    fingerprint: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_type is None


def metric_row(metric: str, estimate: float, ci_low: float | None = None, ci_high: float | None = None,
               n: int | None = None) -> dict[str, Any]:
    """One metric row (:data:`METRIC_COLUMNS`); a missing interval or count is NaN / -1."""
    nan = float("nan")
    return {
        "metric": metric, "estimate": float(estimate),
        "ci_low": nan if ci_low is None else float(ci_low),
        "ci_high": nan if ci_high is None else float(ci_high),
        "n": -1 if n is None else int(n),
    }


def estimate_row(metric: str, est: Any) -> dict[str, Any]:
    """A metric row from a :class:`~innerprobe.core.stats.Estimate`."""
    return metric_row(metric, est.value, est.ci_low, est.ci_high, est.n)


__all__ = ["Cell", "CellOutcome", "METRIC_COLUMNS", "CELL_COLUMNS", "canonical_json", "digest",
           "metric_row", "estimate_row"]
