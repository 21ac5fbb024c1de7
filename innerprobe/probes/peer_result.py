"""What a self-vs-peer probe run returns: :class:`PeerProbeResult` and :class:`PeerProbeSummary`.

* ``.table``: tidy, one row per (layer, subset, probe): ``subset`` is ``all``, ``disagree`` (the
  peer's own label differs from the self's) or ``agree``; ``probe`` is ``self``, ``peer``,
  ``shuffled_self``, ``shuffled_peer`` (the same probe on shuffled labels), ``majority`` (the
  training folds' majority class; Wilson intervals) or ``self-peer`` (the paired gap: paired
  bootstrap CI, bootstrap ``p_value`` and exact ``mcnemar_p``). Every layer's row uses every item
  of its subset: it describes the curve, it is not a best-of.
* ``.summary``: the headline at one **best layer**, selected as the layer with the largest
  self − peer gap on a random half of the disagreement items (split A; all items when there are
  fewer than ``min_disagree`` disagreement items), and every number estimated on the *other* items
  (split B: all items not used to select), so the winner's curse does not inflate it.
* ``.figure()``: self and peer accuracy by relative depth, all items beside disagreement items.
* ``.save(dir)`` / ``PeerProbeResult.load(dir)``: Parquet, safetensors (per-item correctness),
  JSON; never pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Bool
from plotly.subplots import make_subplots

from innerprobe.core.html import HtmlPage
from innerprobe.core.result import Result, Summary, encode
from innerprobe.core.stats import (
    Estimate,
    PairedDiff,
    paired_bootstrap_diff,
    proportion,
    split_halves,
)
from innerprobe.probes.peer_config import LayerPair, PeerProbeConfig

__all__ = ["SUBSETS", "PROBE_ROWS", "PeerProbeSummary", "PeerProbeResult", "peer_page", "peer_table", "summarise_peer"]

SUBSETS = ("all", "disagree", "agree")
PROBE_ROWS = ("self", "peer", "shuffled_self", "shuffled_peer", "majority")
GAP = "self-peer"

Correct = Mapping[str, Bool[np.ndarray, "layer n"]]


def _subset_masks(disagree: Bool[np.ndarray, " n"]) -> dict[str, np.ndarray]:
    return {"all": np.ones(len(disagree), dtype=bool), "disagree": disagree, "agree": ~disagree}


def _paired(a: np.ndarray, b: np.ndarray, config: PeerProbeConfig) -> PairedDiff:
    return paired_bootstrap_diff(a.astype(float), b.astype(float), n_boot=config.n_boot, alpha=config.alpha,
                                 seed=config.seed)


def peer_table(
    correct: Correct, majority: Bool[np.ndarray, " n"], disagree: Bool[np.ndarray, " n"],
    pairs: Sequence[LayerPair], config: PeerProbeConfig,
) -> pd.DataFrame:
    """The tidy per (layer, subset, probe) table described in the module docstring."""
    rows: list[dict[str, Any]] = []
    for j, pair in enumerate(pairs):
        where = {"layer": pair.self_layer, "peer_layer": pair.peer_layer, "depth": pair.self_depth,
                 "peer_depth": pair.peer_depth}
        for subset, mask in _subset_masks(disagree).items():
            n = int(mask.sum())
            if n == 0:
                continue
            for probe in PROBE_ROWS:
                hits = majority[mask] if probe == "majority" else correct[probe][j, mask]
                est = proportion(int(hits.sum()), n, alpha=config.alpha)
                rows.append({**where, "subset": subset, "probe": probe, "value": est.value, "ci_low": est.ci_low,
                             "ci_high": est.ci_high, "n": n, "p_value": np.nan, "mcnemar_p": np.nan,
                             "method": est.method})
            d = _paired(correct["self"][j, mask], correct["peer"][j, mask], config)
            rows.append({**where, "subset": subset, "probe": GAP, "value": d.diff.value, "ci_low": d.diff.ci_low,
                         "ci_high": d.diff.ci_high, "n": n, "p_value": d.p_value, "mcnemar_p": d.mcnemar_p,
                         "method": d.diff.method})
    return pd.DataFrame(rows)


@dataclass
class PeerProbeSummary(Summary):
    """The headline of a self-vs-peer probe run, at one honestly selected layer.

    ``gap_*`` are paired self − peer accuracy differences (paired bootstrap CI; ``mcnemar_*`` the
    exact McNemar p-values) on the estimation items (split B) of each subset; ``self_*`` /
    ``peer_*`` the two accuracies on the same items (Wilson). ``shuffled`` / ``shuffled_peer``
    (shuffled-label probes) and ``mode_baseline`` (majority class) are on split B's all items,
    ``mode_disagree`` on its disagreement items. ``agreement`` is the share of all items where the
    peer behaves like the self; ``n_disagree`` counts disagreement items over all items. A ``None``
    estimate means the subset has no item in split B.
    """

    target: str
    n_items: int
    n_classes: int
    n_disagree: int
    n_peer_missing: int
    agreement: Estimate
    best_layer: int
    best_peer_layer: int
    best_depth: float
    selection: str
    gap_all: Estimate
    self_all: Estimate
    peer_all: Estimate
    mcnemar_all: float
    shuffled: Estimate
    shuffled_peer: Estimate
    mode_baseline: Estimate
    gap_disagree: Estimate | None = None
    self_disagree: Estimate | None = None
    peer_disagree: Estimate | None = None
    mcnemar_disagree: float | None = None
    mode_disagree: Estimate | None = None
    gap_agree: Estimate | None = None
    self_agree: Estimate | None = None
    peer_agree: Estimate | None = None


def _select(
    gap: np.ndarray, disagree: np.ndarray, groups: Sequence[str] | None, pairs: Sequence[LayerPair],
    config: PeerProbeConfig,
) -> tuple[int, Bool[np.ndarray, " n"], str]:
    """(best layer index, estimation mask, what was done): argmax gap on split A of the pool."""
    n = len(disagree)
    if len(pairs) == 1:
        return 0, np.ones(n, dtype=bool), "one layer: no selection; every number on all items"
    use_disagree = int(disagree.sum()) >= config.min_disagree
    pool = np.nonzero(disagree if use_disagree else np.ones(n, dtype=bool))[0]
    g = None if groups is None else [groups[i] for i in pool]
    if g is not None and len(set(g)) < 2:  # one duplicated question: split the items, not the group
        g = None
    half = split_halves(len(pool), seed=config.seed, groups=g)
    j = int(np.argmax(gap[:, pool[half]].mean(axis=1)))
    est = np.ones(n, dtype=bool)
    est[pool[half]] = False
    what = "disagreement" if use_disagree else f"all (fewer than {config.min_disagree} disagreement)"
    text = (f"best of {len(pairs)} layers by the self − peer gap on the {what} items of split A "
            f"(n={int(half.sum())}); every number estimated on the other {int(est.sum())} items (split B); "
            f"seed {config.seed}")
    return j, est, text


def summarise_peer(
    correct: Correct, majority: Bool[np.ndarray, " n"], disagree: Bool[np.ndarray, " n"],
    pairs: Sequence[LayerPair], groups: Sequence[str] | None, config: PeerProbeConfig, *, n_peer_missing: int = 0,
    n_classes: int = 0,
) -> PeerProbeSummary:
    """Select the best layer on split A and estimate every headline number on split B."""
    gap = correct["self"].astype(float) - correct["peer"].astype(float)
    j, est, text = _select(gap, disagree, groups, pairs, config)
    n = len(disagree)

    def on(mask: np.ndarray) -> PairedDiff | None:
        return _paired(correct["self"][j, mask], correct["peer"][j, mask], config) if mask.any() else None

    def prop(hits: np.ndarray) -> Estimate | None:
        return proportion(int(hits.sum()), int(hits.size), alpha=config.alpha) if hits.size else None

    d_all, d_dis, d_agr = on(est), on(est & disagree), on(est & ~disagree)
    assert d_all is not None  # split B is never empty
    pair = pairs[j]
    return PeerProbeSummary(
        target=config.target, n_items=n, n_classes=n_classes, n_disagree=int(disagree.sum()),
        n_peer_missing=n_peer_missing, agreement=proportion(int((~disagree).sum()), n, alpha=config.alpha),
        best_layer=pair.self_layer, best_peer_layer=pair.peer_layer, best_depth=pair.self_depth, selection=text,
        gap_all=d_all.diff, self_all=d_all.a, peer_all=d_all.b, mcnemar_all=float(d_all.mcnemar_p or 1.0),
        shuffled=prop(correct["shuffled_self"][j, est]), shuffled_peer=prop(correct["shuffled_peer"][j, est]),
        mode_baseline=prop(majority[est]),
        gap_disagree=d_dis.diff if d_dis else None, self_disagree=d_dis.a if d_dis else None,
        peer_disagree=d_dis.b if d_dis else None, mcnemar_disagree=d_dis.mcnemar_p if d_dis else None,
        mode_disagree=prop(majority[est & disagree]),
        gap_agree=d_agr.diff if d_agr else None, self_agree=d_agr.a if d_agr else None,
        peer_agree=d_agr.b if d_agr else None,
    )


def peer_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Self and peer probe accuracy by relative depth: all items (left), disagreement items (right)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("all items", "disagreement items"), shared_yaxes=True)
    style = {"self": ("#1f77b4", "solid"), "peer": ("#d62728", "solid"), "shuffled_self": ("grey", "dot"),
             "majority": ("black", "dash")}
    for col, subset in enumerate(("all", "disagree"), start=1):
        part = table[table["subset"] == subset]
        for probe, (color, dash) in style.items():
            rows = part[part["probe"] == probe].sort_values("depth")
            if rows.empty:
                continue
            err = {"type": "data", "symmetric": False, "array": rows["ci_high"] - rows["value"],
                   "arrayminus": rows["value"] - rows["ci_low"]} if probe in ("self", "peer") else None
            fig.add_trace(go.Scatter(
                x=rows["depth"], y=rows["value"], name=probe, legendgroup=probe, showlegend=col == 1,
                line={"color": color, "dash": dash}, error_y=err, mode="lines+markers",
                customdata=np.stack([rows["layer"], rows["peer_layer"], rows["n"]], axis=-1),
                hovertemplate="self layer %{customdata[0]}, peer layer %{customdata[1]}: %{y:.3f} "
                              "(n=%{customdata[2]})<extra>" + probe + "</extra>",
            ), row=1, col=col)
    fig.update_layout(title=title or "self vs peer probes", template="plotly_white", yaxis_range=[0, 1.02])
    fig.update_xaxes(title_text="relative depth (self model)")
    fig.update_yaxes(title_text="held-out accuracy", col=1)
    return fig


@dataclass(eq=False)
class PeerProbeResult(Result):
    """Self vs peer probe accuracy per layer on all / disagreement / agreement items.

    ``correct[name]`` is the per-item out-of-fold correctness ``[layer, n]`` of the ``self``,
    ``peer``, ``shuffled_self`` and ``shuffled_peer`` fits (layers in ``pairs`` order);
    ``majority`` the majority baseline's, ``disagree`` marks the disagreement items, ``ids`` the
    items in row order.
    """

    stage: ClassVar[str] = "peer_probe"

    target: str
    classes: list[str]
    pairs: list[LayerPair]
    ids: list[str]
    table: pd.DataFrame
    summary: PeerProbeSummary
    correct: dict[str, Bool[np.ndarray, "layer n"]]
    majority: Bool[np.ndarray, " n"]
    disagree: Bool[np.ndarray, " n"]
    n_dropped: int
    n_missing_in_peer: int
    config: PeerProbeConfig
    provenance: dict[str, Any] = field(default_factory=dict)

    def figure(self) -> go.Figure:
        s = self.summary
        return peer_figure(self.table, f"self vs peer probes · {self.target} · {s.n_items} items, "
                                       f"{s.n_disagree} disagreement")


def peer_page(result: PeerProbeResult) -> HtmlPage:
    """A self-contained page: the headline (selected layer, split B), the figure, the per-layer
    table, the config and provenance, and every number as a JSON block."""
    s = result.summary
    page = HtmlPage(f"Self vs peer probes: {result.target}")
    page.text(f"{s.n_items} items, {s.n_classes} classes, {s.n_disagree} where the peer behaves differently "
              f"(agreement {s.agreement}). Best layer {s.best_layer} (depth {s.best_depth:.2f}; peer layer "
              f"{s.best_peer_layer}): {s.selection}.")
    page.heading("Summary")
    page.table(s.table, caption="self − peer gaps: paired bootstrap CI; accuracies: Wilson; on split B")
    page.figure(result.figure(), caption="held-out accuracy by relative depth (every item of each subset)")
    page.heading("Per layer")
    page.table(result.table.drop(columns=["method"]), caption="every layer on every item of its subset")
    page.heading("Config and provenance")
    page.preformatted(json.dumps(encode({"config": result.config, "provenance": result.provenance}), indent=2,
                                 default=str))
    page.json_block(encode({"summary": s, "table": result.table.to_dict(orient="records"),
                            "config": result.config}))
    return page
