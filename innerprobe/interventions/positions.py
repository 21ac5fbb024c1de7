"""Which token positions an intervention touches, in a row's own coordinates.

A position is named by its **real-token index** ``t``: 0 is the row's first real token, whatever
left padding the batch added, and the index keeps counting through generation (the first
generated token has ``t = L``, the prompt's length). That is what makes a selector mean the same
thing in a padded batch forward, a single-row forward and cached generation, where each decoding
step's forward sees one new token and a naive "position 0 of this chunk" is the classic
off-by-one.

Selectors (each a small frozen dataclass with a ``select`` method):

=====================  =====================================================================
``All()``              every position, prompt and generated
``Prompt()``           ``t < L``: build the prompt's keys/values steered, then decode unsteered
``Generation()``       ``t >= L``: generated tokens only
``Last()``             ``t == L - 1``: the prompt's last token (where the next token is read)
``Single(t)``          one index (negative: from the prompt's end, ``-1`` is ``Last()``)
``Range(a, b)``        ``a <= t < b`` (negative bounds count from the prompt's end)
``From(t)``            ``t`` onward, through generation
``Span(name)``         a named span of the row's prompt, e.g. ``"quote"`` (the quoted P in H:
                       ``quote_start:quote_end``); needs the prompts passed to ``intervene``
``FromSpan(name)``     ``t >= start`` of a named span, through generation: ``"quote_onward"`` is
                       the quoted P and everything after it up to ``h_last`` (where an ablation
                       of what H reads from P must act)
``AfterSpan(name)``    ``t >= end`` of a named span, through generation: ``"after_quote"`` is
                       everything after the quoted P up to ``h_last`` (where H would form an
                       answer once it has read P; P's own tokens are left alone)
``BeforePrefill()``    ``t < prefill_start``: retroactively, every token before the assistant
                       prefill ("Answer:"), leaving the prefill and what follows unsteered
=====================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from innerprobe.core.errors import DataError

SPAN_NAMES: dict[str, tuple[str, str]] = {"quote": ("quote_start", "quote_end")}


@dataclass(frozen=True)
class RowContext:
    """What a selector may know about one row: its prompt length and named positions."""

    prompt_len: int
    positions: Mapping[str, int]


def _index(i: int, length: int) -> int:
    return i + length if i < 0 else i


@dataclass(frozen=True)
class Selector:
    """Base: ``select(t, row)`` → bool mask over the chunk's positions."""

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:  # pragma: no cover
        raise NotImplementedError

    @property
    def label(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class All(Selector):
    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        return torch.ones_like(t, dtype=torch.bool)


@dataclass(frozen=True)
class Prompt(Selector):
    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        return t < row.prompt_len


@dataclass(frozen=True)
class Generation(Selector):
    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        return t >= row.prompt_len


@dataclass(frozen=True)
class Last(Selector):
    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        return t == row.prompt_len - 1


@dataclass(frozen=True)
class Single(Selector):
    index: int

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        return t == _index(self.index, row.prompt_len)

    @property
    def label(self) -> str:
        return f"single({self.index})"


@dataclass(frozen=True)
class Range(Selector):
    start: int
    stop: int

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        a, b = _index(self.start, row.prompt_len), _index(self.stop, row.prompt_len)
        return (t >= a) & (t < b)

    @property
    def label(self) -> str:
        return f"range({self.start},{self.stop})"


@dataclass(frozen=True)
class From(Selector):
    start: int

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        return t >= _index(self.start, row.prompt_len)

    @property
    def label(self) -> str:
        return f"from({self.start})"


@dataclass(frozen=True)
class Span(Selector):
    name: str

    def __post_init__(self) -> None:
        if self.name not in SPAN_NAMES:
            raise DataError(f"unknown span {self.name!r}; valid spans: {', '.join(SPAN_NAMES)}")

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        start_key, end_key = SPAN_NAMES[self.name]
        if start_key not in row.positions or end_key not in row.positions:
            raise DataError(
                f"span {self.name!r} needs the row's prompt positions {start_key}/{end_key}: pass the "
                f"Prompt objects to intervene(..., prompts=...) (known: {sorted(row.positions)})"
            )
        return (t >= row.positions[start_key]) & (t < row.positions[end_key])

    @property
    def label(self) -> str:
        return f"span({self.name})"


@dataclass(frozen=True)
class FromSpan(Selector):
    name: str

    def __post_init__(self) -> None:
        if self.name not in SPAN_NAMES:
            raise DataError(f"unknown span {self.name!r}; valid spans: {', '.join(SPAN_NAMES)}")

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        start_key = SPAN_NAMES[self.name][0]
        if start_key not in row.positions:
            raise DataError(
                f"FromSpan({self.name!r}) needs the row's prompt position {start_key}: pass the Prompt objects "
                f"to intervene(..., prompts=...) (known: {sorted(row.positions)})"
            )
        return t >= row.positions[start_key]

    @property
    def label(self) -> str:
        return f"from_span({self.name})"


@dataclass(frozen=True)
class AfterSpan(Selector):
    name: str

    def __post_init__(self) -> None:
        if self.name not in SPAN_NAMES:
            raise DataError(f"unknown span {self.name!r}; valid spans: {', '.join(SPAN_NAMES)}")

    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        end_key = SPAN_NAMES[self.name][1]
        if end_key not in row.positions:
            raise DataError(
                f"AfterSpan({self.name!r}) needs the row's prompt position {end_key}: pass the Prompt objects "
                f"to intervene(..., prompts=...) (known: {sorted(row.positions)})"
            )
        return t >= row.positions[end_key]

    @property
    def label(self) -> str:
        return f"after_span({self.name})"


@dataclass(frozen=True)
class BeforePrefill(Selector):
    def select(self, t: Int[Tensor, " seq"], row: RowContext) -> Bool[Tensor, " seq"]:
        if "prefill_start" not in row.positions:
            raise DataError("BeforePrefill needs the row's prompt positions: pass prompts=... to intervene")
        return t < row.positions["prefill_start"]


NAMED: dict[str, Selector] = {
    "all": All(), "prompt": Prompt(), "generation": Generation(), "last": Last(),
    "quote": Span("quote"), "quote_onward": FromSpan("quote"), "after_quote": AfterSpan("quote"),
    "before_prefill": BeforePrefill(),
}


def as_selector(spec: Selector | str | int | tuple[int, int] | range) -> Selector:
    """A selector from a name (``"last"``, ``"quote"``, ...), an index, an ``(a, b)`` pair or a range."""
    if isinstance(spec, Selector):
        return spec
    if isinstance(spec, bool):
        raise DataError(f"positions {spec!r}: use a name ({', '.join(NAMED)}), an index, (start, stop) or a range")
    if isinstance(spec, int):
        return Single(spec)
    if isinstance(spec, range):
        if spec.step != 1:
            raise DataError(f"positions {spec!r}: only step-1 ranges")
        return Range(spec.start, spec.stop)
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(x, int) for x in spec):
        return Range(*spec)
    if isinstance(spec, str) and spec in NAMED:
        return NAMED[spec]
    raise DataError(f"positions {spec!r}: use a name ({', '.join(NAMED)}), an index, (start, stop) or a range")


__all__ = [
    "AfterSpan", "All", "BeforePrefill", "From", "FromSpan", "Generation", "Last", "NAMED", "Prompt", "Range", "RowContext",
    "SPAN_NAMES", "Selector", "Single", "Span", "as_selector",
]
