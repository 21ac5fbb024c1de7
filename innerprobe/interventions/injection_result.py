"""The result of a concept-injection run: every rate beside its control, with intervals.

``table`` has one row per trial (``kind`` of question, ``condition`` = none | concept | random |
twin, ``word``, ``scale``, ``variant``, ``target``, the detection score or choice margin,
``yes``/``choice``/``correct``, and the exact injected ``positions``). ``conditions`` has one
row per injected (vector, scale): its mean detection shift and yes-shift (both against the
no-injection trials of the same variants), whose correlation across conditions is the yes-bias
test. ``summary`` (:class:`InjectionSummary`) holds the estimates; ``figure()`` draws the
yes-rates beside their controls and the shift-vs-yes-shift scatter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from innerprobe.core.errors import DataError
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import (
    Estimate,
    PairedDiff,
    bootstrap_ci,
    paired_bootstrap_diff,
    proportion,
)
from innerprobe.interventions.injection_config import InjectionConfig

# --------------------------------------------------------------------------- statistics


def rate(flags: Any) -> Estimate | None:
    """Share of True among ``flags`` with a Wilson interval (None for no trials)."""
    x = np.asarray(list(flags), dtype=bool)
    return proportion(int(x.sum()), int(x.size)) if x.size else None


def mean_ci(values: Any, *, n_boot: int, seed: int) -> Estimate | None:
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    return bootstrap_ci(x, n_boot=n_boot, seed=seed) if x.size else None


def correlation_ci(x: Any, y: Any, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Estimate | None:
    """Pearson r of paired values with a percentile bootstrap over the pairs (None below 3 pairs
    or when either side is constant: r is undefined, not 0)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    r = float(np.corrcoef(a, b)[0, 1])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    xa, yb = a[idx], b[idx]
    xa, yb = xa - xa.mean(1, keepdims=True), yb - yb.mean(1, keepdims=True)
    den = np.sqrt((xa**2).sum(1) * (yb**2).sum(1))
    boots = np.where(den > 0, (xa * yb).sum(1) / np.where(den > 0, den, 1), np.nan)
    low, high = np.nanquantile(boots, [alpha / 2, 1 - alpha / 2])
    return Estimate(r, float(low), float(high), int(a.size), f"Pearson r, percentile bootstrap over conditions "
                    f"(n_boot={n_boot}, seed={seed})")


def paired(a: Any, b: Any, *, n_boot: int, seed: int) -> PairedDiff | None:
    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    return paired_bootstrap_diff(x, y, n_boot=n_boot, seed=seed) if x.size else None


# --------------------------------------------------------------------------- tables


def _baseline(table: pd.DataFrame, kind: str) -> pd.Series:
    none = table[(table.kind == kind) & (table.condition == "none")]
    return none.set_index("variant")["score"]


def with_shift(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``shift``: the detection score minus the no-injection score of the same question and
    trial variant (yes/no questions only)."""
    out = table.copy()
    out["shift"] = np.nan
    for kind, base_kind in (("detect", "detect"), ("impossible", "impossible"), ("twin", "detect")):
        sel = out.kind == kind
        base = _baseline(out, base_kind)
        out.loc[sel, "shift"] = out.loc[sel, "score"].to_numpy() - base.reindex(out.loc[sel, "variant"]).to_numpy()
    return out


def conditions_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per injected (condition, word, scale): mean detection shift and mean yes-shift."""
    t = with_shift(table)
    inj = t[t.condition.isin(["concept", "random"])]
    rows = []
    for (cond, word, scale), g in inj.groupby(["condition", "word", "scale"], sort=True):
        rows.append({"condition": cond, "word": word, "scale": scale,
                     "detection_shift": float(g[g.kind == "detect"]["shift"].mean()),
                     "yes_shift": float(g[g.kind == "impossible"]["shift"].mean()),
                     "detect_yes_rate": float(g[g.kind == "detect"]["yes"].astype(float).mean()),
                     "impossible_yes_rate": float(g[g.kind == "impossible"]["yes"].astype(float).mean())})
    return pd.DataFrame(rows, columns=["condition", "word", "scale", "detection_shift", "yes_shift",
                                       "detect_yes_rate", "impossible_yes_rate"])


def _pairs(table: pd.DataFrame, kind_a: str, cond_a: str, kind_b: str, cond_b: str) -> tuple[list, list]:
    """Binary 'yes' of matched trials: same word, scale and variant (``none`` matched by variant)."""
    a = table[(table.kind == kind_a) & (table.condition == cond_a)]
    b = table[(table.kind == kind_b) & (table.condition == cond_b)]
    keys = ["variant"] if cond_b == "none" else ["word", "scale", "variant"]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    return m["yes_a"].astype(bool).tolist(), m["yes_b"].astype(bool).tolist()


def _accuracy(table: pd.DataFrame, kind: str, cond: str) -> Estimate | None:
    return rate(table[(table.kind == kind) & (table.condition == cond)]["correct"].astype(bool))


# --------------------------------------------------------------------------- summary


@dataclass
class InjectionSummary(Summary):
    """Every rate beside its control (Wilson), mean shifts (bootstrap), paired tests (McNemar)."""

    timing: str
    layer: int
    n_trials: int
    detect_yes_concept: Estimate | None
    detect_yes_random: Estimate | None
    detect_yes_none: Estimate | None
    impossible_yes_concept: Estimate | None
    impossible_yes_random: Estimate | None
    impossible_yes_none: Estimate | None
    twin_yes: Estimate | None
    detection_shift_concept: Estimate | None
    detection_shift_random: Estimate | None
    yes_shift_concept: Estimate | None
    yes_shift_random: Estimate | None
    twin_shift: Estimate | None
    shift_correlation: Estimate | None
    concept_vs_none: PairedDiff | None
    concept_vs_random: PairedDiff | None
    detect_vs_impossible: PairedDiff | None
    detection_beyond_yes_shift: PairedDiff | None = None
    identification_concept: Estimate | None = None
    identification_leak: Estimate | None = None
    identification_vs_leak: PairedDiff | None = None
    identification_twin: Estimate | None = None
    identification_chance: float | None = None
    localisation_concept: Estimate | None = None
    localisation_random: Estimate | None = None
    localisation_none: Estimate | None = None
    localisation_chance: float | None = None
    localisation_concept_vs_random: PairedDiff | None = None
    injected_positions: dict[str, list[int]] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        """The base table plus one row per paired comparison (its difference, McNemar p)."""
        base = super().table
        rows = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, PairedDiff):
                d = v.diff
                rows.append({"measure": f"{f.name} (a − b)", "value": d.value, "ci_low": d.ci_low, "ci_high": d.ci_high,
                             "n": d.n, "method": f"{d.method}; exact McNemar p={v.mcnemar_p}"})
        return pd.concat([base, pd.DataFrame(rows)], ignore_index=True) if rows else base


def _first_positions(table: pd.DataFrame) -> dict[str, list[int]]:
    inj = table[table.condition.isin(["concept", "random"])]
    out = {}
    for kind, g in inj.groupby("kind", sort=True):
        out[kind] = [int(x) for x in g.iloc[0]["positions"]]
    return out


def summarise(table: pd.DataFrame, config: InjectionConfig, n_concepts: int) -> InjectionSummary:
    """The :class:`InjectionSummary` of a trial table."""
    if table.empty:
        raise DataError("no injection trials to summarise")
    t = with_shift(table)
    nb, sd = config.n_boot, config.seed

    def yes(kind: str, cond: str) -> Estimate | None:
        return rate(t[(t.kind == kind) & (t.condition == cond)]["yes"].astype(bool))

    def shift(kind: str, cond: str) -> Estimate | None:
        return mean_ci(t[(t.kind == kind) & (t.condition == cond)]["shift"], n_boot=nb, seed=sd)

    cond = conditions_table(table)
    n_sent = len(config.sentences)
    return InjectionSummary(
        timing=config.timing, layer=int(table["layer"].iloc[0]) if "layer" in table else -1, n_trials=len(table),
        detect_yes_concept=yes("detect", "concept"), detect_yes_random=yes("detect", "random"),
        detect_yes_none=yes("detect", "none"),
        impossible_yes_concept=yes("impossible", "concept"), impossible_yes_random=yes("impossible", "random"),
        impossible_yes_none=yes("impossible", "none"), twin_yes=yes("twin", "twin"),
        detection_shift_concept=shift("detect", "concept"), detection_shift_random=shift("detect", "random"),
        yes_shift_concept=shift("impossible", "concept"), yes_shift_random=shift("impossible", "random"),
        twin_shift=shift("twin", "twin"),
        shift_correlation=correlation_ci(cond["detection_shift"], cond["yes_shift"], n_boot=nb, seed=sd),
        concept_vs_none=paired(*_pairs(t, "detect", "concept", "detect", "none"), n_boot=nb, seed=sd),
        concept_vs_random=paired(*_pairs(t, "detect", "concept", "detect", "random"), n_boot=nb, seed=sd),
        detect_vs_impossible=paired(*_pairs(t, "detect", "concept", "impossible", "concept"), n_boot=nb, seed=sd),
        detection_beyond_yes_shift=_shift_pairs(t, nb, sd),
        identification_concept=_accuracy(t, "identify", "concept") if config.identification else None,
        identification_leak=_accuracy(t, "leak", "concept") if config.identification else None,
        identification_vs_leak=_matched(t, "identify", "leak", "correct", ["word", "scale", "variant"], nb, sd)
        if config.identification else None,
        identification_twin=_accuracy(t, "twin_identify", "twin") if config.identification else None,
        identification_chance=1.0 / n_concepts if config.identification else None,
        localisation_concept=_accuracy(t, "localise", "concept") if config.localisation else None,
        localisation_random=_accuracy(t, "localise", "random") if config.localisation else None,
        localisation_none=_accuracy(t, "localise", "none") if config.localisation else None,
        localisation_chance=1.0 / n_sent if config.localisation else None,
        localisation_concept_vs_random=_localisation_pairs(t, nb, sd) if config.localisation else None,
        injected_positions=_first_positions(table),
    )


def _matched(t: pd.DataFrame, kind_a: str, kind_b: str, column: str, keys: list[str], n_boot: int, seed: int,
             cond_a: str = "concept", cond_b: str = "concept") -> PairedDiff | None:
    """Paired comparison of ``column`` between two trial sets matched on ``keys``."""
    a = t[(t.kind == kind_a) & (t.condition == cond_a)]
    b = t[(t.kind == kind_b) & (t.condition == cond_b)]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"))
    x, y = m[f"{column}_a"], m[f"{column}_b"]
    if column == "correct":
        x, y = x.astype(bool), y.astype(bool)
    return paired(x, y, n_boot=n_boot, seed=seed)


def _shift_pairs(t: pd.DataFrame, n_boot: int, seed: int) -> PairedDiff | None:
    """Detection shift minus the yes-shift of the same injection (same word, scale, variant): the
    part of the detection shift a generic yes/no bias does not explain."""
    return _matched(t, "detect", "impossible", "shift", ["word", "scale", "variant"], n_boot, seed)


def _localisation_pairs(t: pd.DataFrame, n_boot: int, seed: int) -> PairedDiff | None:
    return _matched(t, "localise", "localise", "correct", ["word", "scale", "target"], n_boot, seed,
                    cond_b="random")


# --------------------------------------------------------------------------- result


def _bar(fig: go.Figure, names: list[str], ests: list[Estimate | None], color: str, row: int, col: int) -> None:
    kept = [(n, e) for n, e in zip(names, ests) if e is not None]
    if not kept:
        return
    fig.add_bar(x=[n for n, _ in kept], y=[e.value for _, e in kept], marker_color=color, showlegend=False,
                error_y={"type": "data", "symmetric": False, "array": [e.ci_high - e.value for _, e in kept],
                         "arrayminus": [e.value - e.ci_low for _, e in kept]}, row=row, col=col)


@dataclass
class InjectionResult(Result):
    """Concept injection with its controls (see the module docstring)."""

    stage: ClassVar[str] = "inject"

    table: pd.DataFrame
    conditions: pd.DataFrame
    summary: InjectionSummary
    words: list[str]
    concept_vectors: Tensor
    random_vectors: Tensor
    config: InjectionConfig
    concept_provenance: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def figure(self) -> go.Figure:
        s = self.summary
        fig = make_subplots(rows=1, cols=3, subplot_titles=(
            "P(yes): detection beside its controls", "detection shift vs yes-shift", "identification / localisation"))
        _bar(fig, ["detect·concept", "detect·random", "detect·none", "impossible·concept", "impossible·none", "twin"],
             [s.detect_yes_concept, s.detect_yes_random, s.detect_yes_none, s.impossible_yes_concept,
              s.impossible_yes_none, s.twin_yes], "#4c78a8", 1, 1)
        for cond, color in (("concept", "#4c78a8"), ("random", "#bbbbbb")):
            c = self.conditions[self.conditions.condition == cond]
            fig.add_scatter(x=c["yes_shift"], y=c["detection_shift"], mode="markers", name=cond,
                            marker_color=color, text=c["word"], row=1, col=2)
        _bar(fig, ["identify·concept", "leak·concept", "identify·twin", "localise·concept", "localise·random",
                   "localise·none"],
             [s.identification_concept, s.identification_leak, s.identification_twin, s.localisation_concept,
              s.localisation_random, s.localisation_none], "#f58518", 1, 3)
        for chance in (s.identification_chance, s.localisation_chance):
            if chance is not None:
                fig.add_hline(y=chance, line_dash="dot", row=1, col=3)
        fig.update_xaxes(title_text="yes-shift (impossible question)", row=1, col=2)
        fig.update_yaxes(title_text="detection shift", row=1, col=2)
        fig.update_layout(title=f"Concept injection · layer {s.layer} · timing {s.timing}", height=420, width=1200)
        return fig


__all__ = ["InjectionResult", "InjectionSummary", "conditions_table", "correlation_ci", "summarise", "with_shift"]
