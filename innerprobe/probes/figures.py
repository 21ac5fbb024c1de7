"""Layer curves: probe accuracy by layer, with its interval, beside the controls.

The picture that says where a label becomes linearly readable: one line per split (within O,
within H, O→H and H→O transfer) with its Wilson band, the control task dotted in the same colour
(a curve that tracks it is memorisation, not a feature), and the shuffled-label and majority
baselines as grey and black dashes.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["layer_curves"]


def layer_curves(df: pd.DataFrame, *, probe: str | None = None, items: str = "held_out") -> go.Figure:
    """Accuracy by layer per split with CI bands, beside the control task, shuffled and majority lines.

    ``df`` is a probe table (:attr:`ProbeResult.table <innerprobe.probes.ProbeResult.table>`);
    ``probe`` defaults to the first probe in it, ``items`` picks held-out or same-item transfer.
    """
    acc = df[(df["metric"] == "accuracy") & (df["items"] == items)]
    probe = probe or str(acc["probe"].iloc[0])
    acc = acc[acc["probe"] == probe]
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (split, part) in enumerate(acc.groupby("split", sort=False)):
        part = part.sort_values("layer")
        color = palette[i % len(palette)]
        band_x = list(part["layer"]) + list(part["layer"])[::-1]
        fig.add_trace(go.Scatter(
            x=band_x, y=list(part["ci_high"]) + list(part["ci_low"])[::-1], fill="toself",
            fillcolor=color, opacity=0.2, line={"width": 0}, showlegend=False, hoverinfo="skip",
        ))
        fig.add_trace(go.Scatter(x=part["layer"], y=part["value"], name=f"{split} (task)", line={"color": color}))
        if "control_task" in part:
            fig.add_trace(go.Scatter(
                x=part["layer"], y=part["control_task"], name=f"{split} (control task)",
                line={"color": color, "dash": "dot"},
            ))
    if "shuffled" in acc and len(acc):
        first = acc[acc["split"] == acc["split"].iloc[0]].sort_values("layer")
        fig.add_trace(go.Scatter(x=first["layer"], y=first["shuffled"], name="shuffled labels", line={"color": "grey", "dash": "dash"}))
        fig.add_trace(go.Scatter(x=first["layer"], y=first["majority"], name="majority class", line={"color": "black", "dash": "dash"}))
    target = acc["target"].iloc[0] if len(acc) else ""
    fig.update_layout(
        title=f"{probe} probe · {target} · {items} items", xaxis_title="layer", yaxis_title="accuracy",
        yaxis_range=[0, 1.02], template="plotly_white",
    )
    return fig
