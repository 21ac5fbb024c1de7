"""Stage kinds by name: how a cell's options are validated, hashed and run.

A :class:`StageKind` ties together

* ``build(options, mode, seed, where)``: the stage's own config dataclass from the experiment's
  TOML table (validated by :func:`innerprobe.core.tomlconfig.config_from_mapping`, so errors
  name the file, key and line), with the cell's mode and seed filled in;
* ``canonical(config)``: the validated config as plain JSON data, defaults included (what a
  cell's id is hashed from);
* ``run(model, cell, config)``: the function that runs one cell and returns its metric rows.

``uses_mode`` says whether the ``[sweep] modes`` axis applies (a probe has no free/forced mode,
so its cells are not repeated per mode). :func:`register_kind` adds a kind; the built-in ones are
``behave`` and ``probes`` (:mod:`innerprobe.study.stages`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from innerprobe.activations.config import CaptureConfig
from innerprobe.behavior import BehaviorConfig
from innerprobe.behavior.config import config_record
from innerprobe.core.errors import UnknownNameError
from innerprobe.core.tomlconfig import ConfigError, config_from_mapping, key_line
from innerprobe.probes import ProbeConfig
from innerprobe.study.stages import ProbeCellOptions, behave_cell, probes_cell


@dataclass(frozen=True)
class Where:
    """Where an options table sits, for error messages: file, its text, dotted table path."""

    source: str = "<sweep>"
    text: str | None = None
    prefix: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageKind:
    """One kind of sweep experiment (see the module docstring)."""

    name: str
    uses_mode: bool
    build: Callable[[Mapping[str, Any], str | None, int, Where], Any]
    canonical: Callable[[Any], dict[str, Any]]
    run: Callable[[Any, Any, Any], list[dict[str, Any]]]


def _refuse_axis_keys(options: Mapping[str, Any], axes: Sequence[str], where: Where) -> None:
    for key in axes:
        if key in options:
            raise ConfigError(
                f"[{'.'.join(where.prefix)}] {key!r} is set by the [sweep] axes ({key}s), not per experiment",
                source=where.source, key=key,
                line=key_line(where.text, [*where.prefix, key]) if where.text else None,
            )


def _build_behave(options: Mapping[str, Any], mode: str | None, seed: int, where: Where) -> BehaviorConfig:
    _refuse_axis_keys(options, ("mode", "seed"), where)
    data = {**options, "mode": mode, "seed": seed}
    return config_from_mapping(BehaviorConfig, data, source=where.source, text=where.text, prefix=where.prefix)


def _build_probes(options: Mapping[str, Any], mode: str | None, seed: int, where: Where) -> ProbeCellOptions:
    """Sub-tables ``capture`` and ``probes`` become a CaptureConfig and a ProbeConfig (seeded)."""
    data = dict(options)
    sub: dict[str, Any] = {}
    for name, cls, default in (("capture", CaptureConfig, {"hypothetical_positions": ["h_last"]}),
                               ("probes", ProbeConfig, {})):
        table = data.pop(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{'.'.join(where.prefix)}] {name} must be a table", source=where.source,
                              key=name, line=key_line(where.text, [*where.prefix, name]) if where.text else None)
        inner = Where(where.source, where.text, (*where.prefix, name))
        _refuse_axis_keys(table, ("seed",), inner)
        sub[name] = config_from_mapping(cls, {**default, **table, "seed": seed}, source=where.source, text=where.text,
                                        prefix=inner.prefix)
    config = config_from_mapping(ProbeCellOptions, data, source=where.source, text=where.text, prefix=where.prefix)
    try:
        return dataclasses.replace(config, **sub)
    except (ValueError, TypeError) as error:
        line = key_line(where.text, list(where.prefix)) if where.text else None
        raise ConfigError(f"[{'.'.join(where.prefix)}] {error}", source=where.source, line=line) from error


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


def _canonical_behave(config: BehaviorConfig) -> dict[str, Any]:
    record = _plain(config_record(config))
    return {k: v for k, v in record.items() if k not in ("mode", "seed")}


def _canonical_probes(config: ProbeCellOptions) -> dict[str, Any]:
    record = _plain(config)
    for name in ("capture", "probes"):
        record[name].pop("seed", None)
    return record


KINDS: dict[str, StageKind] = {
    "behave": StageKind("behave", True, _build_behave, _canonical_behave, behave_cell),
    "probes": StageKind("probes", False, _build_probes, _canonical_probes, probes_cell),
}


def register_kind(kind: StageKind) -> None:
    """Add (or replace) a stage kind, e.g. a study's own experiment, under ``kind.name``."""
    KINDS[kind.name] = kind


def get_kind(name: str) -> StageKind:
    """The stage kind called ``name``; ``UnknownNameError`` listing the kinds otherwise."""
    if name not in KINDS:
        raise UnknownNameError("stage kind", name, sorted(KINDS))
    return KINDS[name]


__all__ = ["StageKind", "Where", "KINDS", "register_kind", "get_kind"]
