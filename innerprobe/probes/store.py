"""Probe straight from an activation store: labels from its row table, runs from its shards.

:func:`probe_store` reads what :mod:`innerprobe.activations.store` wrote (``.rows``, ``.keys()``,
``.layers``, ``.read``; anything with that contract works), keeps the rows that can be labelled
(``object_compliant`` True, target present), and hands the O and H runs to
:func:`~innerprobe.probes.run.run_probes`. The Hewitt–Liang control types default to the answer
word for property targets (a property is a function of the word, so the word is the type a probe
could memorise) and to the last input word when the target is the answer itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.probes.config import ProbeConfig
from innerprobe.probes.controls import default_control_types, type_key
from innerprobe.probes.result import ProbeResult
from innerprobe.probes.run import run_probes
from innerprobe.probes.table import Progress, run_name

__all__ = ["probe_store"]


def _default_control_types(rows: pd.DataFrame, target: str) -> list[Any] | None:
    """Hewitt–Liang types: the answer word for property targets, the last input word for answers.

    A missing answer word stays ``None`` (the row is dropped from the control, and counted).
    """
    if target != "object_answer" and "object_answer" in rows:
        return [type_key(a) for a in rows["object_answer"].tolist()]
    if "group" in rows:
        return default_control_types(rows["group"].tolist())
    return None


def probe_store(
    store: Any,
    target: str,
    *,
    site: str = "resid_post",
    object_positions: Sequence[str] = ("o_last",),
    hypothetical_positions: Sequence[str] = ("h_last",),
    layers: Sequence[int] | None = None,
    config: ProbeConfig = ProbeConfig(),
    progress: Progress | None = None,
) -> ProbeResult:
    """Read runs from an activation store (``.rows``, ``.keys()``, ``.layers``, ``.read``) and probe.

    Only rows with ``object_compliant`` True are used when that column exists; rows whose target
    is missing are dropped too.
    """
    rows = store.rows.reset_index(drop=True)
    if target not in rows:
        label_cols = [c for c in rows.columns if c not in ("index", "id", "task", "group")]
        raise UnknownNameError("target", target, label_cols)
    mask = rows[target].notna().to_numpy().copy()
    if "object_compliant" in rows:
        mask &= rows["object_compliant"].fillna(False).astype(bool).to_numpy()
    if mask.sum() == 0:
        raise DataError(f"no rows with a {target!r} label (and object_compliant True) in the store")
    sub = rows[mask].reset_index(drop=True)
    available = set(map(tuple, store.keys()))
    wanted = [("object", site, p) for p in object_positions] + [("hypothetical", site, p) for p in hypothetical_positions]
    missing = [k for k in wanted if k not in available]
    if missing:
        raise DataError(f"store has no {missing}; available keys: {sorted(available)}")
    layer_list = list(store.layers) if layers is None else list(layers)
    idx = torch.as_tensor(np.nonzero(mask)[0])
    runs = {run_name(r, p): store.read(r, s, p, layers=layer_list)[idx] for r, s, p in wanted}
    return run_probes(
        runs, sub[target].tolist(), sub["group"].tolist() if "group" in sub else None,
        control_types=_default_control_types(sub, target), layers=layer_list, target=target,
        config=config, progress=progress,
    )
