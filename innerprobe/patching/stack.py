"""Activation patching, fast: many (layer, position) cells per forward, nothing recomputed twice.

Activation patching asks *where* a difference between two prompts is carried. Run a *source*
prompt and a *target* prompt that differ in one token; copy one activation (one site, one layer,
one position) of the source run into the target run; measure how far a metric (a logit
difference at the last position) moves from its target value towards its source value::

    recovery = (patched - target) / (source - target)

Denoising patches clean into corrupt (source = clean), noising corrupt into clean.

The textbook loop (TransformerLens ``get_act_patch_resid_pre``) runs one full forward per cell.
Two facts make almost all of that work redundant:

1. **Layers below the patch never change.** A patch at the input of layer ``l`` leaves the
   residual stream of layers ``< l`` as it was in the target run, so the patched forward can
   *start at layer l* from the target's cached residual. Cells are run as a *staircase*: the
   batch at layer ``j`` holds every cell whose patch layer is ``<= j``; cells join the batch at
   their own layer.
2. **Positions before the patch never change** (causal attention). A patch at position ``p``
   only moves positions ``>= p``, so only the *suffix* ``[s, T)`` (``s <= p``) is recomputed;
   attention reads the target's cached keys and values for the prefix ``[0, s)``.

Where each staircase starts is a trade: one start per prompt length (the earliest patched
position) makes few, big batches but recomputes positions that most cells cannot change; one
start per cell computes the fewest positions in many small batches. :func:`plan_suffixes` picks
the grouping that minimises positions × layers plus a per-batch overhead (exact dynamic
programming over the distinct start positions); on hypothetical prompts, where the replaced word
sits ~50 tokens before the end, it runs a word + P-tokens + last-positions grid 1.6× faster than
one shared start. Full traces (residuals, keys, values) are memoised on the stack within a byte
budget, so stages that share prompts (the H map and the transplant's targets, the O map and its
donors) trace each prompt once. The memo is keyed on the prompt *and the model's state*
(:meth:`LlamaStack.state_token`: the weights' storage and in-place versions, and the hooks on the
model), so a trace made before an intervention is never reused after it.

**Best cell.** The largest of many noisy cell means is biased upwards; :meth:`PatchResult.summary`
selects the best cell on one random half of the pairs and reports its recovery, with a bootstrap
CI, on the other half (``best_cell["selection"]`` says so; the naive max is kept beside it).

Only the two metric tokens are read out of the unembedding. The forward is innerprobe's own
re-implementation of the Llama decoder layer on the model's weights (RMSNorm, rotary attention
with grouped KV heads, gated MLP), checked against the HF/bridge forward and against
TransformerLens patching in the tests; other architectures raise ``NotApplicableError``.

Also here: attribution patching (AtP, a first-order estimate of every resid_pre cell from one
forward and one backward), O→H *transplants* of the object-level residual into the
hypothetical prompt, and plotly heatmaps.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor
from transformers.activations import ACT2FN

from innerprobe.core.errors import DataError, NotApplicableError, UnknownNameError
from innerprobe.core.stats import Estimate, bootstrap_ci, normalised_recovery, select_and_estimate
from innerprobe.models.loaded import original_module

log = logging.getLogger(__name__)

SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out")
DIRECTIONS = ("denoise", "noise")
SUFFIX_STRATEGIES = ("auto", "per_position", "shared")
Progress = Callable[[int], None] | None


# --------------------------------------------------------------------------- the forward


def _weight(linear: Any) -> tuple[Tensor, Tensor | None]:
    lin = original_module(linear)
    return lin.weight.detach(), (lin.bias.detach() if getattr(lin, "bias", None) is not None else None)


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    var = x.float().pow(2).mean(-1, keepdim=True)
    return weight * (x.float() * torch.rsqrt(var + eps)).to(x.dtype)


def _lin(x: Tensor, wb: tuple[Tensor, Tensor | None]) -> Tensor:
    return torch.nn.functional.linear(x, wb[0], wb[1])


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _grid_index(shape: tuple[int, ...], layers: Sequence[int], positions: Sequence[Any]) -> dict[str, np.ndarray]:
    """Long-format index columns (pair, layer, position) of a [pairs, layers, positions] grid.

    ``_pi`` holds the position column index, for per-position labels.
    """
    n, nl, npos = shape
    pair, li, pi = np.meshgrid(np.arange(n), np.arange(nl), np.arange(npos), indexing="ij")
    return {
        "pair": pair.ravel(),
        "layer": np.asarray(layers)[li.ravel()],
        "position": np.asarray(positions)[pi.ravel()],
        "_pi": pi.ravel(),
    }


@dataclass
class _Layer:
    ln1: Tensor
    eps1: float
    q: tuple[Tensor, Tensor | None]
    k: tuple[Tensor, Tensor | None]
    v: tuple[Tensor, Tensor | None]
    o: tuple[Tensor, Tensor | None]
    ln2: Tensor
    eps2: float
    gate: tuple[Tensor, Tensor | None]
    up: tuple[Tensor, Tensor | None]
    down: tuple[Tensor, Tensor | None]


class LlamaStack:
    """The decoder stack of a Llama-architecture model, callable one layer at a time.

    ``layer(j, h, ...)`` runs decoder layer ``j`` on a residual *suffix* ``h`` (positions
    ``[start, start + S)``) given the keys/values of the prefix ``[0, start)``; this is what lets
    a patched forward start at any layer and any position.
    """

    def __init__(self, model: Any) -> None:
        hf = model.hf_model
        cfg = hf.config
        if getattr(cfg, "model_type", "") not in {"llama", "mistral", "qwen2"} or getattr(
            cfg, "final_logit_softcapping", None
        ):
            raise NotApplicableError(
                f"fast patching supports Llama-style decoders (llama, mistral, qwen2); "
                f"{model.name} is {getattr(cfg, 'model_type', '?')!r}"
            )
        if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True) and (
            cfg.model_type == "mistral"
        ):
            raise NotApplicableError("sliding-window attention is not supported by fast patching")
        self.n_layers = int(cfg.num_hidden_layers)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(getattr(cfg, "num_key_value_heads", None) or self.n_heads)
        inner = hf.model
        self.layers: list[_Layer] = []
        for block in inner.layers:
            dec = original_module(block)
            attn, mlp = original_module(dec.self_attn), original_module(dec.mlp)
            n1, n2 = original_module(dec.input_layernorm), original_module(dec.post_attention_layernorm)
            self.layers.append(
                _Layer(
                    n1.weight.detach(), float(n1.variance_epsilon),
                    _weight(attn.q_proj), _weight(attn.k_proj), _weight(attn.v_proj),
                    _weight(attn.o_proj),
                    n2.weight.detach(), float(n2.variance_epsilon),
                    _weight(mlp.gate_proj), _weight(mlp.up_proj), _weight(mlp.down_proj),
                )
            )
            self.head_dim = int(attn.head_dim)
            self.scaling = float(attn.scaling)

        self.act = ACT2FN[cfg.hidden_act]
        norm = original_module(inner.norm)
        self.norm_w, self.norm_eps = norm.weight.detach(), float(norm.variance_epsilon)
        self.unembed = original_module(hf.lm_head).weight.detach()
        self.embed_w = original_module(inner.embed_tokens).weight.detach()
        self.rotary = original_module(inner.rotary_emb)
        self.device = self.unembed.device
        self.cache_bytes = 1 << 30
        self._model = model
        self._traces: OrderedDict[tuple[Any, tuple[int, ...]], Trace] = OrderedDict()
        self._held = 0  # bytes of the kept traces

    def _tensors(self) -> list[Tensor]:
        """Every weight tensor the forward reads (detached views sharing the parameters' storage
        and version counters)."""
        out = [self.norm_w, self.unembed, self.embed_w]
        for w in self.layers:
            out += [w.ln1, w.ln2]
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

    def cached_trace(self, ids: Sequence[int], state: Any = None) -> Trace | None:
        """A trace of exactly ``ids`` made in model state ``state`` (default: the current one)
        by an earlier :func:`trace` call, or None."""
        key = (self.state_token() if state is None else state, tuple(ids))
        tr = self._traces.get(key)
        if tr is not None:
            self._traces.move_to_end(key)
        return tr

    def keep_trace(self, tr: Trace) -> None:
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

    def embed(self, ids: Sequence[int]) -> Float[Tensor, "1 pos d_model"]:
        return self.embed_w[torch.tensor(list(ids), device=self.device)][None]

    def rope(self, start: int, stop: int, like: Tensor) -> tuple[Tensor, Tensor]:
        pos = torch.arange(start, stop, device=self.device)[None]
        cos, sin = self.rotary(like, pos)
        return cos[:, None], sin[:, None]

    def mlp_block(self, j: int, mid: Tensor) -> Tensor:
        """Second half of layer ``j``: ``mid + mlp(ln2(mid))``."""
        w = self.layers[j]
        x = _rms(mid, w.ln2, w.eps2)
        return mid + _lin(self.act(_lin(x, w.gate)) * _lin(x, w.up), w.down)

    def layer(
        self,
        j: int,
        h: Float[Tensor, "batch suffix d_model"],
        rope: tuple[Tensor, Tensor],
        prefix_k: Tensor | None,
        prefix_v: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Run layer ``j`` on a suffix; returns ``(out, attn_out, k_suffix, v_suffix)``."""
        w = self.layers[j]
        b, s, _ = h.shape
        x = _rms(h, w.ln1, w.eps1)
        q = _lin(x, w.q).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = _lin(x, w.k).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        v = _lin(x, w.v).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k_all = k if prefix_k is None else torch.cat([prefix_k, k], dim=2)
        v_all = v if prefix_v is None else torch.cat([prefix_v, v], dim=2)
        groups = self.n_heads // self.n_kv
        k_all, v_all = k_all.repeat_interleave(groups, 1), v_all.repeat_interleave(groups, 1)
        n_keys = k_all.shape[2]
        scores = (q @ k_all.transpose(2, 3)) * self.scaling
        q_pos = torch.arange(n_keys - s, n_keys, device=h.device)[:, None]
        allowed = torch.arange(n_keys, device=h.device)[None] <= q_pos
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        o = _lin((attn @ v_all).transpose(1, 2).reshape(b, s, -1), w.o)
        return self.mlp_block(j, h + o), o, k, v

    def logit_diff(
        self, h_last: Float[Tensor, "batch d_model"], tokens: Tensor
    ) -> Float[Tensor, " batch"]:
        """``logit[a] - logit[b]`` from the final residual; ``tokens`` is ``[batch, 2]``."""
        x = _rms(h_last, self.norm_w, self.norm_eps)
        w = self.unembed[tokens]  # [batch, 2, d]
        sel = torch.einsum("bd,bkd->bk", x, w)
        return sel[:, 0] - sel[:, 1]

    def logits(self, h_last: Float[Tensor, "batch d_model"]) -> Float[Tensor, "batch vocab"]:
        return _rms(h_last, self.norm_w, self.norm_eps) @ self.unembed.T


@dataclass
class Trace:
    """One full forward, recorded: what patched runs reuse.

    ``resid[l]`` is the input of layer ``l`` (resid_pre); ``resid[n_layers]`` the final residual
    before the last norm, so ``resid[l + 1]`` is resid_post of layer ``l``.
    """

    ids: list[int]
    resid: Float[Tensor, "layer_plus_1 pos d_model"]
    attn_out: Float[Tensor, "layer pos d_model"]
    keys: Float[Tensor, "layer kv_head pos d_head"]
    values: Float[Tensor, "layer kv_head pos d_head"]
    state: Any = None  # the model state token the trace was made in (LlamaStack.state_token)

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


def trace(stack: LlamaStack, ids: Sequence[int], *, grad: bool = False) -> Trace:
    """Run ``ids`` through every layer and record residuals, attention outputs and K/V.

    With ``grad=True`` the residuals keep their graph (``retain_grad``), for attribution patching.
    Without it, the trace is memoised on ``stack`` (:meth:`LlamaStack.keep_trace`): read-only
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


def _run_trace(stack: LlamaStack, ids: Sequence[int], grad: bool) -> Trace:
    with torch.set_grad_enabled(grad):
        h = stack.embed(ids)
        if grad:
            h = h.clone().requires_grad_(True)
        rope = stack.rope(0, len(ids), h)
        resid, attn, ks, vs = [h], [], [], []
        for j in range(stack.n_layers):
            if grad:
                h.retain_grad()
            h, o, k, v = stack.layer(j, h, rope, None, None)
            resid.append(h)
            attn.append(o[0])
            ks.append(k[0])
            vs.append(v[0])
        if grad:
            h.retain_grad()
            return Trace(list(ids), resid, attn, ks, vs)  # type: ignore[arg-type]
        return Trace(
            list(ids),
            torch.cat(resid, 0),
            torch.stack(attn),
            torch.stack(ks),
            torch.stack(vs),
        )


# --------------------------------------------------------------------------- the patched runs


@dataclass
class PatchRow:
    """One patched forward: overwrite the residual entering layer ``start`` of target ``target``
    at ``positions`` with ``vectors``, run layers ``start ..`` and read the metric.

    ``start == n_layers`` means the vectors are the final residual (no layer is run).
    """

    target: int
    start: int
    positions: tuple[int, ...]
    vectors: Float[Tensor, "k d_model"]


def plan_suffixes(
    first: Sequence[int], depth: Sequence[int], n: int, overhead: float = 32.0
) -> list[int]:
    """Suffix start for each row of one target length: a cost-minimising grouping of rows.

    A row patched first at position ``first[i]`` that runs ``depth[i]`` layers must recompute at
    least positions ``[first[i], n)``. Rows sharing a start form one batched staircase, so the
    choice trades FLOPs (start each row late) against batch count (one start for all). Sorting the
    distinct first positions ``p_1 < ... < p_m``, every group is a contiguous run ``p_a..p_b``
    started at ``p_a`` and costs ``(n - p_a) * (layers its rows run) + overhead * max depth``
    (``overhead``: the fixed cost of a layer call, in row-positions); dynamic programming over the
    m positions finds the cheapest grouping exactly (O(m²)).
    """
    ps = sorted(set(first))
    work = dict.fromkeys(ps, 0)
    deep = dict.fromkeys(ps, 0)
    for f, d in zip(first, depth):
        work[f] += d
        deep[f] = max(deep[f], d)
    m = len(ps)
    best = [0.0] + [float("inf")] * m  # best[b]: cheapest grouping of ps[:b]
    cut = [0] * (m + 1)
    for b in range(1, m + 1):
        w = mx = 0
        for a in range(b - 1, -1, -1):  # group ps[a:b], started at ps[a]
            w += work[ps[a]]
            mx = max(mx, deep[ps[a]])
            cost = best[a] + (n - ps[a]) * w + overhead * mx
            if cost < best[b]:
                best[b], cut[b] = cost, a
    start_of: dict[int, int] = {}
    b = m
    while b > 0:
        a = cut[b]
        for p in ps[a:b]:
            start_of[p] = ps[a]
        b = a
    return [start_of[f] for f in first]


@torch.inference_mode()
def run_rows(
    stack: LlamaStack,
    targets: Sequence[Trace],
    metric_tokens: Tensor,
    rows: Sequence[PatchRow],
    *,
    max_rows: int = 256,
    suffix: Literal["auto", "per_position", "shared"] = "auto",
    progress: Progress = None,
) -> Float[Tensor, " rows"]:
    """The metric (logit diff of ``metric_tokens[target]``) after each row's patch.

    Rows are grouped by (target length, suffix start); each group runs as a staircase over
    layers in chunks of at most ``max_rows`` rows, recomputing only the suffix positions and
    reading the prefix's keys/values from the target traces. ``suffix`` picks the starts:
    ``"shared"`` one start per length (the smallest patched position), ``"per_position"`` each
    row's own first position, ``"auto"`` the cost-minimising grouping of :func:`plan_suffixes`.
    """
    if suffix not in SUFFIX_STRATEGIES:
        raise UnknownNameError("suffix strategy", suffix, SUFFIX_STRATEGIES)
    out = torch.empty(len(rows), dtype=torch.float64)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        n = len(targets[r.target])
        if not r.positions or min(r.positions) < 0 or max(r.positions) >= n:
            raise DataError(f"patch positions {r.positions} outside the prompt of {n} tokens")
        if not 0 <= r.start <= stack.n_layers:
            raise DataError(f"patch layer {r.start} outside [0, {stack.n_layers}]")
        by_len[n].append(i)
    for n, idx in by_len.items():
        first = [min(rows[i].positions) for i in idx]
        if suffix == "per_position":
            starts = first
        elif suffix == "shared":
            starts = [min(first)] * len(idx)
        else:
            starts = plan_suffixes(first, [stack.n_layers - rows[i].start for i in idx], n)
        for i, s in zip(idx, starts):
            groups[(n, s)].append(i)
    for (n, s), idx in groups.items():
        idx = sorted(idx, key=lambda i: rows[i].start)
        tgt_ids = sorted({rows[i].target for i in idx})
        local = {t: k for k, t in enumerate(tgt_ids)}
        keys = torch.stack([targets[t].keys[:, :, :s] for t in tgt_ids])  # [tg, L, kv, s, hd]
        vals = torch.stack([targets[t].values[:, :, :s] for t in tgt_ids])
        for c in range(0, len(idx), max_rows):
            chunk = [rows[i] for i in idx[c : c + max_rows]]
            res = _staircase(stack, targets, chunk, s, n, keys, vals, local, metric_tokens)
            out[torch.tensor(idx[c : c + max_rows])] = res.double().cpu()
            if progress is not None:
                progress(len(chunk))
    return out


def _row_start_state(row: PatchRow, targets: Sequence[Trace], s: int) -> Tensor:
    h = targets[row.target].resid[row.start][s:].clone()
    h[torch.tensor(row.positions) - s] = row.vectors.to(h.dtype)
    return h


def _staircase(
    stack: LlamaStack,
    targets: Sequence[Trace],
    chunk: Sequence[PatchRow],
    s: int,
    n: int,
    keys: Tensor,
    vals: Tensor,
    local: dict[int, int],
    metric_tokens: Tensor,
) -> Tensor:
    """Rows sorted by start layer; the batch at layer j is every row with start <= j."""
    tg = torch.tensor([local[r.target] for r in chunk], device=stack.device)
    h: Tensor | None = None
    nxt = 0
    rope = None
    for j in range(stack.n_layers):
        new = []
        while nxt < len(chunk) and chunk[nxt].start == j:
            new.append(_row_start_state(chunk[nxt], targets, s))
            nxt += 1
        if new:
            add = torch.stack(new)
            h = add if h is None else torch.cat([h, add])
        if h is None:
            continue
        if rope is None:
            rope = stack.rope(s, n, h)
        active = tg[: h.shape[0]]
        pk = keys[active, j] if s > 0 else None
        pv = vals[active, j] if s > 0 else None
        h, _, _, _ = stack.layer(j, h, rope, pk, pv)
    last = [_row_start_state(r, targets, s) for r in chunk[nxt:]]  # start == n_layers
    if last:
        add = torch.stack(last)
        h = add if h is None else torch.cat([h, add])
    assert h is not None
    tokens = metric_tokens[torch.tensor([r.target for r in chunk])].to(stack.device)
    return stack.logit_diff(h[:, -1], tokens)


def baseline_metric(stack: LlamaStack, tr: Trace, tokens: Sequence[int]) -> float:
    """The unpatched metric of a traced run (same numerics as the patched rows)."""
    t = torch.tensor([list(tokens)], device=stack.device)
    return float(stack.logit_diff(tr.resid[-1][-1:].detach(), t)[0])


# --------------------------------------------------------------------------- grids


def _site_rows(
    stack: LlamaStack,
    site: str,
    k: int,
    src: Trace,
    tgt: Trace,
    layers: Sequence[int],
    cells: Sequence[tuple[int, ...]],
) -> list[PatchRow]:
    """One row per (layer, cell); a cell is one or more absolute positions patched together."""
    rows = []
    for layer in layers:
        for cell in cells:
            p = list(cell)
            if site == "resid_pre":
                start, vec = layer, src.resid[layer][p]
            elif site == "resid_post":
                start, vec = layer + 1, src.resid[layer + 1][p]
            elif site == "mlp_out":
                start = layer + 1
                vec = tgt.resid[layer + 1][p] + src.site("mlp_out", layer)[p] - tgt.site("mlp_out", layer)[p]
            elif site == "attn_out":
                start = layer + 1
                mid = tgt.resid[layer][p] + src.attn_out[layer][p]
                vec = stack.mlp_block(layer, mid[None])[0]
            else:
                raise UnknownNameError("site", site, SITES)
            rows.append(PatchRow(k, start, tuple(p), vec))
    return rows


Cells = Sequence[Sequence[Sequence[int]]]


def _check_cells(cells: Cells, pairs: Sequence[Any], labels: Sequence[str] | None) -> list[list[tuple[int, ...]]]:
    """Per-pair cells as absolute position tuples, validated: one list per pair, same count each."""
    if len(cells) != len(pairs):
        raise DataError(f"{len(pairs)} pairs but {len(cells)} per-pair cell lists")
    out = [[tuple(int(p) for p in c) for c in pc] for pc in cells]
    n_cells = {len(pc) for pc in out}
    if len(n_cells) != 1 or not out[0]:
        raise DataError(f"every pair needs the same, non-zero number of cells; got counts {sorted(n_cells)}")
    if labels is not None and len(labels) != len(out[0]):
        raise DataError(f"{len(labels)} cell labels for {len(out[0])} cells")
    for k, (pc, (a, _)) in enumerate(zip(out, pairs)):
        for c in pc:
            if not c or min(c) < 0 or max(c) >= len(a):
                raise DataError(f"pair {k}: cell {c} is empty or outside a prompt of {len(a)} tokens")
    return out


def resolve_positions(positions: Sequence[int] | None, n: int) -> list[int]:
    """Absolute positions; negative ones count from the end (``-1`` is the last token)."""
    if positions is None:
        return list(range(n))
    out = [p + n if p < 0 else p for p in positions]
    bad = [p for p, a in zip(positions, out) if not 0 <= a < n]
    if bad:
        raise DataError(f"positions {bad} are outside a prompt of {n} tokens (valid: {-n}..{n - 1})")
    return out


@dataclass
class PatchResult:
    """A (layer × position) patching map over pairs, with per-item recovery and bootstrap CIs.

    Attributes:
        patched: metric after the patch, ``[pairs, layers, positions]``.
        source_metric / target_metric: unpatched metric of the source / target run per pair.
        recovery: ``(patched - target) / (source - target)`` per item (NaN where the gap is 0).
        mean, ci_low, ci_high: ``[layers, positions]`` nan-mean recovery and percentile bootstrap
            interval over pairs.
        position_labels: the token at each position (of the first pair's target).
        seed: the seed of the bootstrap and of the best cell's selection split.
    """

    site: str
    direction: str
    metric: str
    layers: list[int]
    positions: list[Any]  # positions, or cell labels (``cells=``)
    position_labels: list[str]
    patched: np.ndarray
    source_metric: np.ndarray
    target_metric: np.ndarray
    recovery: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_excluded: int
    extra: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def per_item(self) -> torch.Tensor:
        return torch.from_numpy(self.recovery)

    def cell(self, layer: int, position: int) -> Estimate:
        i, j = self.layers.index(layer), self.positions.index(position)
        vals = self.recovery[:, i, j]
        return bootstrap_ci(vals[np.isfinite(vals)])

    def to_dataframe(self) -> pd.DataFrame:
        index = _grid_index(self.patched.shape, self.layers, self.positions)
        pi = index.pop("_pi")
        return pd.DataFrame(
            {
                **index,
                "token": np.asarray(self.position_labels, dtype=object)[pi],
                "site": self.site,
                "direction": self.direction,
                "metric": self.metric,
                "patched": self.patched.ravel(),
                "source_metric": self.source_metric[index["pair"]],
                "target_metric": self.target_metric[index["pair"]],
                "recovery": self.recovery.ravel(),
            }
        )

    def best_cell(self) -> dict[str, Any]:
        """The cell of highest mean recovery, selected on one half of the pairs and estimated on
        the other (:func:`~innerprobe.core.stats.select_and_estimate`); ``selection`` says which was
        done. With fewer than 4 pairs no split is possible: the naive max over all pairs is
        reported and ``selection`` says it is optimistic."""
        n, n_l, n_p = self.recovery.shape
        flat = self.recovery.reshape(n, n_l * n_p)
        if not np.isfinite(flat).any():
            return {"layer": None, "position": None, "token": None, "recovery": float("nan"),
                    "ci": [float("nan"), float("nan")], "n": 0, "selection": "no finite recovery"}
        sel = None
        if n >= 4:
            try:
                sel = select_and_estimate(flat, seed=self.seed, what="cell")
            except DataError:  # one half has no finite recovery (zero-gap pairs)
                sel = None
        if sel is not None:
            li, pi = divmod(sel.index, n_p)
            nli, npi = divmod(sel.naive_index, n_p)
            est, selection = sel.estimate, sel.selection
        else:
            finite = np.where(np.isfinite(self.mean), self.mean, -np.inf)
            li, pi = nli, npi = np.unravel_index(int(np.argmax(finite)), self.mean.shape)
            est = Estimate(float(self.mean[li, pi]), float(self.ci_low[li, pi]), float(self.ci_high[li, pi]),
                           int(np.isfinite(self.recovery[:, li, pi]).sum()), "percentile bootstrap")
            selection = (f"naive max over {n_l * n_p} cells on all n={n} pairs (too few pairs with a "
                         "finite recovery to split; optimistic: selected and estimated on the same pairs)")
        return {
            "layer": self.layers[li],
            "position": self.positions[pi],
            "token": self.position_labels[pi],
            "recovery": float(est.value),
            "ci": [float(est.ci_low), float(est.ci_high)],
            "n": int(est.n),
            "selection": selection,
            "naive": {
                "layer": self.layers[nli], "position": self.positions[npi], "token": self.position_labels[npi],
                "recovery": float(self.mean[nli, npi]),
                "ci": [float(self.ci_low[nli, npi]), float(self.ci_high[nli, npi])],
            },
        }

    def summary(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "direction": self.direction,
            "metric": self.metric,
            "n_pairs": int(self.patched.shape[0]),
            "n_excluded_zero_gap": self.n_excluded,
            "layers": self.layers,
            "positions": self.positions,
            "position_labels": self.position_labels,
            "best_cell": self.best_cell(),
            **self.extra,
        }


def _cell_cis(rec: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = rec.shape[1:]
    mean, lo, hi = (np.full(shape, np.nan) for _ in range(3))
    for idx in np.ndindex(*shape):
        v = rec[(slice(None), *idx)]
        v = v[np.isfinite(v)]
        if v.size:
            e = bootstrap_ci(v, n_boot=n_boot, seed=seed)
            mean[idx], lo[idx], hi[idx] = e.value, e.ci_low, e.ci_high
    return mean, lo, hi


def _check_pairs(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], tokens: Sequence[Any]) -> None:
    if not pairs:
        raise DataError("no pairs to patch (empty pair set)")
    if len(tokens) != len(pairs):
        raise DataError(f"{len(pairs)} pairs but {len(tokens)} metric token pairs")
    for i, (t, (a, b)) in enumerate(zip(tokens, pairs)):
        if len(t) != 2 or int(t[0]) == int(t[1]):
            raise DataError(
                f"pair {i}: metric tokens {tuple(t)} must be two different token ids (the metric "
                "logit[a] - logit[b] would be identically 0; a tokenizer that prepends BOS makes "
                "tok(' word')['input_ids'][0] the BOS id: use add_special_tokens=False)"
            )
        if len(a) != len(b):
            raise DataError(
                f"pair {i}: clean and corrupt prompts differ in length ({len(a)} vs {len(b)} "
                "tokens); patching needs position-aligned prompts"
            )


def patch_grid(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    metric_tokens: Sequence[tuple[int, int]],
    *,
    site: str = "resid_pre",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    direction: str = "denoise",
    metric_name: str = "logit_diff",
    tokenizer: Any = None,
    max_rows: int = 256,
    suffix: Literal["auto", "per_position", "shared"] = "auto",
    n_boot: int = 2000,
    seed: int = 0,
    progress: Progress = None,
    stack: LlamaStack | None = None,
    cells: Cells | None = None,
    cell_labels: Sequence[str] | None = None,
) -> PatchResult:
    """Patch ``site`` from source into target for every (layer, position) cell of every pair.

    Args:
        model: a :class:`~innerprobe.models.LoadedModel`.
        pairs: ``(clean_ids, corrupt_ids)`` token lists of equal length per pair.
        metric_tokens: per pair ``(a, b)``; the metric is ``logit[a] - logit[b]`` at the last
            position (``a``: the clean answer/label token, ``b``: the corrupt one).
        site: one of :data:`SITES`.
        layers: layer indices (default: all).
        positions: positions, negative ones counted from the end (default: all positions of the
            first pair; pass negative positions when pairs differ in length).
        direction: ``"denoise"`` (clean → corrupt run) or ``"noise"`` (corrupt → clean run).
        max_rows: cells per batched forward (memory bound).
        suffix: ``"auto"`` (default) groups cells by where their recomputation starts so as to
            minimise FLOPs plus per-batch overhead (:func:`plan_suffixes`); ``"shared"``
            recomputes every cell from the smallest patched position (one staircase, big
            batches); ``"per_position"`` recomputes only positions ``>= p`` for a cell at ``p``
            (fewest FLOPs, most and smallest batches). All give the same numbers.
        cells: instead of ``positions``, per pair a list of cells, each a tuple of absolute
            positions patched *together* (e.g. every token of a replaced word, whose place
            differs between pairs); every pair has the same number of cells, named by
            ``cell_labels`` (default ``"c0"``, ``"c1"``...), which become ``positions``.
    """
    if site not in SITES:
        raise UnknownNameError("site", site, SITES)
    if direction not in DIRECTIONS:
        raise UnknownNameError("direction", direction, DIRECTIONS)
    if suffix not in SUFFIX_STRATEGIES:
        raise UnknownNameError("suffix strategy", suffix, SUFFIX_STRATEGIES)
    _check_pairs(pairs, metric_tokens)
    stack = stack or LlamaStack(model)
    layers = list(range(stack.n_layers)) if layers is None else list(layers)
    bad = [layer for layer in layers if not 0 <= layer < stack.n_layers]
    if bad or not layers:
        raise DataError(f"layers {bad or layers} outside [0, {stack.n_layers - 1}]")
    if cells is not None:
        per_pair = _check_cells(cells, pairs, cell_labels)
        rel: list[Any] = list(cell_labels) if cell_labels is not None else [f"c{i}" for i in range(len(per_pair[0]))]
    else:
        rel = list(positions) if positions is not None else list(range(len(pairs[0][0])))
        if not rel:
            raise DataError("no positions to patch")
        per_pair = [[(p,) for p in resolve_positions(rel, len(a))] for a, _ in pairs]
    tok = torch.tensor([list(t) for t in metric_tokens], dtype=torch.long)
    sources, targets, rows = [], [], []
    for k, (clean, corrupt) in enumerate(pairs):
        src_ids, tgt_ids = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
        src, tgt = trace(stack, src_ids), trace(stack, tgt_ids)
        sources.append(src)
        targets.append(tgt)
        rows += _site_rows(stack, site, k, src, tgt, layers, per_pair[k])
    values = run_rows(stack, targets, tok, rows, max_rows=max_rows, suffix=suffix, progress=progress)
    patched = values.numpy().reshape(len(pairs), len(layers), len(rel))
    src_m = np.array([baseline_metric(stack, s, t) for s, t in zip(sources, tok.tolist())])
    tgt_m = np.array([baseline_metric(stack, s, t) for s, t in zip(targets, tok.tolist())])
    rec = normalised_recovery(patched, tgt_m[:, None, None], src_m[:, None, None])
    mean, lo, hi = _cell_cis(rec.values, n_boot, seed)
    first = pairs[0][1] if direction == "denoise" else pairs[0][0]
    labels = _cell_labels(tokenizer or getattr(model, "tokenizer", None), first, rel, per_pair[0])
    return PatchResult(
        site, direction, metric_name, layers, rel, labels, patched, src_m, tgt_m, rec.values,
        mean, lo, hi, int(np.isnan(rec.values[:, 0, 0]).sum()), seed=seed,
    )


def _cell_labels(tokenizer: Any, ids: Sequence[int], rel: Sequence[Any], cells: Sequence[tuple[int, ...]]) -> list[str]:
    """``"name:tokens"`` per column, the tokens read from the first pair's target."""
    if tokenizer is None:
        return [str(r) for r in rel]
    return [f"{r}:{tokenizer.decode([ids[p] for p in c])}" for r, c in zip(rel, cells)]


def looped_patch_grid(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    metric_tokens: Sequence[tuple[int, int]],
    *,
    layers: Sequence[int],
    positions: Sequence[int] | None = None,
    cells: Cells | None = None,
) -> np.ndarray:
    """Reference: one full bridge forward with a resid_pre hook per cell (slow; for tests).

    ``positions`` (shared, negative from the end) or ``cells`` (per pair, as in :func:`patch_grid`).
    """
    bridge = model.bridge
    if cells is not None:
        per_pair = _check_cells(cells, pairs, None)
    else:
        per_pair = [[(p,) for p in resolve_positions(positions, len(a))] for a, _ in pairs]
    out = np.zeros((len(pairs), len(layers), len(per_pair[0])))
    for k, (clean, corrupt) in enumerate(pairs):
        c, x = torch.tensor([list(clean)]), torch.tensor([list(corrupt)])
        a, b = metric_tokens[k]
        name = lambda layer: f"blocks.{layer}.hook_resid_pre"  # noqa: E731
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(c, names_filter=lambda n: n.endswith("hook_resid_pre"))
            for i, layer in enumerate(layers):
                for j, cell in enumerate(per_pair[k]):
                    p = list(cell)

                    def hook(act: Tensor, hook: Any, layer: int = layer, p: list = p, cache: Any = cache) -> Tensor:
                        act = act.clone()
                        act[:, p] = cache[f"blocks.{layer}.hook_resid_pre"][:, p]
                        return act

                    logits = bridge.run_with_hooks(x, fwd_hooks=[(name(layer), hook)])
                    out[k, i, j] = float(logits[0, -1, a] - logits[0, -1, b])
    return out


# --------------------------------------------------------------------------- attribution patching


@dataclass
class AttributionResult:
    """AtP estimates of the resid_pre patching effect ``patched - target`` per cell."""

    layers: list[int]
    positions: list[Any]
    estimate: np.ndarray  # [pairs, layers, positions]

    def correlation(self, exact: PatchResult) -> float:
        """Pearson r between AtP estimates and exact effects (``patched - target``).

        Computed on raw metric deltas (not normalised recovery, which is undefined for zero-gap
        pairs), over the finite cells only; see :meth:`agreement` for the counts and a CI.
        """
        return self.agreement(exact, n_boot=0).value

    def agreement(self, exact: PatchResult, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
        """Pearson r of AtP vs exact effects with a bootstrap CI over pairs.

        Cells where either value is non-finite are excluded (``n`` counts the cells used). If
        either vector is constant (e.g. a metric ``logit[a] - logit[b]`` with ``a == b`` is
        identically 0), r is undefined and NaN is returned with ``method`` saying why.
        """
        eff = exact.patched - exact.target_metric[:, None, None]
        if eff.shape != self.estimate.shape:
            raise DataError(f"AtP grid {self.estimate.shape} and exact grid {eff.shape} differ")
        ok = np.isfinite(eff) & np.isfinite(self.estimate)
        n_bad = int((~ok).sum())

        def r_of(idx: np.ndarray) -> float:
            m = ok[idx]
            a, b = self.estimate[idx][m], eff[idx][m]
            if a.size < 2 or a.std() == 0 or b.std() == 0:
                return float("nan")
            return float(np.corrcoef(a, b)[0, 1])

        every = np.arange(eff.shape[0])
        r = r_of(every)
        method = f"pearson over finite cells ({n_bad} non-finite excluded)"
        if not np.isfinite(r):
            return Estimate(r, float("nan"), float("nan"), int(ok.sum()), method + "; constant vector: r undefined")
        lo = hi = float("nan")
        rng = np.random.default_rng(seed)
        if eff.shape[0] > 1:
            unit = "; bootstrap over pairs"
            draws = [r_of(rng.integers(0, eff.shape[0], eff.shape[0])) for _ in range(n_boot)]
        else:  # one pair: resample cells; they are not independent, so the interval is optimistic
            unit = "; one pair: bootstrap over cells (not independent: the interval is optimistic)"
            a, b = self.estimate[ok], eff[ok]
            draws = []
            for _ in range(n_boot):
                i = rng.integers(0, a.size, a.size)
                draws.append(float(np.corrcoef(a[i], b[i])[0, 1]) if a[i].std() and b[i].std() else float("nan"))
        boots = np.array(draws)
        boots = boots[np.isfinite(boots)]
        if boots.size:
            lo, hi = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
        return Estimate(r, lo, hi, int(ok.sum()), method + unit)

    def to_dataframe(self) -> pd.DataFrame:
        index = _grid_index(self.estimate.shape, self.layers, self.positions)
        index.pop("_pi")
        return pd.DataFrame({**index, "atp_effect": self.estimate.ravel()})


def attribution_patch(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    metric_tokens: Sequence[tuple[int, int]],
    *,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    direction: str = "denoise",
    stack: LlamaStack | None = None,
    cells: Cells | None = None,
    cell_labels: Sequence[str] | None = None,
) -> AttributionResult:
    """Attribution patching: ``effect(l, p) ≈ (src[l, p] - tgt[l, p]) · ∂metric/∂tgt[l, p]``.

    One forward of the source, one forward of the target with gradients kept, one backward from
    the metric: every resid_pre cell at once (a first-order Taylor estimate of exact patching;
    good where the metric is locally linear, poor across saturated softmaxes). A multi-position
    cell (``cells``, as in :func:`patch_grid`) is estimated by the sum over its positions.
    """
    _check_pairs(pairs, metric_tokens)
    stack = stack or LlamaStack(model)
    layers = list(range(stack.n_layers)) if layers is None else list(layers)
    if cells is not None:
        per_pair = _check_cells(cells, pairs, cell_labels)
        rel: list[Any] = list(cell_labels) if cell_labels is not None else [f"c{i}" for i in range(len(per_pair[0]))]
    else:
        rel = list(positions) if positions is not None else list(range(len(pairs[0][0])))
        per_pair = [[(p,) for p in resolve_positions(rel, len(a))] for a, _ in pairs]
    est = np.zeros((len(pairs), len(layers), len(rel)))
    for k, (clean, corrupt) in enumerate(pairs):
        src_ids, tgt_ids = (clean, corrupt) if direction == "denoise" else (corrupt, clean)
        with torch.inference_mode():
            src = trace(stack, src_ids)
        tgt = trace(stack, tgt_ids, grad=True)
        tok = torch.tensor([list(metric_tokens[k])], device=stack.device)
        stack.logit_diff(tgt.resid[-1][:, -1], tok).sum().backward()
        for i, layer in enumerate(layers):
            g = tgt.resid[layer].grad[0]
            per_pos = ((src.resid[layer] - tgt.resid[layer][0].detach()) * g).sum(-1).double().cpu()
            est[k, i] = [float(per_pos[list(c)].sum()) for c in per_pair[k]]
    return AttributionResult(layers, rel, est)


# --------------------------------------------------------------------------- O -> H transplant


@dataclass
class TransplantResult:
    """Per-layer shift of the self-prediction toward the donor's label, beside its controls.

    ``shift[condition]`` is ``[items, layers]``: ``(patched - unpatched)`` of
    ``logit[donor label] - logit[own label]`` in H. Conditions: ``donor`` (O of the other prompt
    of the pair, different property), ``same_property`` (a donor whose property equals the
    recipient's), ``random`` (a random vector with the donor's norm), ``other_task``.
    """

    layers: list[int]
    shift: dict[str, np.ndarray]
    estimates: dict[str, list[Estimate]]

    def to_dataframe(self) -> pd.DataFrame:
        rows = []
        for cond, ests in self.estimates.items():
            for layer, e in zip(self.layers, ests):
                rows.append({"condition": cond, "layer": layer, **e.to_dict()})
        return pd.DataFrame(rows)


@dataclass
class TransplantItem:
    """One recipient H prompt, its metric tokens and the donors' O prompts.

    ``metric_tokens``: ``(donor label, own label)`` in H. ``donors``: condition name →
    ``(O token ids, O positions to read, H positions to write)``; condition ``"random"`` is
    built from the ``"donor"`` vectors.
    """

    h_ids: list[int]
    metric_tokens: tuple[int, int]
    donors: dict[str, tuple[list[int], list[int], list[int]]]


@torch.inference_mode()
def transplant(
    model: Any,
    items: Sequence[TransplantItem],
    *,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    max_rows: int = 256,
    stack: LlamaStack | None = None,
) -> TransplantResult:
    """Write the O-run residual (resid_pre at each layer) into H at aligned positions.

    For each item and layer, the residual of the donor's O run at its read positions replaces
    H's residual at the write positions (same layer), and the metric shift is recorded.
    """
    if not items:
        raise DataError("no transplant items")
    stack = stack or LlamaStack(model)
    layers = list(range(stack.n_layers)) if layers is None else list(layers)
    gen = torch.Generator().manual_seed(seed)
    targets, rows, where = [], [], []
    for k, it in enumerate(items):
        tgt = trace(stack, it.h_ids)
        targets.append(tgt)
        donor_cache = {c: trace(stack, ids) for c, (ids, _, _) in it.donors.items()}
        for cond, (_, read, write) in it.donors.items():
            if len(read) != len(write):
                raise DataError(f"{cond}: {len(read)} read positions but {len(write)} write positions")
        conds = list(it.donors) + (["random"] if "donor" in it.donors else [])
        for cond in conds:
            for i, layer in enumerate(layers):
                if cond == "random":
                    _, read, write = it.donors["donor"]
                    ref = donor_cache["donor"].resid[layer][read]
                    r = torch.randn(ref.shape, generator=gen).to(ref)
                    vec = r / r.norm(dim=-1, keepdim=True) * ref.norm(dim=-1, keepdim=True)
                else:
                    _, read, write = it.donors[cond]
                    vec = donor_cache[cond].resid[layer][read]
                rows.append(PatchRow(k, layer, tuple(write), vec))
                where.append((cond, k, i))
    tok = torch.tensor([list(it.metric_tokens) for it in items], dtype=torch.long)
    values = run_rows(stack, targets, tok, rows, max_rows=max_rows).numpy()
    base = np.array([baseline_metric(stack, t, m) for t, m in zip(targets, tok.tolist())])
    shift: dict[str, np.ndarray] = {}
    for (cond, k, i), v in zip(where, values):
        shift.setdefault(cond, np.full((len(items), len(layers)), np.nan))[k, i] = v - base[k]
    ests = {
        c: [bootstrap_ci(s[np.isfinite(s[:, i]), i], n_boot=n_boot, seed=seed) for i in range(len(layers))]
        for c, s in shift.items()
    }
    return TransplantResult(layers, shift, ests)


# --------------------------------------------------------------------------- figures


def heatmap(result: PatchResult, title: str | None = None) -> Any:
    """Plotly heatmap of mean recovery, layer × position, with token labels and CIs on hover."""

    text = [
        [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in zip(mr, lr, hr)]
        for mr, lr, hr in zip(result.mean, result.ci_low, result.ci_high)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=result.mean,
            x=result.position_labels,
            y=[str(layer) for layer in result.layers],
            colorscale="RdBu",
            zmid=0,
            text=text,
            hovertemplate="layer %{y}<br>%{x}<br>recovery %{text}<extra></extra>",
            colorbar={"title": "recovery"},
        )
    )
    fig.update_layout(
        title=title or f"{result.site} {result.direction} patching (n={result.patched.shape[0]})",
        xaxis_title="position (token)",
        yaxis_title="layer",
    )
    return fig


def comparison_figure(o_map: PatchResult, h_map: PatchResult, o_cols: Sequence[int], h_cols: Sequence[int]) -> Any:
    """O-map beside H-map on the quoted P: columns ``o_cols`` of O align with ``h_cols`` of H."""

    fig = make_subplots(rows=1, cols=2, subplot_titles=("O: answer logit diff", "H: property logit diff"))
    for c, (res, cols) in enumerate(((o_map, o_cols), (h_map, h_cols)), start=1):
        fig.add_trace(
            go.Heatmap(
                z=res.mean[:, list(cols)],
                x=[res.position_labels[i] for i in cols],
                y=[str(layer) for layer in res.layers],
                colorscale="RdBu",
                zmid=0,
                showscale=c == 2,
            ),
            row=1,
            col=c,
        )
    fig.update_layout(title="Recovery on the quoted P: object-level vs hypothetical")
    return fig
