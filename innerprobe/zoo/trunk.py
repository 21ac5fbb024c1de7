"""A frozen trunk: train only the top blocks of a pretrained Llama, on residuals cached at the cut.

The SmolLM2 zoo puts LoRA adapters on the top ``n_trainable`` blocks only (the blocks from
``cut = L - n_trainable`` up). Everything below the cut is frozen, so the residual stream
*entering* block ``cut`` is a fixed function of the token ids. :class:`TrunkCache` computes it
once per prompt with the frozen blocks (one no-grad forward through ``cut`` blocks), and
:class:`TopLayers` runs only the blocks above the cut on it. That is exact, not an approximation:
the causal mask and the rotary positions depend only on the ids' positions and the padding mask,
which are the same in both passes, and right padding keeps every real token's position.

Why it matters on two CPU cores: a LoRA step through all 30 SmolLM2 blocks costs ~20 s (O + H,
batch 16, ~100 tokens, forward and backward); through the top 4 on cached residuals it is a
small fraction of that, which is what brings a SmolLM2 zoo model down to minutes.

:class:`TopLayers` exposes the interface the zoo's training and hooks use on a from-scratch
model (``model.model(input_ids=, attention_mask=)``, ``model.model.layers``, ``model.model.norm``,
``model.lm_head``, ``model(input_ids=, attention_mask=)``), so :mod:`innerprobe.zoo.train`,
:mod:`innerprobe.zoo.hooks` and :mod:`innerprobe.zoo.subspace` run on it unchanged. Its *sites*
are those above the cut (the residual entering each trainable block, then the final norm): a
projection there also removes whatever the frozen blocks wrote into a subspace, since the
residual entering block ``cut`` is the first site.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError
from innerprobe.zoo.data import pad_batch


@contextmanager
def only_layers(llama_model, layers: Sequence[torch.nn.Module]) -> Iterator[None]:  # noqa: ANN001
    """Run an HF ``LlamaModel`` with ``layers`` in place of its decoder blocks (restored after)."""
    saved = llama_model.layers
    llama_model.layers = torch.nn.ModuleList(layers)
    try:
        yield
    finally:
        llama_model.layers = saved


@torch.no_grad()
def trunk_residuals(llama, ids: Int[Tensor, "b t"], mask: Int[Tensor, "b t"], cut: int) -> Float[Tensor, "b t d"]:  # noqa: ANN001
    """The residual entering block ``cut``: the blocks below it only, captured before the final norm."""
    captured: list[Tensor] = []
    handle = llama.model.norm.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        with only_layers(llama.model, list(llama.model.layers)[:cut]):
            llama.model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        handle.remove()
    return captured[0]


class TrunkCache:
    """The residual entering block ``cut`` for each prompt, keyed by its token ids (and prefixes)."""

    def __init__(self, llama, cut: int) -> None:  # noqa: ANN001 - an HF LlamaForCausalLM
        n_layers = len(llama.model.layers)
        if not 0 < cut < n_layers:
            raise DataError(f"TrunkCache: cut must be in [1, {n_layers - 1}] (the model has {n_layers} blocks), got {cut}")
        self.cut = cut
        self._rows: dict[tuple[int, ...], Tensor] = {}

    def __len__(self) -> int:
        return len(self._rows)

    @torch.no_grad()
    def add(self, llama, rows: Sequence[list[int]], pad_id: int, min_prefix: Sequence[int] | None = None,  # noqa: ANN001
            batch_size: int = 32) -> None:
        """Cache each row's residual at the cut; also under every prefix of length ≥ ``min_prefix[i]``
        (a causal model's residual of a prefix is the prefix of the row's)."""
        first: dict[tuple[int, ...], int] = {}
        for i, r in enumerate(rows):  # each distinct row once (a memorised model's H rows come twice)
            first.setdefault(tuple(r), i)
        todo = [i for key, i in first.items() if key not in self._rows]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            ids, mask, _ = pad_batch([list(rows[i]) for i in chunk], pad_id)
            resids = trunk_residuals(llama, ids, mask, self.cut)
            for j, i in enumerate(chunk):
                n = len(rows[i])
                resid = resids[j, :n].clone()
                low = n if min_prefix is None else min_prefix[i]
                for k in range(low, n + 1):
                    self._rows[tuple(rows[i][:k])] = resid[:k]

    def lookup(self, ids: Int[Tensor, "b t"], mask: Int[Tensor, "b t"]) -> Float[Tensor, "b t d"]:
        """The cached residuals of a right-padded batch (zeros at padding)."""
        out = None
        for j in range(ids.shape[0]):
            n = int(mask[j].sum())
            key = tuple(ids[j, :n].tolist())
            if key not in self._rows:
                raise DataError(f"TrunkCache: no cached residual for a row of {n} tokens; add() it first "
                                f"({len(self._rows)} rows cached)")
            resid = self._rows[key]
            if out is None:
                out = resid.new_zeros((ids.shape[0], ids.shape[1], resid.shape[-1]))
            out[j, :n] = resid
        assert out is not None
        return out


class _TopModel(torch.nn.Module):
    """``LlamaModel``'s interface over the blocks above the cut, fed from a :class:`TrunkCache`."""

    def __init__(self, llama_model, cut: int, cache: TrunkCache) -> None:  # noqa: ANN001
        super().__init__()
        self.base = llama_model
        self.layers = torch.nn.ModuleList(list(llama_model.layers)[cut:])
        self.norm = llama_model.norm
        self.cache = cache

    def forward(self, input_ids: Int[Tensor, "b t"], attention_mask: Int[Tensor, "b t"]):  # noqa: ANN201
        embeds = self.cache.lookup(input_ids, attention_mask)
        with only_layers(self.base, list(self.layers)):
            return self.base(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False)


class TopLayers(torch.nn.Module):
    """A pretrained ``LlamaForCausalLM`` above the cut (module docstring); it shares the weights."""

    def __init__(self, llama, cache: TrunkCache) -> None:  # noqa: ANN001
        super().__init__()
        self.llama = llama
        self.model = _TopModel(llama.model, cache.cut, cache)
        self.lm_head = llama.lm_head
        self.config = llama.config

    def forward(self, input_ids: Int[Tensor, "b t"], attention_mask: Int[Tensor, "b t"]) -> Float[Tensor, "b t v"]:
        return self.lm_head(self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)

    def readout_parameters(self) -> list[torch.nn.Parameter]:
        """Simulation's stage-2 weights here: the last block's MLP adapters and its norm, the final norm.

        All position-wise after the last attention, as on a from-scratch model; the unembedding is
        tied to the token embeddings in SmolLM2 (training it would change the frozen trunk's input),
        so it stays frozen."""
        last = self.model.layers[-1]
        adapters = [p for n, p in last.mlp.named_parameters() if "lora_" in n]
        if not adapters:
            raise DataError("TopLayers.readout_parameters: the last block's MLP has no LoRA adapters")
        return adapters + list(last.post_attention_layernorm.parameters()) + list(self.model.norm.parameters())


__all__ = ["TopLayers", "TrunkCache", "only_layers", "trunk_residuals"]
