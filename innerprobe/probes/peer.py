"""Self-vs-peer probes (battery E3b): is the model's behaviour readable from its *own* activations
better than from a peer's activations on the same prompts?

The white-box form of the paper's M1-vs-M2 comparison (Binder et al. 2024) after Ashuach et al.
2026 ("Masked by Consensus"). The *target* is the self model's object behaviour on each item (a
label column of the self store, e.g. the property of its answer). Two probes predict it, fitted
and scored identically, out of fold, on the same folds:

* the **self probe** reads the self model's activations on the item's prompt;
* the **peer probe** reads another model's activations on the same prompt (rendered for that
  model), layers matched by relative depth (:mod:`~innerprobe.probes.peer_config`).

Where the two models *behave alike* (consensus items) the comparison is blind: the peer's
activations carry the peer's own answer, which is the self's answer too, so a peer probe reads the
target off the peer's behaviour and the gap is ~0 whether or not the self has privileged
information. Only on **disagreement** items (the peer's own label, from the peer store's rows,
differs from the self's) can a self-only signal show: there the peer's own answer points the
wrong way. The self − peer accuracy gap on disagreement items, paired item by item (paired
bootstrap CI and exact McNemar on exactly those items), is the privileged-information signal; the
gap on all items is reported beside it, with the controls (the same probe on shuffled labels, the
training folds' majority class).

Joining: both stores hold the same items (joined on ``id``); the self store's usable rows (target
present, ``object_compliant`` True) must mostly be in the peer store (``min_overlap``), else an
error names the missing ids. The best layer is selected on one half of the items and every
summary number is estimated on the other (:mod:`~innerprobe.probes.peer_result`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.probes.controls import majority_oof, shuffled_labels
from innerprobe.probes.folds import fold_weights, make_folds
from innerprobe.probes.labels import check_activations, encode_labels
from innerprobe.probes.linear import heldout_predictions
from innerprobe.probes.peer_config import LayerPair, PeerProbeConfig, match_layers
from innerprobe.probes.peer_result import PeerProbeResult, peer_table, summarise_peer
from innerprobe.probes.run import fit_probe

log = logging.getLogger(__name__)

__all__ = ["PeerItems", "join_stores", "run_peer_probes"]

_RESERVED = ("index", "id", "task", "group")


@dataclass(frozen=True)
class PeerItems:
    """The joined items: row positions in each store, both labels, and the subsets."""

    ids: list[str]
    self_rows: Int[np.ndarray, " n"]
    peer_rows: Int[np.ndarray, " n"]
    target: list[str]
    peer_label: list[str | None]
    groups: list[str] | None
    n_missing_in_peer: int


def _label_columns(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in _RESERVED]


def _usable(rows: pd.DataFrame, target: str) -> np.ndarray:
    """Rows with a ``target`` label and, when the column exists, ``object_compliant`` True."""
    mask = rows[target].notna().to_numpy().copy()
    if "object_compliant" in rows:
        mask &= rows["object_compliant"].fillna(False).astype(bool).to_numpy()
    return mask


def _ids(rows: pd.DataFrame, which: str) -> list[str]:
    ids = [str(v) for v in rows["id"].tolist()]
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
        raise DataError(f"{which} store has duplicate item ids {dup[:5]}; ids must be unique to join")
    return ids


def join_stores(self_store: Any, peer_store: Any, config: PeerProbeConfig) -> PeerItems:
    """Join the two stores' row tables on ``id`` (see the module docstring for the rules)."""
    srows, prows = self_store.rows.reset_index(drop=True), peer_store.rows.reset_index(drop=True)
    if config.target not in srows:
        raise UnknownNameError("target column (self store)", config.target, _label_columns(srows))
    if config.target not in prows:
        raise UnknownNameError("target column (peer store)", config.target, _label_columns(prows))
    usable = _usable(srows, config.target)
    if not usable.any():
        raise DataError(f"self store has no row with a {config.target!r} label (and object_compliant True)")
    sids, pids = _ids(srows, "self"), _ids(prows, "peer")
    where = {i: k for k, i in enumerate(pids)}
    wanted = [int(k) for k in np.nonzero(usable)[0]]
    missing = [sids[k] for k in wanted if sids[k] not in where]
    common = [k for k in wanted if sids[k] in where]
    share = len(common) / len(wanted)
    if len(common) < config.min_items or share < config.min_overlap:
        raise DataError(
            f"the stores share {len(common)} of the self store's {len(wanted)} usable items "
            f"({share:.0%}; need >= {config.min_items} and >= {config.min_overlap:.0%}); ids missing from the peer "
            f"store: {missing[:5]}{' ...' if len(missing) > 5 else ''}; the peer store's ids start {pids[:5]}"
        )
    if missing:
        log.warning("%d self items are not in the peer store (ignored): %s", len(missing), missing[:5])
    peer_rows = np.array([where[sids[k]] for k in common], dtype=np.int64)
    peer_ok = _usable(prows, config.target)[peer_rows]
    peer_vals = prows[config.target].to_numpy()[peer_rows]
    peer_label = [str(v) if ok else None for v, ok in zip(peer_vals, peer_ok, strict=True)]
    keep = np.array([p is not None or config.peer_missing == "disagree" for p in peer_label])
    common_arr = np.asarray(common, dtype=np.int64)[keep]
    groups = [str(g) for g in srows["group"].to_numpy()[common_arr]] if "group" in srows else None
    return PeerItems(
        ids=[sids[k] for k in common_arr], self_rows=common_arr, peer_rows=peer_rows[keep],
        target=[str(v) for v in srows[config.target].to_numpy()[common_arr]],
        peer_label=[p for p, k in zip(peer_label, keep, strict=True) if k], groups=groups,
        n_missing_in_peer=len(missing),
    )


def _n_layers(store: Any) -> int:
    """The model's block count from the store's fingerprint (else the last captured layer + 1)."""
    model = (getattr(store, "manifest", {}) or {}).get("model") or {}
    return int(model.get("n_layers") or max(store.layers) + 1)


def _read(store: Any, config: PeerProbeConfig, layers: list[int], rows: np.ndarray, which: str) -> Tensor:
    available = [tuple(k) for k in store.keys()]
    key = (config.run, config.site, config.position)
    if key not in available:
        raise UnknownNameError(f"activations (run, site, position) in the {which} store", key,
                               ["/".join(k) for k in available])
    x = store.read(config.run, config.site, config.position, layers=layers)[torch.as_tensor(rows)]
    check_activations(x, len(rows), f"{which} store {config.run}/{config.site}/{config.position}")
    return x.permute(1, 0, 2).contiguous()


def _oof_correct(
    x: Float[Tensor, "layer n d"], labels: Int[np.ndarray, " n"], fold: Int[np.ndarray, " n"],
    w: Float[Tensor, "fold n"], n_cls: int, config: PeerProbeConfig,
) -> Bool[np.ndarray, "layer n"]:
    """Out-of-fold correctness of the configured probe, every layer at once."""
    fitted = fit_probe(config.probe, x, torch.as_tensor(labels), w, n_cls, config.probe_config())
    oof, _ = heldout_predictions(fitted, x, fold)
    return oof.cpu().numpy() == labels[None]


def run_peer_probes(self_store: Any, peer_store: Any, config: PeerProbeConfig = PeerProbeConfig()) -> PeerProbeResult:
    """Self probe vs peer probe of the self model's behaviour, per layer, on all and disagreement items.

    ``self_store`` / ``peer_store`` are activation stores (anything with ``.rows``, ``.layers``,
    ``.keys()``, ``.read`` and a ``.manifest``) of the same items, captured from the self model
    and from the peer. Returns a :class:`~innerprobe.probes.peer_result.PeerProbeResult`.
    """
    items = join_stores(self_store, peer_store, config)
    labels = encode_labels(items.target, folds=config.folds, min_count=config.class_min_count)
    keep = labels.keep
    n = int(keep.sum())
    if n < config.min_items:
        raise DataError(f"{n} items left after dropping classes with < {config.class_min_count} items; "
                        f"need >= {config.min_items} (capture more items or lower min_count/min_items)")
    pairs: list[LayerPair] = match_layers(self_store.layers, _n_layers(self_store), peer_store.layers,
                                          _n_layers(peer_store), config)
    ids = labels.ids
    n_cls = len(labels.classes)
    groups = None if items.groups is None else [g for g, k in zip(items.groups, keep, strict=True) if k]
    fold = make_folds(ids, groups, config.folds, config.seed)
    w = fold_weights(fold, config.folds)
    xs = {
        "self": _read(self_store, config, [p.self_layer for p in pairs], items.self_rows[keep], "self"),
        "peer": _read(peer_store, config, [p.peer_layer for p in pairs], items.peer_rows[keep], "peer"),
    }
    shuffled = shuffled_labels(ids, config.seed)
    correct = {
        "self": _oof_correct(xs["self"], ids, fold, w, n_cls, config),
        "peer": _oof_correct(xs["peer"], ids, fold, w, n_cls, config),
        "shuffled_self": _oof_correct(xs["self"], shuffled, fold, w, n_cls, config),
        "shuffled_peer": _oof_correct(xs["peer"], shuffled, fold, w, n_cls, config),
    }
    majority = majority_oof(ids, fold, n_cls) == ids
    target = [t for t, k in zip(items.target, keep, strict=True) if k]
    peer_label = [p for p, k in zip(items.peer_label, keep, strict=True) if k]
    disagree = np.array([p != t for p, t in zip(peer_label, target, strict=True)])
    table = peer_table(correct, majority, disagree, pairs, config)
    summary = summarise_peer(correct, majority, disagree, pairs, groups, config,
                             n_peer_missing=sum(p is None for p in peer_label), n_classes=n_cls)
    return PeerProbeResult(
        target=config.target, classes=labels.classes, pairs=pairs, ids=[i for i, k in zip(items.ids, keep, strict=True) if k],
        table=table, summary=summary, correct=correct, majority=majority, disagree=disagree,
        n_dropped=labels.n_dropped, n_missing_in_peer=items.n_missing_in_peer, config=config,
        provenance={"self_model": (getattr(self_store, "manifest", {}) or {}).get("model"),
                    "peer_model": (getattr(peer_store, "manifest", {}) or {}).get("model"),
                    "self_store": str(getattr(self_store, "path", "")), "peer_store": str(getattr(peer_store, "path", ""))},
    )
