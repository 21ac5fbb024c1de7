"""Plotly figures of patching maps: a heatmap per map, and O beside H on the quoted P.

Both take any map with ``mean``/``ci_low``/``ci_high`` ``[layers, cells]``, ``layers`` and
``position_labels`` (a :class:`~innerprobe.patching.grid.PatchResult`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def heatmap(result: Any, title: str | None = None) -> Any:
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


def comparison_figure(o_map: Any, h_map: Any, o_cols: Sequence[int], h_cols: Sequence[int]) -> Any:
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


__all__ = ["comparison_figure", "heatmap"]
