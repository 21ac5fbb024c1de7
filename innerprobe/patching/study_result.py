"""What a patching study returns: every map, its controls and summary, as one saveable result.

A :class:`PatchStudyResult` holds the stage results of :func:`~innerprobe.patching.study.run_patching_study`
(each itself a :class:`~innerprobe.core.result.Result`):

* ``pairs``: the :class:`~innerprobe.patching.pairs.PairSet` the maps were computed on;
* ``o_map`` / ``h_map`` / ``o_map_controls``: :class:`~innerprobe.patching.grid.PatchResult`
  grids (layer × cell) of O on property pairs, H on property pairs, O on control pairs;
* ``h_atp`` and ``h_atp_agreement``: attribution patching of H and its Pearson r with the exact
  H map (``resid_pre`` only);
* ``transplant``: the O→H transplant's shift per layer and condition.

``.table`` is tidy, one row per map × layer × cell (mean recovery with its interval);
``.summary`` a :class:`PatchStudySummary`; ``.figure()`` the O map beside the H map on the quoted
P. ``.save(dir)`` writes the files ``innerprobe patch`` always wrote (``o_map.parquet``,
``h_map.parquet``, ``transplant.parquet``, ``pairs.parquet``, ``summary.json``, the ``.html``
figures) and, for :meth:`PatchStudyResult.load`, each sub-result in its own subdirectory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from innerprobe.core.errors import DataError
from innerprobe.core.io import read_json, write_json, write_parquet
from innerprobe.core.result import (
    FORMAT,
    RESULT_JSON,
    Result,
    Summary,
    _qualname,
    _resolve,
    decode,
    encode,
)
from innerprobe.core.stats import Estimate
from innerprobe.patching.attribution import AttributionResult
from innerprobe.patching.figures import comparison_figure, heatmap
from innerprobe.patching.grid import PatchResult
from innerprobe.patching.pairs import PairSet, PairSetSummary
from innerprobe.patching.study_config import PatchStudyConfig
from innerprobe.patching.transplant import CONDITIONS, TransplantResult, layer_mean_shift

MAPS = ("o_map", "h_map", "o_map_controls")
SUBRESULTS = ("pairs", *MAPS, "h_atp", "transplant")


@dataclass
class PatchStudySummary(Summary):
    """The study's numbers, each with its interval and ``n``.

    ``<map>_best``: recovery at the map's best cell, *selected on one half of the pairs and
    estimated on the other* (``<map>_best_cell`` names it, ``<map>_selection`` says how it was
    chosen; with fewer than 4 pairs it is the naive, optimistic max). ``atp_agreement``: Pearson
    r of AtP with the exact H map. ``transplant_<condition>``: per item the shift toward the
    donor's label averaged over the patched layers, bootstrapped over items (``donor`` should
    exceed its controls ``same_property``, ``random`` and ``other_task``). ``answer_agreement``:
    share of pairs whose forced-choice answers are behaviour's greedy answers on both sides.
    """

    task: str
    property: str
    site: str
    n_pairs: int
    n_controls: int
    answer_agreement: Estimate | None
    o_map_best: Estimate | None
    o_map_best_cell: str
    o_map_selection: str
    h_map_best: Estimate | None
    h_map_best_cell: str
    h_map_selection: str
    o_map_controls_best: Estimate | None
    o_map_controls_best_cell: str
    o_map_controls_selection: str
    atp_agreement: Estimate | None
    transplant_donor: Estimate | None
    transplant_same_property: Estimate | None
    transplant_other_task: Estimate | None
    transplant_random: Estimate | None
    transplant_word_left_out: int
    pairs: PairSetSummary
    maps: dict[str, Any] = field(default_factory=dict)


def _best(res: PatchResult | None) -> tuple[Estimate | None, str, str]:
    """``(held-out estimate, "layer L 'cell label'", selection)`` of a map's best cell."""
    if res is None:
        return None, "", ""
    b = res.summary.best_cell
    if b.layer is None:
        return None, "", b.selection
    return b.estimate, f"layer {b.layer} {b.token!r}", b.selection


@dataclass
class PatchStudyResult(Result):
    """The whole patching study (see the module docstring); built by ``run_patching_study``."""

    stage: ClassVar[str] = "patch"

    config: PatchStudyConfig
    pairs: PairSet
    o_map: PatchResult
    h_map: PatchResult
    o_map_controls: PatchResult | None
    h_atp: AttributionResult | None
    h_atp_agreement: Estimate | None
    transplant: TransplantResult
    transplant_word_left_out: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def maps(self) -> dict[str, PatchResult]:
        """The patching maps that were computed, by name."""
        return {k: getattr(self, k) for k in MAPS if getattr(self, k) is not None}

    @property
    def table(self) -> pd.DataFrame:
        """One row per map × layer × cell: mean recovery over pairs with its bootstrap interval.

        Columns ``map, site, layer, cell, token, recovery, ci_low, ci_high, n`` (``n``: pairs with
        a finite recovery in the cell) and, for ``h_map`` when AtP ran, ``atp_effect`` (the mean
        AtP estimate) beside ``exact_effect`` (mean ``patched - target``) it approximates.
        """
        frames = []
        for name, res in self.maps().items():
            n_l, n_c = res.mean.shape
            li, ci = np.meshgrid(np.arange(n_l), np.arange(n_c), indexing="ij")
            df = pd.DataFrame({
                "map": name, "site": res.site,
                "layer": np.asarray(res.layers)[li.ravel()],
                "cell": np.asarray([str(p) for p in res.positions], dtype=object)[ci.ravel()],
                "token": np.asarray(res.position_labels, dtype=object)[ci.ravel()],
                "recovery": res.mean.ravel(), "ci_low": res.ci_low.ravel(), "ci_high": res.ci_high.ravel(),
                "n": np.isfinite(res.recovery).sum(0).ravel(),
                "exact_effect": np.nanmean(res.patched - res.target_metric[:, None, None], axis=0).ravel(),
                "atp_effect": np.nan,
            })
            if name == "h_map" and self.h_atp is not None:
                df["atp_effect"] = self.h_atp.estimate.mean(0).ravel()
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    @property
    def summary(self) -> PatchStudySummary:
        (ob, oc, osel), (hb, hc, hsel) = _best(self.o_map), _best(self.h_map)
        cb, cc, csel = _best(self.o_map_controls)
        n_boot, seed = self.config.n_boot, self.config.seed
        shifts = {c: layer_mean_shift(self.transplant.shift[c], n_boot=n_boot, seed=seed)
                  if c in self.transplant.shift else None for c in CONDITIONS}
        ps = self.pairs.summary
        return PatchStudySummary(
            task=self.pairs.task, property=self.pairs.property, site=self.o_map.site,
            n_pairs=ps.n_pairs, n_controls=ps.n_controls, answer_agreement=ps.answer_agreement,
            o_map_best=ob, o_map_best_cell=oc, o_map_selection=osel,
            h_map_best=hb, h_map_best_cell=hc, h_map_selection=hsel,
            o_map_controls_best=cb, o_map_controls_best_cell=cc, o_map_controls_selection=csel,
            atp_agreement=self.h_atp_agreement,
            transplant_donor=shifts["donor"], transplant_same_property=shifts["same_property"],
            transplant_other_task=shifts["other_task"], transplant_random=shifts["random"],
            transplant_word_left_out=self.transplant_word_left_out,
            pairs=ps, maps={k: v.summary for k, v in self.maps().items()},
        )

    def figure(self) -> Any:
        """The O map beside the H map on the columns they share: the word and the last P tokens."""
        shared = list(range(1 + self.config.p_tokens))
        return comparison_figure(self.o_map, self.h_map, shared, shared)

    # ------------------------------------------------------------------ on disk

    def report(self) -> dict[str, Any]:
        """``summary.json``: the summaries as plain JSON (the layout ``innerprobe patch`` wrote)."""
        s = self.summary
        plain = {k: v for k, v in _plain(s).items() if k not in ("pairs", "maps")}
        return {
            "study": plain,
            "pairs": _plain(s.pairs),
            "maps": {k: {"n_pairs": int(v.patched.shape[0]), **_plain(v.summary)} for k, v in self.maps().items()},
            "h_atp_pearson_r": None if self.h_atp_agreement is None else self.h_atp_agreement.value,
            "h_atp_agreement": None if self.h_atp_agreement is None else self.h_atp_agreement.to_dict(),
            "transplant": self.transplant.table.to_dict(orient="records"),
            "transplant_word_left_out": self.transplant_word_left_out,
            "config": self.config.to_dict(),
            "provenance": self.provenance,
            "timings_s": self.timings,
        }

    def save(self, directory: str | Path) -> Path:
        """Write the study to ``directory``: the CLI's files, and each sub-result in a subdirectory."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, res in self.maps().items():
            write_parquet(out / f"{name}.parquet", res.table)
            heatmap(res, f"{name}: {res.site} denoising").write_html(out / f"{name}.html")
        if self.h_atp is not None:
            write_parquet(out / "h_atp.parquet", self.h_atp.table)
        write_parquet(out / "transplant.parquet", self.transplant.table)
        self.transplant.figure().write_html(out / "transplant.html")
        write_parquet(out / "pairs.parquet", self.pairs.table)
        self.pairs.figure().write_html(out / "pairs.html")
        self.figure().write_html(out / "o_vs_h.html")
        write_parquet(out / "study.parquet", self.table)
        write_json(out / "summary.json", self.report())
        saved = []
        for name in SUBRESULTS:
            sub = getattr(self, name)
            if sub is not None:
                sub.save(out / name)
                saved.append(name)
        fields = {f.name: encode(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in SUBRESULTS}
        write_json(out / RESULT_JSON, {"type": _qualname(type(self)), "format": FORMAT, "stage": self.stage,
                                       "subresults": saved, "tables": [], "arrays": [], "fields": fields})
        return out

    @classmethod
    def load(cls, directory: str | Path) -> PatchStudyResult:
        """Rebuild a study written by :meth:`save` (each sub-result through its own ``load``)."""
        d = Path(directory)
        if not (d / RESULT_JSON).exists():
            raise DataError(f"{d} holds no saved result ({RESULT_JSON} missing)")
        meta = read_json(d / RESULT_JSON)
        saved = _resolve(meta["type"])
        if not (isinstance(saved, type) and issubclass(saved, cls)) or "subresults" not in meta:
            raise DataError(f"{d} holds a {meta['type'].rpartition(':')[2]}, not a {cls.__name__}")
        if meta.get("format") != FORMAT:
            raise DataError(f"{d}: result format {meta.get('format')} is not {FORMAT}")
        values = {k: decode(v) for k, v in meta["fields"].items()}
        for name in SUBRESULTS:
            values[name] = Result.load(d / name) if name in meta["subresults"] else None
        return saved(**values)


def _plain(obj: Any) -> Any:
    """A dataclass (or a dict of them) as nested plain dicts and lists, for JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


__all__ = ["PatchStudyResult", "PatchStudySummary"]
