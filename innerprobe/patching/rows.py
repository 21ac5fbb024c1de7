"""Patched forwards, batched: many cells per call, nothing recomputed twice.

Activation patching asks *where* a difference between two prompts is carried. Run a *source*
prompt and a *target* prompt that differ in one token; copy one activation (one site, one layer,
one position) of the source run into the target run; measure how far a metric (a logit
difference at the last position) moves from its target value towards its source value. The
textbook loop (TransformerLens ``get_act_patch_resid_pre``) runs one full forward per cell. Two
facts make almost all of that work redundant:

1. **Layers below the patch never change.** A patch at the input of layer ``l`` leaves the
   residual stream of layers ``< l`` as it was in the target run, so the patched forward can
   *start at layer l* from the target's cached residual. Cells are run as a *staircase*: the
   batch at layer ``j`` holds every row whose patch layer is ``<= j``; rows join the batch at
   their own layer.
2. **Positions before the patch never change** (causal attention). A patch at position ``p``
   only moves positions ``>= p``, so only the *suffix* ``[s, T)`` (``s <= p``) is recomputed;
   attention reads the target's cached keys and values for the prefix ``[0, s)``.

Where each staircase starts is a trade: one start per prompt length (the earliest patched
position) makes few, big batches but recomputes positions most rows cannot change; one start per
row computes the fewest positions in many small batches. :func:`plan_suffixes` picks the grouping
that minimises positions × layers plus a per-batch overhead (exact dynamic programming over the
distinct start positions); on hypothetical prompts, where the replaced word sits ~50 tokens
before the end, it runs a word + P-tokens + last-positions grid 1.6× faster than one shared start.

A :class:`PatchRow` is the unit: "overwrite the residual entering layer ``start`` of target
``target`` at ``positions`` with ``vectors``". Grids (:mod:`.grid`) and transplants
(:mod:`.transplant`) are both lists of rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.traces import Trace

SUFFIX_STRATEGIES = ("auto", "per_position", "shared")
Progress = Callable[[int], None] | None


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
    stack: DecoderStack,
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
    stack: DecoderStack,
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


__all__ = ["PatchRow", "Progress", "SUFFIX_STRATEGIES", "plan_suffixes", "run_rows"]
