"""One result protocol for every stage: ``.table``, ``.summary``, ``.figure()``, ``.save()``, ``.load()``.

A stage result is a dataclass that subclasses :class:`Result`. It carries

* ``table``: the tidy ``pandas.DataFrame`` of the stage (one row per item, cell, layer, ...),
* ``summary``: a typed dataclass (a :class:`Summary`) whose numbers are
  :class:`~innerprobe.core.stats.Estimate`\\ s with their interval and ``n``, not strings,
* ``figure()``: a plotly figure of the result,
* ``save(dir)`` / ``Result.load(dir)``: a directory of open formats, never pickle.

How :meth:`Result.save` lays a result out, field by field:

* a ``DataFrame`` → ``<field>.parquet``;
* a ``numpy`` array or ``torch`` tensor, or a ``dict`` of them → one ``arrays.safetensors``
  (keys ``<field>`` or ``<field>/<key>``);
* everything else (numbers, strings, paths, lists, dicts, nested dataclasses such as
  ``Estimate``) → ``result.json``, with each dataclass tagged by its class so :meth:`load` can
  rebuild it. Only classes inside ``innerprobe`` are rebuilt: a result directory can never make
  Python import arbitrary code.

``result.json`` also records the result class and a format version; loading a directory into
the wrong class raises ``DataError`` naming both. Every write goes through
:mod:`innerprobe.core.io` (temporary name, then an atomic rename).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file

from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_path, read_json, write_json, write_parquet

FORMAT = 1
RESULT_JSON = "result.json"
ARRAYS = "arrays.safetensors"
_DATACLASS = "__dataclass__"
_TUPLE = "__tuple__"
_FLOAT = "__float__"

R = TypeVar("R", bound="Result")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> type:
    module, _, qual = name.partition(":")
    if module != "innerprobe" and not module.startswith("innerprobe."):
        raise DataError(f"refusing to rebuild {name!r}: only innerprobe classes are loaded from a result")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def encode(obj: Any) -> Any:
    """A JSON-safe form of ``obj`` that :func:`decode` turns back into the same value."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {_DATACLASS: _qualname(type(obj)), **out}
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return {_TUPLE: [encode(v) for v in obj]}
    if isinstance(obj, tuple):  # NamedTuple: rebuilt by class
        return {_DATACLASS: _qualname(type(obj)), **{k: encode(v) for k, v in obj._asdict().items()}}
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, set, frozenset)):
        return [encode(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_FLOAT: repr(obj)}
    if isinstance(obj, np.ndarray):
        return [encode(v) for v in obj.tolist()]
    return obj


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _TUPLE in obj:
        return tuple(decode(v) for v in obj[_TUPLE])
    if _FLOAT in obj:
        return float(obj[_FLOAT])
    if _DATACLASS in obj:
        cls = _resolve(obj[_DATACLASS])
        values = {k: decode(v) for k, v in obj.items() if k != _DATACLASS}
        return _build(cls, values)
    return {k: decode(v) for k, v in obj.items()}


def _build(cls: type, values: dict[str, Any]) -> Any:
    if not dataclasses.is_dataclass(cls):  # NamedTuple
        return cls(**values)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    init = {k: v for k, v in values.items() if k in fields and fields[k].init}
    obj = cls(**init)
    for k, v in values.items():
        if k in fields and not fields[k].init:
            object.__setattr__(obj, k, v)
    return obj


def _is_array(v: Any) -> bool:
    return isinstance(v, (np.ndarray, torch.Tensor))


def _as_numpy(v: Any) -> np.ndarray:
    return v.detach().cpu().contiguous().numpy() if isinstance(v, torch.Tensor) else np.ascontiguousarray(v)


def _is_array_dict(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(_is_array(x) for x in v.values())


@dataclasses.dataclass
class Summary:
    """Base of the typed summaries: ``.to_dict()`` for JSON and ``.table`` for a glance."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def table(self) -> pd.DataFrame:
        """One row per scalar measure: ``measure, value, ci_low, ci_high, n, method``."""
        rows = []
        for name, v in self.to_dict().items():
            if hasattr(v, "ci_low") and hasattr(v, "value"):
                rows.append({"measure": name, "value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high,
                             "n": getattr(v, "n", None), "method": getattr(v, "method", "")})
            elif isinstance(v, (int, float, str, bool, np.generic)) or v is None:
                rows.append({"measure": name, "value": v})
        return pd.DataFrame(rows)


@dataclasses.dataclass
class Result:
    """Base of every stage result (see the module docstring for the on-disk layout).

    Subclasses are dataclasses with a ``table`` (field or property), a ``summary`` (a
    :class:`Summary`) and a ``figure()``; ``save``/``load`` come from here.
    """

    stage: ClassVar[str] = "result"

    def figure(self) -> Any:  # pragma: no cover - every subclass overrides
        raise NotImplementedError(f"{type(self).__name__} has no figure")

    def save(self, directory: str | Path) -> Path:
        """Write every field to ``directory`` (Parquet, safetensors, JSON; atomically)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"type": _qualname(type(self)), "format": FORMAT, "stage": self.stage,
                                "tables": [], "arrays": [], "fields": {}}
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, pd.DataFrame):
                write_parquet(out / f"{f.name}.parquet", v)
                meta["tables"].append(f.name)
            elif _is_array(v):
                arrays[f.name] = _as_numpy(v)
                meta["arrays"].append({"field": f.name, "torch": isinstance(v, torch.Tensor)})
            elif _is_array_dict(v):
                for k, x in v.items():
                    arrays[f"{f.name}/{k}"] = _as_numpy(x)
                meta["arrays"].append({"field": f.name, "keys": list(v), "torch": isinstance(next(iter(v.values())), torch.Tensor)})
            else:
                meta["fields"][f.name] = encode(v)
        if arrays:
            with atomic_path(out / ARRAYS) as tmp:
                save_file(arrays, str(tmp))
        write_json(out / RESULT_JSON, meta)
        return out

    @classmethod
    def load(cls: type[R], directory: str | Path) -> R:
        """Rebuild a result written by :meth:`save`."""
        d = Path(directory)
        if not (d / RESULT_JSON).exists():
            raise DataError(f"{d} holds no saved result ({RESULT_JSON} missing)")
        meta = read_json(d / RESULT_JSON)
        saved = cls if meta["type"] == _qualname(cls) else _resolve(meta["type"])
        if not issubclass(saved, cls):
            raise DataError(f"{d} holds a {saved.__name__}, not a {cls.__name__}")
        if meta.get("format") != FORMAT:
            raise DataError(f"{d}: result format {meta.get('format')} is not {FORMAT}")
        values = {k: decode(v) for k, v in meta["fields"].items()}
        for name in meta["tables"]:
            values[name] = pd.read_parquet(d / f"{name}.parquet")
        if meta["arrays"]:
            arrays = load_file(str(d / ARRAYS))
            for a in meta["arrays"]:
                conv = torch.from_numpy if a["torch"] else (lambda x: x)
                if "keys" in a:
                    values[a["field"]] = {k: conv(arrays[f"{a['field']}/{k}"]) for k in a["keys"]}
                else:
                    values[a["field"]] = conv(arrays[a["field"]])
        return _build(saved, values)


__all__ = ["Result", "Summary", "encode", "decode", "FORMAT"]
