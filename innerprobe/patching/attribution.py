"""Attribution patching (AtP): every resid_pre cell from one forward and one backward.

Exact patching runs one (batched) forward per cell. AtP (Nanda 2023; Kramár et al. 2024) takes
the first-order Taylor expansion of the metric in the patched activation instead::

    effect(l, p) ≈ (source[l, p] - target[l, p]) · ∂metric/∂target[l, p]

so a whole grid costs one source forward, one target forward with the graph kept and one
backward. It is good where the metric is locally linear and poor across saturated softmaxes, so
it is triage, not a result: :meth:`AttributionResult.agreement` reports its Pearson r with the
exact grid (with a bootstrap CI over pairs) wherever both were computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from innerprobe.core.errors import DataError
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.grid import (
    Cells,
    PatchResult,
    _check_cells,
    _check_pairs,
    _grid_index,
    resolve_positions,
)
from innerprobe.patching.traces import trace


@dataclass
class AttributionSummary(Summary):
    """Size of the AtP grid and where its largest mean estimate sits (no CI: AtP is triage)."""

    n_pairs: int
    layers: list[int]
    positions: list[Any]
    top_layer: int | None
    top_position: Any
    top_effect: float


@dataclass
class AttributionResult(Result):
    """AtP estimates of the resid_pre patching effect ``patched - target`` per cell."""

    stage: ClassVar[str] = "attribution"

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

    @property
    def table(self) -> pd.DataFrame:
        """One row per pair × layer × cell: ``pair, layer, position, atp_effect``."""
        index = _grid_index(self.estimate.shape, self.layers, self.positions)
        index.pop("_pi")
        return pd.DataFrame({**index, "atp_effect": self.estimate.ravel()})

    @property
    def summary(self) -> AttributionSummary:
        mean = self.estimate.mean(0) if self.estimate.size else np.zeros((0, 0))
        if not np.isfinite(mean).any():
            return AttributionSummary(int(self.estimate.shape[0]), list(self.layers), list(self.positions),
                                      None, None, float("nan"))
        li, pi = (int(x) for x in np.unravel_index(int(np.nanargmax(np.abs(mean))), mean.shape))
        return AttributionSummary(int(self.estimate.shape[0]), list(self.layers), list(self.positions),
                                  self.layers[li], self.positions[pi], float(mean[li, pi]))

    def figure(self) -> go.Figure:
        """Heatmap of the mean AtP effect over pairs, layer × cell."""
        fig = go.Figure(go.Heatmap(z=self.estimate.mean(0), x=[str(p) for p in self.positions],
                                   y=[str(layer) for layer in self.layers], colorscale="RdBu", zmid=0,
                                   colorbar={"title": "AtP effect"}))
        fig.update_layout(title=f"attribution patching (n={self.estimate.shape[0]})", xaxis_title="cell",
                          yaxis_title="layer")
        return fig


def attribution_patch(
    model: Any,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    metric_tokens: Sequence[tuple[int, int]],
    *,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    direction: str = "denoise",
    stack: DecoderStack | None = None,
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
    stack = stack or DecoderStack(model)
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
        metric = stack.logit_diff(tgt.resid[-1][:, -1], tok).sum()
        # autograd.grad, not backward(): nothing accumulates into the model's parameters' .grad
        grads = torch.autograd.grad(metric, [tgt.resid[layer] for layer in layers])
        for i, (layer, g) in enumerate(zip(layers, grads)):
            g = g[0]
            per_pos = ((src.resid[layer] - tgt.resid[layer][0].detach()) * g).sum(-1).double().cpu()
            est[k, i] = [float(per_pos[list(c)].sum()) for c in per_pair[k]]
    return AttributionResult(layers, rel, est)


__all__ = ["AttributionResult", "AttributionSummary", "attribution_patch"]
