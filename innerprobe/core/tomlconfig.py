"""Stage configs from TOML files, with errors that name the bad key and its line.

Every stage's settings are a frozen dataclass that checks itself when built
(``BehaviorConfig``, ``InjectionConfig``, ...). A study or sweep file is TOML whose tables hold
those settings. :func:`config_from_toml` reads one table into one config class: pydantic checks
the types (TOML arrays become tuples, ints widen to floats) and the dataclass's own
``__post_init__`` checks the values. Whatever fails becomes one :class:`ConfigError` that says
which file, which dotted key, which line, and what was expected, e.g.::

    study.toml:12: [battery] n_items: Input should be a valid integer (got 'many')
    study.toml:4: [probes] unknown key 'layres'; valid keys: layers, folds, ...

TOML gives no positions, so the line of a key is found by walking the text's table headers
(:func:`key_line`); a key that cannot be found is reported at its table's header or not at all.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from innerprobe.core.errors import InnerprobeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]+\"|'[^']+'|[A-Za-z0-9_.-]+)\s*=")


class ConfigError(InnerprobeError, ValueError):
    """A config file or mapping that does not validate: names the file, key, line and problem."""

    def __init__(self, message: str, *, source: str, key: str | None = None, line: int | None = None):
        self.source = source
        self.key = key
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


def read_toml(path: str | Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; return the data and its text (for line lookups).

    A file that is missing or not valid TOML raises :class:`ConfigError` with TOML's own message
    (which carries the line and column).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the config file ({error.strerror})", source=str(path)) from error
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}", source=str(path)) from error


def key_line(text: str, dotted: Sequence[str | int]) -> int | None:
    """The 1-based line where the key ``dotted`` (table path then key) is written, if found.

    Walks the table headers (``[a.b]`` and ``[[a]]``, counting array-of-table entries so that
    ``("cells", 2, "task")`` finds the task of the third ``[[cells]]``) and ``key = value`` lines.
    Falls back to the innermost table header that matched; ``None`` when nothing matched.
    """
    names = [str(part) for part in dotted if not isinstance(part, int)]
    indices = [part for part in dotted if isinstance(part, int)]
    table: list[str] = []
    array_seen: dict[str, int] = {}
    best: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            table = [part.strip().strip("\"'") for part in header.group(1).split(".")]
            if raw.lstrip().startswith("[["):
                name = ".".join(table)
                array_seen[name] = array_seen.get(name, -1) + 1
            if _table_matches(table, names, indices, array_seen):
                best = number if len(table) == len(names) - 1 or best is None else best
            continue
        key = _KEY.match(raw)
        if key is None:
            continue
        written = table + [part.strip("\"'") for part in key.group(1).split(".")]
        if written == names and _table_matches(table, names, indices, array_seen):
            return number
    return best


def _table_matches(table: list[str], names: list[str], indices: list[int], seen: dict[str, int]) -> bool:
    if table != names[: len(table)]:
        return False
    name = ".".join(table)
    return not indices or name not in seen or seen[name] == indices[0]


def config_from_mapping(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    text: str | None = None,
    prefix: Sequence[str | int] = (),
) -> T:
    """Build the config dataclass ``cls`` from ``data``; any failure is a :class:`ConfigError`.

    Unknown keys are refused (with the valid keys listed), types are checked and coerced by
    pydantic, values by the class itself. ``prefix`` is where ``data`` sits in the file (for the
    message and the line lookup in ``text``).
    """
    label = f"[{'.'.join(str(p) for p in prefix)}] " if prefix else ""
    valid = _field_names(cls)
    for key in data:
        if valid and key not in valid:
            raise ConfigError(
                f"{label}unknown key {key!r}; valid keys: {', '.join(valid)}",
                source=source,
                key=key,
                line=key_line(text, [*prefix, key]) if text else None,
            )
    adapter = TypeAdapter(cls)
    try:
        return adapter.validate_python(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        loc = [part for part in first["loc"] if part != "__post_init__"]
        key = ".".join(str(part) for part in loc) or None
        got = f" (got {first['input']!r})" if loc and "input" in first else ""
        line = key_line(text, [*prefix, *loc]) if text and loc else None
        if line is None and text and prefix:
            line = key_line(text, list(prefix))
        name = f"{key}: " if key else ""
        raise ConfigError(f"{label}{name}{first['msg']}{got}", source=source, key=key, line=line) from error
    except (InnerprobeError, ValueError, TypeError) as error:
        line = key_line(text, list(prefix)) if text and prefix else None
        raise ConfigError(f"{label}{error}", source=source, line=line) from error


def _field_names(cls: type) -> list[str]:
    """The keys ``cls`` accepts: a dataclass's fields or a pydantic model's fields."""
    if dataclasses.is_dataclass(cls):
        return [field.name for field in dataclasses.fields(cls) if field.init]
    return list(getattr(cls, "model_fields", {}))


def config_from_toml(cls: type[T], path: str | Path, *, table: str | None = None) -> T:
    """Read ``[table]`` (or the whole file) of the TOML file ``path`` into the config ``cls``.

    A missing table gives the class's defaults. Errors name the file, key and line.
    """
    data, text = read_toml(path)
    prefix: list[str] = table.split(".") if table else []
    for part in prefix:
        value = data.get(part, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{table}] must be a table", source=str(path), line=key_line(text, prefix))
        data = dict(value)
    return config_from_mapping(cls, data, source=str(path), text=text, prefix=prefix)
