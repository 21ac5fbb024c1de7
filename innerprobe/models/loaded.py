"""``LoadedModel``: a bridge, its tokenizer, its fingerprint and memos keyed on the model's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules import module as torch_module

from innerprobe.models.fingerprint import ModelFingerprint


@dataclass
class LoadedModel:
    """A bridge, its tokenizer and its fingerprint. ``hf_model`` is the wrapped HF model.

    **Memoised answers are keyed on the model's state.** ``greedy_cache`` and ``sample_cache``
    are the memo *of the current state* (:meth:`state_token`): after an intervention (a forward
    hook on a bridge hook point or HF module, an in-place weight edit, a swapped tensor) they are
    new, empty memos, so an intervened model is never answered from a cache made without the
    intervention; removing the hook brings the earlier memo back. Up to ``MAX_STATES`` states are
    kept (least recently used dropped first).
    """

    bridge: Any
    tokenizer: Any
    fingerprint: ModelFingerprint
    name: str
    _greedy_by_state: dict[Any, dict[tuple[int, tuple[int, ...]], str]] = field(
        default_factory=dict, repr=False, init=False
    )
    _samples_by_state: dict[Any, dict[tuple[Any, ...], list[list[str]]]] = field(
        default_factory=dict, repr=False, init=False
    )

    MAX_STATES = 8

    @property
    def greedy_cache(self) -> dict[tuple[int, tuple[int, ...]], str]:
        """Greedy continuations already decoded *in the current state*, keyed by
        (max_new_tokens, prompt token ids): the object-level answer of an item does not depend
        on the property asked about later."""
        return self._memo(self._greedy_by_state)

    @property
    def sample_cache(self) -> dict[tuple[Any, ...], list[list[str]]]:
        """Seeded T=1 samples already drawn *in the current state*, keyed by the whole call
        (settings and every prompt): the same call returns the same samples, so calibration
        over several properties of the same items samples once."""
        return self._memo(self._samples_by_state)

    def _memo(self, by_state: dict[Any, dict]) -> dict:
        token = self.state_token()
        memo = by_state.pop(token, None)
        by_state[token] = memo if memo is not None else {}
        while len(by_state) > self.MAX_STATES:
            del by_state[next(iter(by_state))]
        return by_state[token]

    def state_token(self) -> tuple[Any, ...]:
        """A cheap, hashable token of everything the forward depends on besides its input.

        * every parameter and buffer of the HF model: its storage address (``data_ptr``; a
          swapped tensor moves it) and its in-place version counter (``_version``; any in-place
          op through the tensor or a ``detach()`` of it, e.g. ``with torch.no_grad(): w.mul_(0)``,
          bumps it);
        * the forward and forward-pre hooks registered on every module of the bridge (its hook
          points, ``bridge.hook_dict``) and of the HF model, and torch's global module hooks,
          by handle id (a new hook has a new id; removing it restores the earlier token).

        A few microseconds per tensor and module. Not seen: writes through ``tensor.data``
        (which has its own version counter); bump the version (``p.add_(0)``) or clear the
        memo after such an edit.
        """
        hf = self.hf_model
        tensors = tuple((t.data_ptr(), t._version) for t in (*hf.parameters(), *hf.buffers()))
        modules = {id(m): m for m in (*self.bridge.modules(), *hf.modules())}
        hooks = tuple(
            (key, tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
            for key, m in modules.items()
            if m._forward_hooks or m._forward_pre_hooks
        )
        global_hooks = (tuple(torch_module._global_forward_hooks), tuple(torch_module._global_forward_pre_hooks))
        return tensors, hooks, global_hooks

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model

    @property
    def device(self) -> torch.device:
        return next(self.bridge.original_model.parameters()).device

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)


def original_module(module: Any) -> Any:
    """The HF module a TransformerBridge component wraps (or the module itself).

    Calling the original module runs the same computation without firing the bridge's hook
    points, which is what a fast path or a lens readout wants.
    """
    while hasattr(module, "original_component"):
        module = module.original_component
    return module
