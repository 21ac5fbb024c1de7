"""The model's decoder stack, callable one layer at a time on a suffix of positions.

Fast patching (:mod:`innerprobe.patching.rows`) starts a patched forward at any layer and any
position: layer ``j`` runs on the residual *suffix* ``[start, T)`` and attends to the cached
keys and values of the unchanged prefix ``[0, start)``. The Hugging Face layers cannot be called
that way (their cache API is per generation step, and through a TransformerBridge every call
fires hook points), so :class:`DecoderStack` reads the weights of the HF decoder layers (the
bridge's *original* modules, never a copy) and runs the same arithmetic itself:

* **Llama family** (``llama``, ``mistral`` without a sliding window, ``qwen2``): RMSNorm
  ``w * norm(x)``, rotary attention with grouped KV heads, gated MLP;
* **Gemma 3** (``gemma3_text``): the same skeleton with Gemma's differences — embeddings scaled
  by ``sqrt(d_model)``, RMSNorm ``(1 + w) * norm(x)`` computed in float32, RMS-normed queries and
  keys (``q_norm``/``k_norm``) before the rotation, "sandwich" norms (the attention and MLP
  outputs are normed again before they join the residual), local layers with a sliding window and
  their own rotary base beside the global layers, GELU-tanh gating, optional logit soft-capping.

Each family is a small table of where its modules live (:class:`_Family`); everything else is
shared. The forward is checked against the HF model and against the TransformerLens patching
loop in the tests (tiny random models of both families, SmolLM2 and Gemma-3-270M). Other
architectures raise :class:`~innerprobe.core.errors.NotApplicableError`: patch them with the
TransformerLens loop (:func:`innerprobe.patching.grid.looped_patch_grid`).

Only the two metric tokens are read out of the unembedding (:meth:`DecoderStack.logit_diff`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from transformers.activations import ACT2FN

from innerprobe.core.errors import NotApplicableError
from innerprobe.models.loaded import original_module

Linear = tuple[Tensor, Tensor | None]
Rope = dict[str, tuple[Tensor, Tensor]]
"""Rotary ``(cos, sin)`` per layer type (``"full"`` for single-rope models)."""


@dataclass(frozen=True)
class _Family:
    """Where one architecture family keeps its parts, and how its norm is written."""

    model_types: frozenset[str]
    norm_offset: bool  # RMSNorm weight applied as (1 + w), in float32 (Gemma)
    mlp_norm: str  # the norm before the MLP
    attn_post_norm: str | None  # the norm on the attention output before the residual add
    mlp_post_norm: str | None  # the norm on the MLP output before the residual add
    qk_norm: bool
    act_key: str  # the config attribute naming the MLP activation


LLAMA = _Family(frozenset({"llama", "mistral", "qwen2"}), False, "post_attention_layernorm", None, None,
                False, "hidden_act")
GEMMA3 = _Family(frozenset({"gemma3_text"}), True, "pre_feedforward_layernorm", "post_attention_layernorm",
                 "post_feedforward_layernorm", True, "hidden_activation")
FAMILIES = (LLAMA, GEMMA3)
SUPPORTED = tuple(sorted(t for f in FAMILIES for t in f.model_types))


def family_of(config: Any, name: str = "model") -> _Family:
    """The family of an HF config, or ``NotApplicableError`` naming the supported model types."""
    mt = getattr(config, "model_type", "?")
    fam = next((f for f in FAMILIES if mt in f.model_types), None)
    if fam is None:
        raise NotApplicableError(
            f"fast patching supports the decoders {', '.join(SUPPORTED)}; {name} is {mt!r} "
            "(use looped_patch_grid, the TransformerLens loop, for other architectures)"
        )
    if mt == "mistral" and getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        raise NotApplicableError("mistral with a sliding window is not supported by fast patching")
    return fam


def _linear(module: Any) -> Linear:
    lin = original_module(module)
    bias = getattr(lin, "bias", None)
    return lin.weight.detach(), (bias.detach() if bias is not None else None)


def _apply(x: Tensor, wb: Linear) -> Tensor:
    return torch.nn.functional.linear(x, wb[0], wb[1])


@dataclass
class _Norm:
    """An RMSNorm's weight and epsilon, written the way its family writes it."""

    weight: Tensor
    eps: float
    offset: bool

    @classmethod
    def of(cls, module: Any, offset: bool) -> _Norm:
        m = original_module(module)
        eps = getattr(m, "variance_epsilon", None)
        return cls(m.weight.detach(), float(getattr(m, "eps", 1e-6) if eps is None else eps), offset)

    def __call__(self, x: Tensor) -> Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:  # Gemma: (x * (1 + w)) in float32, then cast
            return (normed * (1.0 + self.weight.float())).type_as(x)
        return self.weight * normed.to(x.dtype)  # Llama: cast, then scale


@dataclass
class _Layer:
    ln1: _Norm
    q: Linear
    k: Linear
    v: Linear
    o: Linear
    q_norm: _Norm | None
    k_norm: _Norm | None
    attn_post: _Norm | None
    ln2: _Norm
    gate: Linear
    up: Linear
    down: Linear
    mlp_post: _Norm | None
    kind: str  # the rotary / mask type: "full" or "sliding_attention", ...
    window: int | None  # sliding window (keys with q - k < window are seen), None: full causal


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _read_layer(block: Any, fam: _Family, cfg: Any, kind: str) -> _Layer:
    dec = original_module(block)
    attn, mlp = original_module(dec.self_attn), original_module(dec.mlp)
    norm = lambda m: _Norm.of(m, fam.norm_offset)  # noqa: E731
    opt = lambda name: norm(getattr(dec, name)) if name else None  # noqa: E731
    window = getattr(cfg, "sliding_window", None) if kind == "sliding_attention" else None
    return _Layer(
        norm(dec.input_layernorm), _linear(attn.q_proj), _linear(attn.k_proj), _linear(attn.v_proj),
        _linear(attn.o_proj),
        norm(attn.q_norm) if fam.qk_norm else None, norm(attn.k_norm) if fam.qk_norm else None,
        opt(fam.attn_post_norm), norm(getattr(dec, fam.mlp_norm)),
        _linear(mlp.gate_proj), _linear(mlp.up_proj), _linear(mlp.down_proj), opt(fam.mlp_post_norm),
        kind, int(window) if window else None,
    )


class DecoderStack:
    """The decoder stack of a Llama-family or Gemma-3 model, callable one layer at a time.

    ``layer(j, h, rope, prefix_k, prefix_v)`` runs decoder layer ``j`` on a residual suffix ``h``
    (positions ``[start, start + S)``) given the keys/values of the prefix ``[0, start)``. Full
    traces are memoised here (:meth:`keep_trace`) within ``cache_bytes`` (1 GiB), keyed on the
    prompt and :meth:`state_token`.
    """

    def __init__(self, model: Any) -> None:
        hf = model.hf_model
        cfg = getattr(hf.config, "text_config", None) or hf.config
        self.family = family_of(cfg, getattr(model, "name", "model"))
        self.model_type = str(cfg.model_type)
        self.n_layers = int(cfg.num_hidden_layers)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(getattr(cfg, "num_key_value_heads", None) or self.n_heads)
        inner = hf.model
        kinds = list(getattr(cfg, "layer_types", None) or []) if self.family is GEMMA3 else []
        kinds = kinds or ["full"] * self.n_layers
        self.layers = [_read_layer(b, self.family, cfg, k) for b, k in zip(inner.layers, kinds)]
        attn0 = original_module(original_module(inner.layers[0]).self_attn)
        self.head_dim, self.scaling = int(attn0.head_dim), float(attn0.scaling)
        self.attn_softcap = getattr(cfg, "attn_logit_softcapping", None)
        self.final_softcap = getattr(cfg, "final_logit_softcapping", None)
        self.act = ACT2FN[getattr(cfg, self.family.act_key)]
        self.norm = _Norm.of(inner.norm, self.family.norm_offset)
        self.unembed = original_module(hf.lm_head).weight.detach()
        emb = original_module(inner.embed_tokens)
        self.embed_w = emb.weight.detach()
        scale = getattr(emb, "embed_scale", None)
        self.embed_scale = None if scale is None else torch.as_tensor(scale).to(self.embed_w.dtype)
        self.rotary = original_module(inner.rotary_emb)
        self.device = self.unembed.device
        self.cache_bytes = 1 << 30
        self._model = model
        self._traces: OrderedDict[tuple[Any, tuple[int, ...]], Any] = OrderedDict()
        self._held = 0  # bytes of the kept traces

    # ------------------------------------------------------------------ state and memo

    def _tensors(self) -> list[Tensor]:
        """Every weight tensor the forward reads (detached views sharing the parameters' storage
        and version counters)."""
        out = [self.norm.weight, self.unembed, self.embed_w]
        for w in self.layers:
            out += [n.weight for n in (w.ln1, w.ln2, w.q_norm, w.k_norm, w.attn_post, w.mlp_post) if n is not None]
            for wb in (w.q, w.k, w.v, w.o, w.gate, w.up, w.down):
                out += [t for t in wb if t is not None]
        return out

    def state_token(self) -> tuple[Any, ...]:
        """Token of the state the forward runs in: the stack's weights (storage address and
        in-place version) and, for a :class:`~innerprobe.models.LoadedModel`, its
        :meth:`~innerprobe.models.LoadedModel.state_token` (weights and active hooks). The
        stack's own forward runs no module hooks, so keying on hooks only ever recomputes."""
        weights = tuple((t.data_ptr(), t._version) for t in self._tensors())
        model_token = getattr(self._model, "state_token", None)
        return weights, model_token() if callable(model_token) else None

    def cached_trace(self, ids: Sequence[int], state: Any = None) -> Any:
        """A trace of exactly ``ids`` made in model state ``state`` (default: the current one)
        by an earlier :func:`~innerprobe.patching.traces.trace` call, or None."""
        key = (self.state_token() if state is None else state, tuple(ids))
        tr = self._traces.get(key)
        if tr is not None:
            self._traces.move_to_end(key)
        return tr

    def keep_trace(self, tr: Any) -> None:
        """Keep ``tr`` (made in state ``tr.state``) for reuse, evicting the least recently used
        beyond ``cache_bytes`` (0 disables the cache). Stages of one analysis trace the same
        prompts (the H prompts of the H map are the transplant's targets; the O prompts are its
        donors)."""
        if self.cache_bytes <= 0:
            return
        key = (self.state_token() if tr.state is None else tr.state, tuple(tr.ids))
        if (old := self._traces.pop(key, None)) is not None:
            self._held -= old.nbytes
        self._traces[key] = tr
        self._held += tr.nbytes
        while self._traces and self._held > self.cache_bytes:
            self._held -= self._traces.popitem(last=False)[1].nbytes

    # ------------------------------------------------------------------ the forward

    def embed(self, ids: Sequence[int]) -> Float[Tensor, "1 pos d_model"]:
        h = self.embed_w[torch.tensor(list(ids), device=self.device)][None]
        return h if self.embed_scale is None else h * self.embed_scale

    def rope(self, start: int, stop: int, like: Tensor) -> Rope:
        """Rotary ``(cos, sin)`` for positions ``[start, stop)``, per layer type."""
        pos = torch.arange(start, stop, device=self.device)[None]
        out = {}
        for kind in {w.kind for w in self.layers}:
            cos, sin = self.rotary(like, pos) if kind == "full" else self.rotary(like, pos, kind)
            out[kind] = (cos[:, None], sin[:, None])
        return out

    def mlp_block(self, j: int, mid: Tensor) -> Tensor:
        """Second half of layer ``j``: ``mid + [post_norm](mlp(norm(mid)))``."""
        w = self.layers[j]
        x = w.ln2(mid)
        y = _apply(self.act(_apply(x, w.gate)) * _apply(x, w.up), w.down)
        return mid + (y if w.mlp_post is None else w.mlp_post(y))

    def _heads(self, x: Tensor, wb: Linear, n: int, norm: _Norm | None) -> Tensor:
        b, s, _ = x.shape
        t = _apply(x, wb).view(b, s, n, self.head_dim).transpose(1, 2)
        return t if norm is None else norm(t)

    def layer(
        self,
        j: int,
        h: Float[Tensor, "batch suffix d_model"],
        rope: Rope,
        prefix_k: Tensor | None,
        prefix_v: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Run layer ``j`` on a suffix; returns ``(out, attn_out, k_suffix, v_suffix)``.

        ``attn_out`` is what the attention adds to the residual (post-normed where the family
        norms it); ``k_suffix``/``v_suffix`` are the rotated keys and values of the suffix.
        """
        w = self.layers[j]
        b, s, _ = h.shape
        x = w.ln1(h)
        q = self._heads(x, w.q, self.n_heads, w.q_norm)
        k = self._heads(x, w.k, self.n_kv, w.k_norm)
        v = self._heads(x, w.v, self.n_kv, None)
        cos, sin = rope[w.kind]
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k_all = k if prefix_k is None else torch.cat([prefix_k, k], dim=2)
        v_all = v if prefix_v is None else torch.cat([prefix_v, v], dim=2)
        groups = self.n_heads // self.n_kv
        k_all, v_all = k_all.repeat_interleave(groups, 1), v_all.repeat_interleave(groups, 1)
        scores = (q @ k_all.transpose(2, 3)) * self.scaling
        if self.attn_softcap:
            scores = torch.tanh(scores / self.attn_softcap) * self.attn_softcap
        scores = scores.masked_fill(~self._allowed(k_all.shape[2], s, w.window, h.device), torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        o = _apply((attn @ v_all).transpose(1, 2).reshape(b, s, -1), w.o)
        if w.attn_post is not None:
            o = w.attn_post(o)
        return self.mlp_block(j, h + o), o, k, v

    @staticmethod
    def _allowed(n_keys: int, s: int, window: int | None, device: Any) -> Tensor:
        """``[s, n_keys]``: query ``i`` (absolute ``n_keys - s + i``) may read key ``k``."""
        q_pos = torch.arange(n_keys - s, n_keys, device=device)[:, None]
        k_pos = torch.arange(n_keys, device=device)[None]
        allowed = k_pos <= q_pos
        return allowed if window is None else allowed & (k_pos > q_pos - window)

    def _cap(self, logits: Tensor) -> Tensor:
        if not self.final_softcap:
            return logits
        return torch.tanh(logits / self.final_softcap) * self.final_softcap

    def logit_diff(self, h_last: Float[Tensor, "batch d_model"], tokens: Tensor) -> Float[Tensor, " batch"]:
        """``logit[a] - logit[b]`` from the final residual; ``tokens`` is ``[batch, 2]``."""
        x = self.norm(h_last)
        sel = self._cap(torch.einsum("bd,bkd->bk", x, self.unembed[tokens]))
        return sel[:, 0] - sel[:, 1]

    def logits(self, h_last: Float[Tensor, "batch d_model"]) -> Float[Tensor, "batch vocab"]:
        return self._cap(self.norm(h_last) @ self.unembed.T)


__all__ = ["DecoderStack", "SUPPORTED", "Rope", "family_of"]
