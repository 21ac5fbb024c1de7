"""Capture residual-stream activations of the object and hypothetical prompts into a store.

For every item the model reads two prompts: the object prompt O(P) and the hypothetical
H(P, property). The white-box stages need the residual stream at a few *named* token positions
of each, at many layers:

=================  ======  ==========================================================
position           run     token(s)
=================  ======  ==========================================================
``o_last``         object  the last prompt token (after the prefill): where O answers
``h_last``         hypo.   the last token of H: where the self-report is produced
``quote_last``     hypo.   the last token of the quoted P inside H
``quote_mean``     hypo.   mean over the quoted span ``quote_start:quote_end``
``prefill_start``  both    the first token of the assistant prefill ("Answer:")
``-2``, ``5``, ...  both    an integer index (negative counts from the end)
=================  ======  ==========================================================

How it is done, and why it is cheap:

* Prompts are **left-padded** in batches with an ``attention_mask`` (the bridge derives the
  position ids from it), so a padded row's activations equal the row's alone.
* One hook per ``(site, layer)`` (TransformerLens names ``blocks.{i}.hook_{site}``) gathers only
  the requested positions inside the hook — ``[batch, n_positions, d_model]`` — and the full
  ``[batch, pos, d_model]`` tensor is never kept. The last hook to fire raises TransformerLens'
  own ``StopAtLayerException`` (what ``stop_at_layer=max_layer + 1`` does), which the bridge
  catches: later blocks and the unembedding never run, even when the last layer is captured.
* Results are written shard by shard (:class:`innerprobe.activations.writer.StoreWriter`); a capture into a
  directory holding a matching manifest resumes after the last complete shard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from datasets import Dataset
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge.exceptions import StopAtLayerException

from innerprobe.activations.config import (
    NAMED_POSITIONS,
    RESERVED_COLUMNS,
    SITE_ORDER,
    SITES,
    CaptureConfig,
    _is_int,
    hook_name,
    resolve_layers,
    resolve_position_names,
    resolve_sites,
)
from innerprobe.activations.store import (
    MANIFEST,
    STORE_DTYPES,
    ActivationStore,
    tensor_key,
)
from innerprobe.activations.writer import StoreWriter
from innerprobe.behavior import build_hypotheticals
from innerprobe.behavior.inference import batches, left_pad
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.io import prepare_out_dir, provenance
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, object_prompt
from innerprobe.protocol.properties import Property, get_property
from innerprobe.protocol.tasks import as_items, item_meta, items_digest

log = logging.getLogger(__name__)


def position_span(prompt: Prompt, name: str) -> tuple[int, int]:
    """Token span ``[start, stop)`` of a named position in ``prompt`` (a single token or a mean)."""
    n = len(prompt)
    if _is_int(name):
        i = int(name)
        if not -n <= i < n:
            raise DataError(f"position {i} out of range for a prompt of {n} tokens")
        i %= n
        return i, i + 1
    pos = prompt.positions
    if name in ("o_last", "h_last"):
        return pos["last"], pos["last"] + 1
    if name == "prefill_start":
        if pos["prefill_start"] >= n:
            raise DataError("position 'prefill_start' needs an assistant prefill; this prompt has none")
        return pos["prefill_start"], pos["prefill_start"] + 1
    if name == "quote_last":
        return pos["quote_last"], pos["quote_last"] + 1
    if name == "quote_mean":
        return pos["quote_start"], pos["quote_end"]
    raise UnknownNameError("position", name, [p for ps in NAMED_POSITIONS.values() for p in ps])


# --------------------------------------------------------------------------- gathering


@dataclass
class Gather:
    """Where to read each requested position in one left-padded batch.

    Every position is a weighted sum over up to ``width`` token slots: a single token has
    weight 1 in its first slot, a span of ``k`` tokens weight ``1/k`` in ``k`` slots. Unused
    slots point at a real token with weight 0, so padding (whatever its value) never enters.
    """

    index: Int[Tensor, "batch n_pos slot"]
    weight: Float[Tensor, "batch n_pos slot"]

    @classmethod
    def build(
        cls, spans: list[list[tuple[int, int]]], offsets: list[int], device: torch.device
    ) -> Gather:
        width = max(b - a for row in spans for a, b in row)
        idx = torch.zeros(len(spans), len(spans[0]), width, dtype=torch.long)
        w = torch.zeros(len(spans), len(spans[0]), width)
        for r, (row, off) in enumerate(zip(spans, offsets)):
            for j, (a, b) in enumerate(row):
                k = b - a
                idx[r, j] = off + a
                idx[r, j, :k] = torch.arange(off + a, off + b)
                w[r, j, :k] = 1.0 / k
        return cls(idx.to(device), w.to(device))

    def __call__(self, act: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch n_pos d_model"]:
        b, p, s = self.index.shape
        rows = torch.arange(b, device=act.device)[:, None]
        picked = act[rows, self.index.view(b, p * s)].view(b, p, s, -1)
        if s == 1:
            return picked[:, :, 0]
        return (picked * self.weight.to(act.dtype)[..., None]).sum(2)


def _forward_gather(
    model: LoadedModel,
    rows: list[list[int]],
    spans: list[list[tuple[int, int]]],
    sites: list[str],
    layers: list[int],
) -> dict[str, Float[Tensor, "batch n_pos layer d_model"]]:
    """One padded forward; per site, the gathered positions at every layer (on CPU, float32)."""
    device = model.device
    ids, mask, _ = left_pad(rows, model.tokenizer.pad_token_id, device)
    offsets = [ids.shape[1] - len(r) for r in rows]
    gather = Gather.build(spans, offsets, device)
    got: dict[tuple[str, int], Tensor] = {}

    last = max((layers[-1], SITE_ORDER[s]) for s in sites)
    want = len(sites) * len(layers)

    def make_hook(site: str, layer: int) -> Callable[[Tensor, Any], None]:
        def hook(act: Tensor, hook: Any) -> None:
            act = act[0] if isinstance(act, tuple) else act
            got[(site, layer)] = gather(act.detach()).float()
            if (layer, SITE_ORDER[site]) == last and len(got) == want:
                # Everything is gathered: skip the rest of the forward (later blocks, unembed).
                raise StopAtLayerException(act)

        return hook

    fwd_hooks = [(hook_name(s, layer), make_hook(s, layer)) for s in sites for layer in layers]
    with torch.inference_mode():
        model.bridge.run_with_hooks(ids, fwd_hooks=fwd_hooks, attention_mask=mask, return_type=None)
    out = {}
    for s in sites:
        stacked = torch.stack([got[(s, layer)] for layer in layers], dim=2)  # batch n_pos layer d
        bad = ~torch.isfinite(stacked)
        if bad.any():
            layer = layers[int(bad.nonzero()[0, 2])]
            raise DataError(f"non-finite activations at site {s!r}, layer {layer} ({hook_name(s, layer)})")
        out[s] = stacked.cpu()
    return out


def capture_prompts(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    positions: Sequence[str],
    sites: Sequence[str],
    layers: Sequence[int],
    *,
    batch_size: int = 16,
) -> dict[tuple[str, str], Float[Tensor, "n layer d_model"]]:
    """Activations of ``prompts`` at ``positions`` × ``sites`` × ``layers``, float32 on CPU.

    Returns ``{(site, position): [n_prompts, n_layers, d_model]}`` in prompt order. Prompts are
    batched by length (least padding) and put back in order.
    """
    spans = [[position_span(p, name) for name in positions] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = {
        (s, name): torch.empty(len(prompts), len(layers), model.d_model)
        for s in sites
        for name in positions
    }
    for sl in batches(len(order), batch_size):
        idx = order[sl]
        got = _forward_gather(
            model, [prompts[i].input_ids for i in idx], [spans[i] for i in idx], list(sites), list(layers)
        )
        for s, t in got.items():
            for j, name in enumerate(positions):
                out[(s, name)][idx] = t[:, j]
    return out


# --------------------------------------------------------------------------- the store


def _rows_table(items: Dataset, labels: dict[str, list] | None) -> pd.DataFrame:
    n = len(items)
    table = pd.DataFrame(
        {
            "index": range(n),
            "id": [str(x) for x in items["id"]],
            "task": list(items["task"]),
            "group": [item_meta(r).get("group") for r in items],
        }
    )
    for name, values in (labels or {}).items():
        if name in RESERVED_COLUMNS:
            raise DataError(f"label column {name!r} is reserved ({', '.join(RESERVED_COLUMNS)})")
        if len(values) != n:
            raise DataError(f"label column {name!r} has {len(values)} values for {n} items")
        table[name] = list(values)
    return table


def capture(
    model: LoadedModel,
    items: Dataset | Sequence[Mapping[str, Any]] | str,
    prop: Property | str,
    config: CaptureConfig | None = None,
    *,
    out: str | Path,
    labels: dict[str, list] | None = None,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> ActivationStore:
    """Capture O and H activations of every item into the store at ``out``; return it opened.

    Args:
        model: a loaded model (:func:`innerprobe.models.load.load_model`).
        items: a ``datasets.Dataset`` of items, a list of dicts (item records, or rows with a
            ``question``), or a task name / file path (see
            :func:`innerprobe.protocol.tasks.as_items`).
        prop: the property asked about in H (a :class:`Property` or its name).
        config: what to capture (:class:`CaptureConfig`; default: its defaults).
        out: the store directory.
        labels: extra row-table columns, one value per item (probe targets).
        progress: called with each shard's number of items as the shard is committed (the
            increment, for a progress bar's ``advance``).
        **options: :class:`CaptureConfig` fields, replacing those of ``config``
            (``capture(m, items, prop, out=d, layers=[0, 3])``).

    A directory already holding a matching (incomplete) capture is resumed; one holding a
    different capture raises ``StoreMismatchError``. Set either position list empty to skip
    that run. The manifest records the config and ``items_digest`` (which items, in order).
    """
    cfg = CaptureConfig.from_options(config, **options)
    items = as_items(items)
    prop = get_property(prop) if isinstance(prop, str) else prop
    layers = resolve_layers(cfg.layers, model.n_layers)
    sites, positions, spec = list(cfg.sites), cfg.positions, cfg.spec
    rows_table = _rows_table(items, labels)
    out = prepare_out_dir(out, "capture")
    request = {
        **provenance(model.fingerprint, seed=cfg.seed, template_hash=spec.template_hash(prop)),
        "dtype": cfg.dtype,
        "model_dtype": model.fingerprint.dtype,
        "property": prop.name,
        "spec": spec.to_dict(),
        "sites": sites,
        "layers": layers,
        "positions": positions,
        "d_model": model.d_model,
        "n_items": len(items),
        "shard_size": cfg.shard_size,
        "batch_size": cfg.batch_size,
        "items_digest": items_digest(items),
        "label_columns": sorted(labels or {}),
    }
    if (out / MANIFEST).exists():
        writer = StoreWriter.resume(out, request)
        log.info("resuming capture in %s after %d shard(s)", out, writer.n_done)
    else:
        writer = StoreWriter.create(out, request, rows_table)
    o_prompts = [object_prompt(model.tokenizer, q, spec) for q in items["question"]] if positions["object"] else []
    h_prompts = build_hypotheticals(model, items, prop, spec) if positions["hypothetical"] else []
    store_dtype = STORE_DTYPES[cfg.dtype]
    shard_size = cfg.shard_size
    n_shards = -(-len(items) // shard_size)
    for k in range(writer.n_done, n_shards):
        rows = slice(k * shard_size, min((k + 1) * shard_size, len(items)))
        tensors: dict[str, Tensor] = {}
        for run, prompts in (("object", o_prompts), ("hypothetical", h_prompts)):
            if not positions[run]:
                continue
            got = capture_prompts(
                model, prompts[rows], positions[run], sites, layers, batch_size=cfg.batch_size
            )
            for (site, name), t in got.items():
                t = t.to(store_dtype)
                if not torch.isfinite(t).all():
                    raise DataError(
                        f"{run} {site} {name}: activations overflow {cfg.dtype}; capture with dtype='float32'"
                    )
                tensors[tensor_key(run, site, name)] = t
        writer.write_shard(k, rows, tensors)
        if progress is not None:
            progress(rows.stop - rows.start)
    return writer.finish()


__all__ = [
    "NAMED_POSITIONS",
    "RESERVED_COLUMNS",
    "SITES",
    "SITE_ORDER",
    "CaptureConfig",
    "Gather",
    "capture",
    "capture_prompts",
    "hook_name",
    "position_span",
    "resolve_layers",
    "resolve_position_names",
    "resolve_sites",
]
