"""Reusing the unedited prefix of the layer stack across many edited forwards of the same batches.

An experiment that edits only layers ``l`` and above (subspace ablation from a start layer, say)
runs the same prompts many times: unedited, then under each arm and mode. Layers ``0 .. l-1``
see the same input every time, so their output is the same every time. :class:`LayerPrefix`
records the output of decoder layer ``l - 1`` on the unedited forward, batch by batch, and on
each later forward of the *same* batch replaces layers ``0 .. l-1`` by a replay of that output:
the embedding, rotary tables and mask are still built by the model's own forward, and layers
``l`` and above run exactly as before (hooks, interventions and all), on bit-identical input.
For an edit from the middle layer this halves the cost of every edited forward.

Batches are recognised by their ``input_ids`` and ``attention_mask`` (a model-level forward
pre-hook keys each forward); a forward of a batch that was never recorded is an error, not a
silent recomputation, and an intervention below ``l`` is refused (it would be skipped). The
replay swaps modules in the model's decoder list only inside :meth:`LayerPrefix.replaying`, and
restores them on exit, also after an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from innerprobe.core.errors import DataError, NotApplicableError
from innerprobe.models.loaded import LoadedModel

__all__ = ["LayerPrefix", "decoder_layer_list"]


def decoder_layer_list(hf_model: Any) -> torch.nn.ModuleList:
    """The ``ModuleList`` of decoder layers of an HF causal LM (``NotApplicableError`` if none)."""
    base = hf_model.get_base_model() if hasattr(hf_model, "get_base_model") else hf_model
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise NotApplicableError(f"{type(base).__name__} keeps no decoder list at .model.layers; "
                                 "prefix reuse needs one (run without it)")
    return layers


def _batch_key(ids: torch.Tensor, mask: torch.Tensor | None) -> str:
    h = hashlib.sha1(repr(tuple(ids.shape)).encode())
    h.update(ids.detach().cpu().numpy().tobytes())
    if mask is not None:
        h.update(mask.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class _Replay(torch.nn.Module):
    """Stands in for a skipped decoder layer: returns the recorded output of layer ``l - 1``."""

    def __init__(self, owner: LayerPrefix, original: torch.nn.Module) -> None:
        super().__init__()
        self.owner = owner
        # some decoders (Gemma 3) pick each layer's mask by the layer's own attention type
        for attr in ("attention_type", "layer_idx"):
            if hasattr(original, attr):
                setattr(self, attr, getattr(original, attr))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.owner.recorded_output()


class LayerPrefix:
    """Record layer ``start - 1``'s output per batch once; replay it in place of layers ``< start``.

    ``with prefix.recording(): forward(...)`` on the unedited model, then any number of
    ``with prefix.replaying(): forward(...)`` of the same batches (same rows, same padding).
    ``start = 0`` records nothing and replays nothing (every layer is edited).
    """

    def __init__(self, model: LoadedModel, start: int) -> None:
        if not 0 <= start <= model.n_layers:
            raise DataError(f"LayerPrefix start {start} is outside 0..{model.n_layers}")
        self.model, self.start = model, start
        self.layers = decoder_layer_list(model.hf_model) if start > 0 else None
        self._outputs: dict[str, Any] = {}
        self._key: str | None = None

    @property
    def n_batches(self) -> int:
        return len(self._outputs)

    def _key_hook(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise DataError("LayerPrefix: the forward passed no input_ids")
        self._key = _batch_key(ids, kwargs.get("attention_mask"))

    def recorded_output(self) -> Any:
        if self._key not in self._outputs:
            raise DataError("LayerPrefix: this batch was not recorded on the unedited forward "
                            "(replay needs the same rows, padding and batch size)")
        return self._outputs[self._key]

    def _store(self, module: Any, inputs: Any, output: Any) -> None:
        self._outputs[self._key] = output  # type: ignore[index]

    @contextmanager
    def recording(self) -> Iterator[LayerPrefix]:
        """Forwards inside the block store layer ``start - 1``'s output of each batch."""
        if self.layers is None:
            yield self
            return
        handles = [self.model.hf_model.register_forward_pre_hook(self._key_hook, with_kwargs=True),
                   self.layers[self.start - 1].register_forward_hook(self._store)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    @contextmanager
    def replaying(self, edited_layers: Sequence[int] = ()) -> Iterator[LayerPrefix]:
        """Forwards inside the block skip layers ``< start`` (edits there are refused)."""
        below = sorted(x for x in edited_layers if x < self.start)
        if below:
            raise DataError(f"LayerPrefix replays layers < {self.start}, but an edit sits at layer(s) {below}")
        if self.layers is None:
            yield self
            return
        saved = [self.layers[j] for j in range(self.start)]
        handle = self.model.hf_model.register_forward_pre_hook(self._key_hook, with_kwargs=True)
        try:
            for j in range(self.start):
                self.layers[j] = _Replay(self, saved[j])
            yield self
        finally:
            for j, layer in enumerate(saved):
                self.layers[j] = layer
            handle.remove()
