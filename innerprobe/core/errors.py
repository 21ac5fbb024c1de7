"""Errors that name the bad input and the valid options."""

from __future__ import annotations

from collections.abc import Iterable


class InnerprobeError(Exception):
    """Base class for every error innerprobe raises on purpose."""


class UnknownNameError(InnerprobeError, KeyError):
    """A model, task, property, site, ... name that innerprobe does not know."""

    def __init__(self, kind: str, name: object, valid: Iterable[str]):
        self.kind = kind
        self.name = name
        self.valid = sorted(str(v) for v in valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DataError(InnerprobeError, ValueError):
    """Input data that cannot be used (malformed file, empty set, too few items...)."""


class NotApplicableError(InnerprobeError, ValueError):
    """A property asked of a task it does not apply to (``is_even`` on animals)."""


class StoreMismatchError(InnerprobeError, ValueError):
    """An on-disk artifact whose manifest does not match the request."""


class OutDirError(InnerprobeError, ValueError):
    """An output directory that cannot be written, or that holds another stage's results."""


def check_at_least(name: str, value: float | None, minimum: float, *, allow_none: bool = False) -> None:
    """``DataError`` naming ``name`` unless ``value >= minimum`` (``None`` passes with ``allow_none``)."""
    if value is None and allow_none:
        return
    if value is None or value < minimum:
        raise DataError(f"{name} must be >= {minimum}, got {value!r}")


def check_choice(kind: str, value: object, valid: Iterable[str]) -> None:
    """``UnknownNameError`` listing ``valid`` unless ``value`` is one of them."""
    valid = list(valid)
    if value not in valid:
        raise UnknownNameError(kind, value, valid)
