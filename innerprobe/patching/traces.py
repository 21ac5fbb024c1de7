"""One full forward, recorded: the residuals, attention outputs, keys and values patched runs reuse.

A patched forward that starts at layer ``l`` and position ``s`` needs the target run's residual
entering layer ``l`` and, for attention, every layer's keys and values at positions ``< s``.
:func:`trace` records all of it once per prompt; traces are memoised on the
:class:`~innerprobe.patching.decoder.DecoderStack` (keyed on the prompt and the model's state),
so the stages of one study (H map and transplant targets, O map and transplant donors) trace
each prompt once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.sites import SITES


@dataclass
class Trace:
    """One full forward, recorded: what patched runs reuse.

    ``resid[l]`` is the input of layer ``l`` (resid_pre); ``resid[n_layers]`` the final residual
    before the last norm, so ``resid[l + 1]`` is resid_post of layer ``l``. A trace made with
    ``grad=True`` holds lists of graph-connected tensors instead (``resid[l]``: ``[1, pos, d]``).
    """

    ids: list[int]
    resid: Float[Tensor, "layer_plus_1 pos d_model"]
    attn_out: Float[Tensor, "layer pos d_model"]
    keys: Float[Tensor, "layer kv_head pos d_head"]
    values: Float[Tensor, "layer kv_head pos d_head"]
    state: Any = None  # the model state token the trace was made in (DecoderStack.state_token)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.resid, self.attn_out, self.keys, self.values))

    def site(self, name: str, layer: int) -> Float[Tensor, "pos d_model"]:
        """The activation of ``name`` at ``layer`` for every position."""
        if name == "resid_pre":
            return self.resid[layer]
        if name == "resid_post":
            return self.resid[layer + 1]
        if name == "attn_out":
            return self.attn_out[layer]
        if name == "mlp_out":
            return self.resid[layer + 1] - self.resid[layer] - self.attn_out[layer]
        raise UnknownNameError("site", name, SITES)


def trace(stack: DecoderStack, ids: Sequence[int], *, grad: bool = False) -> Trace:
    """Run ``ids`` through every layer and record residuals, attention outputs and K/V.

    With ``grad=True`` the residuals stay in the autograd graph (for attribution patching:
    differentiate the metric with ``torch.autograd.grad`` with respect to ``resid[l]``).
    Without it, the trace is memoised on ``stack`` (:meth:`DecoderStack.keep_trace`): read-only
    tensors, shared by every later call with the same ``ids`` in the same model state.
    """
    if not ids:
        raise DataError("empty prompt")
    if grad:
        return _run_trace(stack, ids, grad)
    state = stack.state_token()
    if (hit := stack.cached_trace(ids, state)) is not None:
        return hit
    tr = _run_trace(stack, ids, grad)
    tr.state = state
    stack.keep_trace(tr)
    return tr


def _run_trace(stack: DecoderStack, ids: Sequence[int], grad: bool) -> Trace:
    with torch.set_grad_enabled(grad):
        h = stack.embed(ids)
        if grad:
            h = h.detach().clone().requires_grad_(True)
        rope = stack.rope(0, len(ids), h)
        resid, attn, ks, vs = [h], [], [], []
        for j in range(stack.n_layers):
            h, o, k, v = stack.layer(j, h, rope, None, None)
            resid.append(h)
            attn.append(o[0])
            ks.append(k[0])
            vs.append(v[0])
        if grad:
            return Trace(list(ids), resid, attn, ks, vs)  # type: ignore[arg-type]
        return Trace(list(ids), torch.cat(resid, 0), torch.stack(attn), torch.stack(ks), torch.stack(vs))


def baseline_metric(stack: DecoderStack, tr: Trace, tokens: Sequence[int]) -> float:
    """The unpatched metric of a traced run (same numerics as the patched rows)."""
    t = torch.tensor([list(tokens)], device=stack.device)
    return float(stack.logit_diff(tr.resid[-1][-1:].detach(), t)[0])


__all__ = ["Trace", "baseline_metric", "trace"]
