"""One intervention API on TransformerLens hook points: a context manager over any forward.

``with intervene(model, Intervention(AddVector(v, 4.0), layers=(12,), positions="quote"),
prompts=h_prompts) as log:`` and then *any* forward of the model — the bridge's
``run_with_hooks``, the HF model's forward, ``generate`` with its key/value cache, innerprobe's
``behave`` or ``capture`` — runs with the edit applied at ``blocks.{layer}.hook_{site}``, only at
the positions its selector picks (:mod:`innerprobe.interventions.positions`).

How positions stay right in batches and cached generation: a forward *pre*-hook on the HF model
reads each forward's ``input_ids`` and ``attention_mask``. On a fresh forward (no past), each
row's real tokens identify it (and, when ``prompts`` are given, its named spans) and its prompt
length ``L`` is recorded; the real-token index of every position is the running count of the
attention mask, so left padding is skipped and a decoding step's single new token gets index
``L``, ``L + 1``, ... The hook on the hook point then maps each position to its real index,
asks the selector, and edits only those vectors.

Every touched position is recorded (``log.positions``), with the edit's description, so a
result can say exactly where it steered; the hooks are plain torch forward hooks on the bridge's
hook-point modules, so :meth:`~innerprobe.models.loaded.LoadedModel.state_token` sees them and
no memo made without the intervention answers a forward made with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from innerprobe.core.errors import DataError
from innerprobe.interventions.edits import Edit
from innerprobe.interventions.positions import All, RowContext, Selector, as_selector
from innerprobe.models.loaded import LoadedModel

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


@dataclass(frozen=True)
class Intervention:
    """An edit at some layers of one site, at the positions a selector picks."""

    edit: Edit
    layers: tuple[int, ...]
    site: str = "resid_pre"
    positions: Selector | str | int | tuple[int, int] | range = field(default_factory=All)
    name: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise DataError(f"unknown site {self.site!r}; valid sites: {', '.join(SITES)}")
        layers = (self.layers,) if isinstance(self.layers, int) else tuple(int(x) for x in self.layers)
        if not layers:
            raise DataError("an intervention needs at least one layer")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "positions", as_selector(self.positions))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "site": self.site, "layers": list(self.layers),
                "positions": self.positions.label, **self.edit.describe(), "provenance": self.provenance}


@dataclass
class _Forward:
    """What the pre-hook learnt about the current forward."""

    rows: list[int]                    # row id (index into InterventionLog.rows) per batch row
    real_index: Int[Tensor, "batch seq"]


@dataclass
class InterventionLog:
    """Where each intervention touched: ``positions[i][(layer, row)]`` = sorted real indices.

    ``rows`` lists each distinct row seen (its real prompt token ids); ``row_of(ids)`` finds one.
    """

    interventions: list[Intervention]
    rows: list[tuple[int, ...]] = field(default_factory=list)
    prompt_lens: list[int] = field(default_factory=list)
    positions: list[dict[tuple[int, int], set[int]]] = field(default_factory=list)

    def row_of(self, ids: Sequence[int]) -> int:
        key = tuple(int(x) for x in ids)
        if key not in self.rows:
            raise DataError("that prompt was not run under this intervention")
        return self.rows.index(key)

    def touched(self, i: int, layer: int, ids: Sequence[int]) -> list[int]:
        """Sorted real-token indices intervention ``i`` edited at ``layer`` for the row ``ids``."""
        return sorted(self.positions[i].get((layer, self.row_of(ids)), set()))

    def describe(self) -> list[dict[str, Any]]:
        return [iv.describe() for iv in self.interventions]


def _hook_point(model: LoadedModel, site: str, layer: int) -> torch.nn.Module:
    if not 0 <= layer < model.n_layers:
        raise DataError(f"layer {layer} is outside the model's layers 0..{model.n_layers - 1}")
    name = f"blocks.{layer}.hook_{site}"
    hook_dict = model.bridge.hook_dict
    if name not in hook_dict:
        raise DataError(f"{model.name} has no hook point {name!r}")
    return hook_dict[name]


def _past_length(kwargs: dict[str, Any]) -> int:
    cache = kwargs.get("past_key_values", kwargs.get("cache"))
    return int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0


class _State:
    def __init__(self, log: InterventionLog, spans: dict[tuple[int, ...], dict[str, int]]) -> None:
        self.log, self.spans = log, spans
        self.current: _Forward | None = None
        self.batch_rows: list[int] = []

    def _row_id(self, ids: tuple[int, ...]) -> int:
        if ids not in self.log.rows:
            self.log.rows.append(ids)
            self.log.prompt_lens.append(len(ids))
        return self.log.rows.index(ids)

    def pre_forward(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise DataError("intervene: the forward passed no input_ids (inputs_embeds is not supported)")
        mask = kwargs.get("attention_mask")
        b, s = ids.shape
        past = _past_length(kwargs)
        if mask is None:
            mask = torch.ones(b, past + s, dtype=torch.long, device=ids.device)
        real = mask.long().cumsum(-1) - 1  # real-token index at every position of the mask
        chunk = real[:, real.shape[1] - s :]
        if real.shape[1] == s:  # a fresh forward: learn the rows
            self.batch_rows = [self._row_id(tuple(ids[r][mask[r].bool()].tolist())) for r in range(b)]
        elif len(self.batch_rows) != b:
            raise DataError("intervene: a cached forward whose batch does not match the forward that built its cache")
        self.current = _Forward(list(self.batch_rows), chunk)

    def context(self, row: int) -> RowContext:
        ids = self.log.rows[row]
        return RowContext(self.log.prompt_lens[row], self.spans.get(ids, {}))


def _make_hook(state: _State, i: int, iv: Intervention, layer: int) -> Any:
    def hook(module: Any, inputs: Any, output: Tensor) -> Tensor:
        fwd = state.current
        if fwd is None:
            raise DataError("intervene: a hook fired outside a model forward it could see")
        out = output.clone()
        for r, row in enumerate(fwd.rows):
            sel = iv.positions.select(fwd.real_index[r], state.context(row)) & (fwd.real_index[r] >= 0)
            if not bool(sel.any()):
                continue
            edited = iv.edit.apply(out[r, sel])
            if not torch.isfinite(edited).all():
                raise DataError(
                    f"intervention {iv.name or i} made non-finite activations at layer {layer} "
                    f"({iv.edit.describe()}): lower the scale"
                )
            out[r, sel] = edited
            state.log.positions[i].setdefault((layer, row), set()).update(fwd.real_index[r][sel].tolist())
        return out

    return hook


@contextmanager
def intervene(
    model: LoadedModel,
    *interventions: Intervention,
    prompts: Sequence[Any] = (),
) -> Iterator[InterventionLog]:
    """Run every forward inside the block with ``interventions`` applied; yields the log.

    ``prompts`` (innerprobe :class:`~innerprobe.protocol.prompts.Prompt` objects, or anything
    with ``input_ids`` and ``positions``) give rows their named spans (``"quote"``,
    ``"before_prefill"``). Hooks are removed on exit, also after an error.
    """
    for iv in interventions:
        if iv.edit.width != model.d_model:
            raise DataError(f"intervention {iv.name or iv.edit.describe()['kind']} has width {iv.edit.width}, "
                            f"the model's d_model is {model.d_model}")
    log = InterventionLog(list(interventions), positions=[{} for _ in interventions])
    spans = {tuple(int(x) for x in p.input_ids): dict(p.positions) for p in prompts}
    state = _State(log, spans)
    handles = [model.hf_model.register_forward_pre_hook(state.pre_forward, with_kwargs=True)]
    try:
        for i, iv in enumerate(interventions):
            for layer in iv.layers:
                point = _hook_point(model, iv.site, layer)
                handles.append(point.register_forward_hook(_make_hook(state, i, iv, layer)))
        yield log
    finally:
        for h in handles:
            h.remove()


__all__ = ["Intervention", "InterventionLog", "SITES", "intervene"]
