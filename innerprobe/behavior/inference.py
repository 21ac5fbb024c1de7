"""Batched greedy generation and forced-choice label scoring, with padding done right.

Both run on the HF model the bridge wraps (``bridge.original_model``): the bridge's forward is
numerically the HF forward in the default numerics mode, and HF ``generate`` has a KV cache.
Batches are **left-padded** with an explicit ``attention_mask`` and ``position_ids`` counted over
real tokens only, so a padded row gives the same next-token logits as the row alone (a padded
token tensor without a mask gives silently wrong activations).

A prompt that does not fit the model's context (``config.max_position_embeddings``) together with
what is generated or scored after it raises ``DataError`` naming the row and the lengths before
any forward pass: its numbers would be silently wrong. (Object prompts that are too long are
skipped and counted by :mod:`innerprobe.behavior` before they get here.)
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError, check_at_least
from innerprobe.protocol.prompts import LabelTokens


def left_pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Left-pad token rows; return (input_ids, attention_mask, position_ids)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    check_at_least("batch_size", batch_size, 1)
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _order_by_length(rows: Sequence[Sequence[int]]) -> list[int]:
    """Indices sorted by length, so each batch pads little (results are put back in order)."""
    return sorted(range(len(rows)), key=lambda i: len(rows[i]))


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def context_length(hf_model: Any) -> int | None:
    """The model's context length (``max_position_embeddings``), or None when it has none."""
    n = getattr(getattr(hf_model, "config", None), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) else None


def check_fits(
    hf_model: Any,
    rows: Sequence[Sequence[int]],
    extra: int,
    after: str,
    names: Sequence[str] | None = None,
    what: str = "prompt",
) -> None:
    """``DataError`` naming the first row (by ``names[i]`` when given) whose length plus ``extra``
    tokens exceeds the model's context."""
    limit = context_length(hf_model)
    if limit is None:
        return
    for i, r in enumerate(rows):
        if len(r) + extra > limit:
            which = f"{what} of item {names[i]!r}" if names is not None else f"{what} row {i} (0-based, input order)"
            raise DataError(
                f"{which} is {len(r)} tokens; with {extra} {after} it exceeds "
                f"the model's context length {limit}: shorten that item's question or leave it out"
            )


def cache_kwarg(hf_model: Any) -> str:
    """The keyword the installed forward takes a key/value cache by.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns until 5.40).
    """
    try:
        params = inspect.signature(hf_model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output: Any) -> Any:
    """A forward output's key/value cache under either name (without the deprecation warning)."""
    keys = output.keys() if hasattr(output, "keys") else ()
    return output["cache"] if "cache" in keys else output.past_key_values


@torch.inference_mode()
def generate(
    hf_model: Any,
    tokenizer: Any,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
    progress: Any = None,
) -> list[list[str]]:
    """Decode continuations of each prompt; ``num_samples`` per prompt (greedy: 1).

    Returns a list (one entry per row, in input order) of ``num_samples`` decoded strings,
    special tokens removed. Sampling is seeded: same seed, same samples.
    """
    check_at_least("max_new_tokens", max_new_tokens, 1)
    check_at_least("num_samples", num_samples, 1)
    check_fits(hf_model, rows, max_new_tokens, "new tokens to generate")
    pad_id = tokenizer.pad_token_id
    device = _model_device(hf_model)
    order = _order_by_length(rows)
    out: list[list[str]] = [[] for _ in rows]
    if do_sample:
        torch.manual_seed(seed)
    for sl in batches(len(order), batch_size):
        idx = order[sl]
        ids, mask, _ = left_pad([rows[i] for i in idx], pad_id, device)
        gen = hf_model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=None,
            top_k=None if not do_sample else 0,
            num_return_sequences=num_samples,
            pad_token_id=pad_id,
        )
        new = gen[:, ids.shape[1] :]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(idx):
            out[i] = texts[j * num_samples : (j + 1) * num_samples]
        if progress is not None:
            progress(len(idx))
    return out


def _last_only(hf_model: Any) -> dict[str, int]:
    """``{"logits_to_keep": 1}`` when the model's forward takes it, else ``{}``.

    Unembedding every position costs a fifth of a SmolLM2 forward (49k-way logits at ~60
    positions) when only the last position's next-token distribution is read.
    """
    try:
        params = inspect.signature(hf_model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


@torch.inference_mode()
def next_token_logprobs(
    hf_model: Any, rows: Sequence[Sequence[int]], pad_id: int, *, batch_size: int = 16
) -> Float[Tensor, "n vocab"]:
    """Log-softmax of the next-token logits after each row (float32, on CPU)."""
    check_fits(hf_model, rows, 0, "no further tokens")
    device = _model_device(hf_model)
    order = _order_by_length(rows)
    out: list[Tensor | None] = [None] * len(rows)
    for sl in batches(len(order), batch_size):
        idx = order[sl]
        ids, mask, pos = left_pad([rows[i] for i in idx], pad_id, device)
        logits = hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, **_last_only(hf_model)).logits[:, -1]
        lp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for j, i in enumerate(idx):
            out[i] = lp[j]
    return torch.stack(out)  # type: ignore[arg-type]


@torch.inference_mode()
def continuation_logprobs(
    hf_model: Any,
    prefixes: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int = 16,
) -> Float[np.ndarray, " n"]:
    """Sum of log p(continuation tokens | prefix) for each (prefix, continuation) pair.

    One row per pair: the slow reference that :func:`label_logprobs` (shared prefixes) is
    tested against.
    """
    device = _model_device(hf_model)
    rows = [list(p) + list(c) for p, c in zip(prefixes, continuations)]
    check_fits(hf_model, rows, 0, "its continuation included")
    order = _order_by_length(rows)
    out = np.zeros(len(rows), dtype=np.float64)
    for sl in batches(len(order), batch_size):
        idx = order[sl]
        ids, mask, pos = left_pad([rows[i] for i in idx], pad_id, device)
        logp = torch.log_softmax(
            hf_model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float(), -1
        )
        width = ids.shape[1]
        for j, i in enumerate(idx):
            n_c = len(continuations[i])
            targets = ids[j, width - n_c :]
            preds = logp[j, width - n_c - 1 : width - 1]
            out[i] = preds.gather(-1, targets[:, None]).sum().item()
    return out


@torch.inference_mode()
def label_logprobs(
    hf_model: Any,
    rows: Sequence[Sequence[int]],
    labels: LabelTokens,
    pad_id: int,
    *,
    batch_size: int = 16,
    max_rows: int = 256,
) -> Float[np.ndarray, "n n_labels"]:
    """log p(label continuation | prompt) for every row and label, sharing prefixes.

    Labels are scored through a prefix trie: one next-token distribution per *distinct proper
    prefix* of the label token sequences, not one forward per label. Single-token labels need
    only the prompt itself. Multi-token labels (SmolLM2's " 7" is a space token, then the digit;
    colour names span 1-3 tokens) reuse the prompt's keys/values: the prompt runs once per row
    and every non-empty prefix runs as a short continuation on a copy of its cache, in batches of
    at most ``max_rows`` (row, prefix) continuations, instead of re-running prompt + prefix.
    Only the label tokens' log-probs are kept (never a rows × prefixes × vocabulary array).
    """
    check_fits(hf_model, rows, max(map(len, labels.token_ids)), "label tokens (the longest label)")
    prefixes = sorted({ids[:k] for ids in labels.token_ids for k in range(len(ids))}, key=len)
    where = {p: i for i, p in enumerate(prefixes)}
    vocab_ids = sorted({t for ids in labels.token_ids for t in ids})
    col = {t: i for i, t in enumerate(vocab_ids)}
    lp = _prefix_logprobs(hf_model, rows, prefixes, vocab_ids, pad_id, batch_size, max_rows)
    out = np.zeros((len(rows), len(labels.labels)))
    for j, ids in enumerate(labels.token_ids):
        for k, tok in enumerate(ids):
            out[:, j] += lp[:, where[ids[:k]], col[tok]]
    return out


def _prefix_logprobs(
    hf_model: Any,
    rows: Sequence[Sequence[int]],
    prefixes: Sequence[tuple[int, ...]],
    vocab_ids: Sequence[int],
    pad_id: int,
    batch_size: int,
    max_rows: int,
) -> Float[np.ndarray, "n prefix k"]:
    """log p(token | row + prefix) for each row, prefix and token of ``vocab_ids``."""
    device = _model_device(hf_model)
    keep = torch.tensor(list(vocab_ids), device=device)
    out = np.zeros((len(rows), len(prefixes), len(vocab_ids)))
    rest = [(i, p) for i, p in enumerate(prefixes) if p]
    order = _order_by_length(rows)
    for sl in batches(len(order), batch_size):
        idx = order[sl]
        ids, mask, pos = left_pad([rows[i] for i in idx], pad_id, device)
        res = hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=bool(rest), **_last_only(hf_model))
        out[idx, 0] = torch.log_softmax(res.logits[:, -1].float(), -1)[:, keep].double().cpu().numpy()
        if not rest:
            continue
        step = max(1, max_rows // len(idx))
        for c in range(0, len(rest), step):
            chunk = rest[c : c + step]
            out[np.ix_(idx, [i for i, _ in chunk])] = _continuations(
                hf_model, output_cache(res), mask, pos, [p for _, p in chunk], pad_id, keep
            )
    return out


def _continuations(
    hf_model: Any,
    cache: Any,
    mask: Int[Tensor, "batch pos"],
    pos: Int[Tensor, "batch pos"],
    prefixes: Sequence[tuple[int, ...]],
    pad_id: int,
    keep: Int[Tensor, " k"],
) -> Float[np.ndarray, "batch prefix k"]:
    """Run every prefix after every cached prompt; log-probs of ``keep`` after each prefix.

    Continuations are right-padded: under causal attention a real token never sees the padding
    after it, so the distribution after prefix ``p`` is read at its own last token.
    """
    b, c = mask.shape[0], len(prefixes)
    width = max(len(p) for p in prefixes)
    cont = torch.full((c, width), pad_id, dtype=torch.long)
    cmask = torch.zeros((c, width), dtype=torch.long)
    for j, p in enumerate(prefixes):
        cont[j, : len(p)] = torch.tensor(p)
        cmask[j, : len(p)] = 1
    dev = mask.device
    cont, cmask = cont.to(dev).repeat(b, 1), cmask.to(dev).repeat(b, 1)  # row-major: row r, prefix j
    attn = torch.cat([mask.repeat_interleave(c, 0), cmask], 1)
    cpos = pos[:, -1:].repeat_interleave(c, 0) + 1 + torch.arange(width, device=dev)
    past = copy.deepcopy(cache)
    past.batch_repeat_interleave(c)
    cache_kw = {cache_kwarg(hf_model): past}
    logits = hf_model(input_ids=cont, attention_mask=attn, position_ids=cpos, use_cache=True, **cache_kw).logits
    last = torch.tensor([len(p) - 1 for p in prefixes], device=dev).repeat(b)
    picked = logits[torch.arange(b * c, device=dev), last].float()
    return torch.log_softmax(picked, -1)[:, keep].view(b, c, -1).double().cpu().numpy()


def label_distribution(
    hf_model: Any,
    rows: Sequence[Sequence[int]],
    labels: LabelTokens,
    pad_id: int,
    *,
    batch_size: int = 16,
) -> tuple[Float[np.ndarray, "n n_labels"], Float[np.ndarray, " n"]]:
    """Forced choice: the model's distribution over ``labels`` after each prompt.

    Returns ``(probs, label_mass)``: ``probs`` renormalised over the labels (rows sum to 1),
    and ``label_mass``, the total probability the unrestricted model puts on the label
    continuations, a check of how forced the choice was.
    """
    scores = label_logprobs(hf_model, rows, labels, pad_id, batch_size=batch_size)
    mass = np.exp(scores).sum(-1)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return probs, mass
