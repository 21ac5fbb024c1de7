"""Patching grids: one site, every (layer, cell) of every pair, with per-item recovery and CIs.

For a pair (clean, corrupt) of position-aligned prompts and a metric ``logit[a] - logit[b]`` at
the last position, a *cell* is a layer and one or more positions; patching it copies the source
run's activation there into the target run::

    recovery = (patched - target) / (source - target)

1 means the cell alone carries the whole difference, 0 that it carries none; pairs whose two
runs give the same metric (zero gap) have no recovery (NaN, counted in ``n_excluded``), never a
fake 0 or 1. :func:`patch_grid` computes every cell with the batched rows of :mod:`.rows`;
:func:`looped_patch_grid` is the slow reference (one TransformerLens forward per cell) the fast
path is tested against, and the path for architectures :class:`~.decoder.DecoderStack` does not
support.

**Best cell.** The largest of many noisy cell means is biased upwards; :attr:`PatchResult.summary`
selects the best cell on one random half of the pairs and reports its recovery, with a bootstrap
CI, on the other half (``best_cell.selection`` says so; the naive max is kept beside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, bootstrap_ci, normalised_recovery, select_and_estimate
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.figures import heatmap
from innerprobe.patching.rows import SUFFIX_STRATEGIES, PatchRow, Progress, run_rows
from innerprobe.patching.sites import DIRECTIONS, SITES
from innerprobe.patching.traces import Trace, baseline_metric, trace

Cells = Sequence[Sequence[Sequence[int]]]
"""Per pair, a list of cells; a cell is a tuple of absolute positions patched together."""


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
class BestCell:
    """The best cell of a map: where it is, its held-out recovery, and how it was chosen."""

    layer: int | None
    position: Any
    token: str | None
    estimate: Estimate | None
    selection: str
    naive_layer: int | None = None
    naive_position: Any = None
    naive_token: str | None = None
    naive: Estimate | None = None


@dataclass
class PatchSummary(Summary):
    """A map in numbers: its size and its best cell (``best``: the held-out recovery there)."""

    site: str
    direction: str
    metric: str
    n_pairs: int
    n_excluded_zero_gap: int
    layers: list[int]
    positions: list[Any]
    position_labels: list[str]
    best: Estimate | None
    best_cell: BestCell
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PatchResult(Result):
    """A (layer × position) patching map over pairs, with per-item recovery and bootstrap CIs.

    Attributes:
        patched: metric after the patch, ``[pairs, layers, positions]``.
        source_metric / target_metric: unpatched metric of the source / target run per pair.
        recovery: ``(patched - target) / (source - target)`` per item (NaN where the gap is 0).
        mean, ci_low, ci_high: ``[layers, positions]`` nan-mean recovery and percentile bootstrap
            interval over pairs.
        position_labels: the token at each position (of the first pair's target).
        seed: the seed of the bootstrap and of the best cell's selection split.

    ``.table`` is long: one row per pair × layer × position; ``.summary`` a :class:`PatchSummary`;
    ``.figure()`` the heatmap of mean recovery.
    """

    stage: ClassVar[str] = "patch_grid"

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

    def cell(self, layer: int, position: Any) -> Estimate:
        """Mean recovery of one cell with its bootstrap CI over the pairs with a finite value."""
        i, j = self.layers.index(layer), self.positions.index(position)
        vals = self.recovery[:, i, j]
        return bootstrap_ci(vals[np.isfinite(vals)])

    @property
    def table(self) -> pd.DataFrame:
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

    def best_cell(self) -> BestCell:
        """The cell of highest mean recovery, selected on one half of the pairs and estimated on
        the other (:func:`~innerprobe.core.stats.select_and_estimate`); ``selection`` says which was
        done. With fewer than 4 pairs no split is possible: the naive max over all pairs is
        reported and ``selection`` says it is optimistic."""
        n, n_l, n_p = self.recovery.shape
        flat = self.recovery.reshape(n, n_l * n_p)
        if not np.isfinite(flat).any():
            return BestCell(None, None, None, None, "no finite recovery")
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
            li, pi = (int(x) for x in np.unravel_index(int(np.argmax(finite)), self.mean.shape))
            nli, npi = li, pi
            est = self._mean_estimate(li, pi)
            selection = (f"naive max over {n_l * n_p} cells on all n={n} pairs (too few pairs with a "
                         "finite recovery to split; optimistic: selected and estimated on the same pairs)")
        return BestCell(
            self.layers[li], self.positions[pi], self.position_labels[pi], est, selection,
            self.layers[nli], self.positions[npi], self.position_labels[npi], self._mean_estimate(nli, npi),
        )

    def _mean_estimate(self, li: int, pi: int) -> Estimate:
        return Estimate(float(self.mean[li, pi]), float(self.ci_low[li, pi]), float(self.ci_high[li, pi]),
                        int(np.isfinite(self.recovery[:, li, pi]).sum()), "percentile bootstrap")

    @property
    def summary(self) -> PatchSummary:
        best = self.best_cell()
        return PatchSummary(
            self.site, self.direction, self.metric, int(self.patched.shape[0]), self.n_excluded,
            list(self.layers), list(self.positions), list(self.position_labels), best.estimate, best,
            dict(self.extra),
        )

    def figure(self, title: str | None = None) -> Any:
        return heatmap(self, title)


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


def _site_rows(
    stack: DecoderStack,
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
    stack: DecoderStack | None = None,
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
    stack = stack or DecoderStack(model)
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

__all__ = ["BestCell", "Cells", "PatchResult", "PatchSummary", "looped_patch_grid", "patch_grid", "resolve_positions"]
