"""The capture result's summary, its figure and its copy: what :class:`ActivationStore` reports.

A store (:mod:`innerprobe.activations.store`) is the capture stage's result. This module holds
the pieces of the result protocol that are not about reading tensors:

* :class:`CaptureSummary`: what was captured (items, sites, layers, positions), its size on
  disk, and the share of items whose object-level answer complied, as an ``Estimate``;
* :func:`layer_norms` / :func:`norm_figure`: the mean L2 norm of each stored activation by
  layer, a first look that shows a broken capture at once (a flat or exploding curve, a
  position whose norm differs from its neighbours by orders of magnitude);
* :func:`copy_store`: ``store.save(dir)``, file by file, hard-linked where possible.

Every function takes the store object itself (duck-typed), so this module does not import
:mod:`innerprobe.activations.store`, which imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch

from innerprobe.core.errors import StoreMismatchError
from innerprobe.core.io import prepare_out_dir, read_json
from innerprobe.core.result import Summary
from innerprobe.core.stats import Estimate, proportion

NORM_COLUMNS = ("run", "site", "position", "layer", "mean_norm", "n")


@dataclass
class CaptureSummary(Summary):
    """What a store holds.

    Attributes:
        n_items: items (rows) the capture covers; ``n_written`` of them are on disk so far.
        complete: every shard is written.
        sites, layers, positions: what was captured (``positions`` per run).
        d_model, dtype: the stored vectors' width and dtype.
        bytes: size on disk of the manifest, row table and shards.
        property: the property asked about in the hypothetical prompts.
        model: ``name@sha12/dtype/numerics`` of the model captured.
        items_digest: :func:`innerprobe.protocol.tasks.items_digest` of the items, in order.
        object_compliance: share of items whose object-level answer complied (Wilson interval),
            when the row table has an ``object_compliant`` column (the CLI writes one).
    """

    n_items: int
    n_written: int
    complete: bool
    sites: list[str]
    layers: list[int]
    positions: dict[str, list[str]]
    d_model: int
    dtype: str
    bytes: int
    property: str | None = None
    model: str | None = None
    items_digest: str | None = None
    object_compliance: Estimate | None = None


def _model_short(fp: dict[str, Any]) -> str | None:
    if not fp:
        return None
    return f"{fp.get('name')}@{str(fp.get('weights_sha256', ''))[:12]}/{fp.get('dtype')}/{fp.get('numerics_mode')}"


def capture_summary(store: Any) -> CaptureSummary:
    """The :class:`CaptureSummary` of an opened store."""
    m = store.manifest
    files = store.files()
    rows = store.rows
    compliance = None
    if "object_compliant" in rows.columns and len(rows):
        ok = rows["object_compliant"].fillna(False).astype(bool)
        compliance = proportion(int(ok.sum()), int(len(ok)))
    return CaptureSummary(
        n_items=store.n_items,
        n_written=sum(b - a for a, b in (sh["rows"] for sh in m["shards"])),
        complete=store.complete,
        sites=store.sites,
        layers=store.layers,
        positions=store.positions,
        d_model=store.d_model,
        dtype=str(m.get("dtype")),
        bytes=sum((store.path / f).stat().st_size for f in files if (store.path / f).is_file()),
        property=m.get("property"),
        model=_model_short(m.get("model") or {}),
        items_digest=m.get("items_digest"),
        object_compliance=compliance,
    )


def layer_norms(store: Any, site: str | None = None) -> pd.DataFrame:
    """Mean L2 norm over the written items of every ``(run, site, position)`` at every layer.

    Streams one shard at a time (:meth:`ActivationStore.iter_shards`). Columns
    :data:`NORM_COLUMNS`; ``site`` keeps one site only.
    """
    out = []
    for run, s, pos in store.keys():
        if site is not None and s != site:
            continue
        total = torch.zeros(len(store.layers), dtype=torch.float64)
        n = 0
        for _, t in store.iter_shards(run, s, pos):
            total += t.double().norm(dim=-1).sum(0)
            n += t.shape[0]
        means = (total / max(n, 1)).tolist()
        out += [
            {"run": run, "site": s, "position": pos, "layer": layer, "mean_norm": v, "n": n}
            for layer, v in zip(store.layers, means)
        ]
    return pd.DataFrame(out, columns=list(NORM_COLUMNS))


def norm_figure(norms: pd.DataFrame, title: str = "mean activation norm by layer") -> go.Figure:
    """One line per ``site · run/position``: mean norm (y) by layer (x)."""
    fig = go.Figure()
    for (s, run, pos), g in norms.groupby(["site", "run", "position"], sort=False):
        fig.add_scatter(x=g["layer"], y=g["mean_norm"], mode="lines+markers", name=f"{s} · {run}/{pos}")
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="mean L2 norm", legend_title="site · run/position")
    return fig


def _place(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to (else a copy of) ``src``, via a temporary name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def copy_store(src: Path, dst: Path, manifest: dict[str, Any], files: Sequence[str], manifest_name: str) -> Path:
    """Copy the store files ``files`` of ``src`` into ``dst``, the manifest last; return ``dst``.

    ``dst`` is claimed for the capture stage (:func:`innerprobe.core.io.prepare_out_dir`); a
    ``dst`` that already holds this capture (same manifest digest) is left as it is, one that
    holds another raises ``StoreMismatchError``. Until the manifest lands, ``dst`` is not a store.
    """
    if dst.resolve() == src.resolve():
        return dst
    dst = prepare_out_dir(dst, "capture")
    if (dst / manifest_name).exists():
        there = read_json(dst / manifest_name).get("manifest_sha256")
        if there == manifest.get("manifest_sha256"):
            return dst
        raise StoreMismatchError(f"{dst} already holds another activation store; save into a new directory")
    for name in files:
        if name != manifest_name:
            _place(src / name, dst / name)
    _place(src / manifest_name, dst / manifest_name)
    return dst


__all__ = ["NORM_COLUMNS", "CaptureSummary", "capture_summary", "copy_store", "layer_norms", "norm_figure"]
