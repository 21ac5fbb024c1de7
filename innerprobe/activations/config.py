"""What a capture reads: hook sites, layers, named token positions, and :class:`CaptureConfig`.

A capture is fixed by one :class:`CaptureConfig`: which residual-stream *sites*
(TransformerLens hook names ``blocks.{layer}.hook_{site}``), which *layers*, which named token
*positions* of the object and of the hypothetical prompt, and how to batch and store them. The
config checks every value when it is built (``__post_init__``), so a typo fails before a model
is loaded, with an error naming the bad value and the valid ones. Only the layer *range* waits
for the model (:func:`resolve_layers` needs ``n_layers``).

Layers are ``"all"``, one int, a list of ints (negative counts from the end), or a string as
the command line writes them: ``"0,5,9"`` or a Python slice ``"0:30:3"`` over the model's layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from innerprobe.activations.store import STORE_DTYPES
from innerprobe.core.errors import DataError, UnknownNameError, check_at_least
from innerprobe.protocol.prompts import PromptSpec

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
# Order in which a block's hooks fire: the last one requested ends the forward early.
SITE_ORDER = {"resid_pre": 0, "attn_out": 1, "resid_mid": 2, "mlp_out": 3, "resid_post": 4}
NAMED_POSITIONS = {
    "object": ("o_last", "prefill_start"),
    "hypothetical": ("h_last", "quote_last", "quote_mean", "prefill_start"),
}
RESERVED_COLUMNS = ("index", "id", "task", "group")
LAYER_FORMS = "'all', an int, a list of ints, '0,5,9' or a slice '0:30:3'"


def hook_name(site: str, layer: int) -> str:
    """TransformerLens hook name of ``site`` at ``layer``: ``blocks.{layer}.hook_{site}``."""
    return f"blocks.{layer}.hook_{site}"


def resolve_sites(sites: Sequence[str] | str) -> list[str]:
    """Known sites in request order, duplicates dropped; ``UnknownNameError`` listing :data:`SITES`."""
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise DataError(f"no sites requested; valid sites: {', '.join(SITES)}")
    for s in sites:
        if s not in SITES:
            raise UnknownNameError("site", s, SITES)
    return list(dict.fromkeys(sites))


def _int(text: str, spec: object) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"layers must be {LAYER_FORMS}; got {spec!r}") from None


def parse_layers(layers: Sequence[int] | str | int) -> str | slice | tuple[int, ...]:
    """The model-independent form of a layer request: ``"all"``, a ``slice`` or a tuple of ints.

    ``DataError`` naming :data:`LAYER_FORMS` for anything else (``"some"``, ``"1:x"``, ``[]``).
    """
    if isinstance(layers, bool):
        raise DataError(f"layers must be {LAYER_FORMS}; got {layers!r}")
    if isinstance(layers, int):
        return (layers,)
    if isinstance(layers, str):
        text = layers.strip()
        if text == "all":
            return "all"
        if ":" in text:
            parts = text.split(":")
            if len(parts) > 3:
                raise DataError(f"layers must be {LAYER_FORMS}; got {layers!r}")
            return slice(*(_int(p, layers) if p.strip() else None for p in parts))
        out = tuple(_int(p, layers) for p in text.split(",") if p.strip())
    else:
        try:
            out = tuple(_int(str(x), layers) if not isinstance(x, int) else x for x in layers)
        except TypeError:
            raise DataError(f"layers must be {LAYER_FORMS}; got {layers!r}") from None
    if not out:
        raise DataError(f"no layers requested; layers must be {LAYER_FORMS}")
    return out


def resolve_layers(layers: Sequence[int] | str | int, n_layers: int) -> list[int]:
    """The layers of a model with ``n_layers`` that ``layers`` names, sorted and unique.

    ``DataError`` naming the valid range when one is out of it (``0..n_layers-1``).
    """
    parsed = parse_layers(layers)
    if parsed == "all":
        return list(range(n_layers))
    if isinstance(parsed, slice):
        chosen = list(range(n_layers))[parsed]
        if not chosen:
            raise DataError(f"layer slice {layers!r} selects no layer of 0..{n_layers - 1}")
        return chosen
    out = set()
    for layer in parsed:
        if not -n_layers <= layer < n_layers:
            raise DataError(f"layer {layer} out of range: the model has layers 0..{n_layers - 1}")
        out.add(layer % n_layers)
    return sorted(out)


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def resolve_position_names(run: str, positions: Sequence[str | int]) -> list[str]:
    """Validate position names of ``run``; integers become their string (``-1`` → ``"-1"``)."""
    if run not in NAMED_POSITIONS:
        raise UnknownNameError("run", run, NAMED_POSITIONS)
    if isinstance(positions, (str, int)):
        positions = [positions]
    out = []
    for p in positions:
        name = str(p)
        if not _is_int(name) and name not in NAMED_POSITIONS[run]:
            raise UnknownNameError(f"{run} position", name, [*NAMED_POSITIONS[run], "<integer index>"])
        out.append(name)
    if len(set(out)) != len(out):
        raise DataError(f"duplicate {run} positions: {out}")
    return out


@dataclass(frozen=True)
class CaptureConfig:
    """Everything that decides what :func:`innerprobe.activations.capture.capture` stores.

    Attributes:
        sites: hook sites, any of :data:`SITES` (``resid_post`` by default).
        layers: ``"all"``, ints or a layer string (see the module docstring); the range is
            checked against the model when the capture starts.
        object_positions: positions of the object prompt O(P): ``o_last``, ``prefill_start`` or
            integer indices; empty skips the object run.
        hypothetical_positions: positions of H(P, property): ``h_last``, ``quote_last``,
            ``quote_mean``, ``prefill_start`` or integers; empty skips the hypothetical run.
        spec: the prompt wording (``spec.variant``: previously | suppose | third_person) and
            prefills, as in :class:`~innerprobe.behavior.elicitation.BehaviorConfig`.
        batch_size: prompts per forward pass.
        shard_size: items per shard file (the unit of resuming and of reading memory).
        dtype: stored dtype, one of :data:`~innerprobe.activations.store.STORE_DTYPES`.
        seed: recorded in the manifest (a capture is deterministic; the seed names the items).

    Positions are kept as strings (``-3`` becomes ``"-3"``), as the manifest records them.
    """

    sites: tuple[str, ...] = ("resid_post",)
    layers: str | tuple[int, ...] = "all"
    object_positions: tuple[str, ...] = ("o_last",)
    hypothetical_positions: tuple[str, ...] = ("h_last", "quote_last", "quote_mean")
    spec: PromptSpec = PromptSpec()
    batch_size: int = 16
    shard_size: int = 256
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sites", tuple(resolve_sites(self.sites)))
        parse_layers(self.layers)
        if not isinstance(self.layers, str):
            set_(self, "layers", parse_layers(self.layers))
        set_(self, "object_positions", tuple(resolve_position_names("object", self.object_positions)))
        set_(self, "hypothetical_positions", tuple(resolve_position_names("hypothetical", self.hypothetical_positions)))
        if not self.object_positions and not self.hypothetical_positions:
            raise DataError("no positions requested for either run (object_positions and hypothetical_positions are empty)")
        if not isinstance(self.spec, PromptSpec):
            raise DataError(f"spec must be a PromptSpec, got {type(self.spec).__name__}")
        check_at_least("batch_size", self.batch_size, 1)
        check_at_least("shard_size", self.shard_size, 1)
        if self.dtype not in STORE_DTYPES:
            raise UnknownNameError("store dtype", self.dtype, STORE_DTYPES)

    @property
    def positions(self) -> dict[str, list[str]]:
        """``{"object": [...], "hypothetical": [...]}``, as the manifest records them."""
        return {"object": list(self.object_positions), "hypothetical": list(self.hypothetical_positions)}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "spec": self.spec.to_dict()}

    @classmethod
    def from_options(cls, config: CaptureConfig | None = None, **options: Any) -> CaptureConfig:
        """``config`` (default: the defaults) with ``options`` replacing its fields.

        The keyword form of :func:`~innerprobe.activations.capture.capture` goes through here;
        an option that is not a field raises ``UnknownNameError`` listing the fields.
        """
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in fields:
                raise UnknownNameError("capture option", key, fields)
        base = config if config is not None else cls()
        return dataclasses.replace(base, **options) if options else base


__all__ = [
    "LAYER_FORMS",
    "NAMED_POSITIONS",
    "RESERVED_COLUMNS",
    "SITES",
    "SITE_ORDER",
    "CaptureConfig",
    "hook_name",
    "parse_layers",
    "resolve_layers",
    "resolve_position_names",
    "resolve_sites",
]
