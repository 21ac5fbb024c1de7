"""Probe every run at every layer, with controls, and transfer between O and H runs.

A *probe* asks whether a label (the object-level answer word, its property value...) can be read
linearly off the residual stream at one layer. :func:`run_probes` fits each configured family
(:mod:`~innerprobe.probes.ridge`, :mod:`~innerprobe.probes.mass_mean`,
:mod:`~innerprobe.probes.logistic`) at every layer of every run, on grouped stratified folds
(:mod:`~innerprobe.probes.folds`), once on the task labels and once per control
(:mod:`~innerprobe.probes.controls`), and scores every item out of fold.

**Transfer.** A probe trained on the O run (``("object", site, "o_last")``) is tested on an H run
(``("hypothetical", site, "h_last")``) and vice versa, rows aligned item by item. ``items ==
"held_out"`` trains on the training folds of the source run and tests on the held-out items of the
target run; ``items == "same"`` trains on all items of the source and tests on the same items in the
target run (same-item transfer, reported separately). Transfer runs only between runs of
different kinds (O ↔ H), never between two H positions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from innerprobe.core.errors import DataError
from innerprobe.probes.config import ProbeConfig
from innerprobe.probes.controls import (
    ControlTask,
    control_task,
    default_control_types,
    majority_oof,
    random_projection,
    shuffled_labels,
)
from innerprobe.probes.folds import fold_weights, make_folds
from innerprobe.probes.labels import check_activations, encode_labels
from innerprobe.probes.linear import LinearProbe, heldout_predictions
from innerprobe.probes.logistic import fit_logistic
from innerprobe.probes.mass_mean import fit_mass_mean
from innerprobe.probes.result import ProbeResult
from innerprobe.probes.ridge import fit_ridge
from innerprobe.probes.selection import summarise
from innerprobe.probes.table import Progress, correct_key, run_kind, tabulate

log = logging.getLogger(__name__)

__all__ = ["fit_probe", "run_probes"]


def _check_inputs(
    runs: Mapping[str, Float[Tensor, "n layer d"]], n: int, groups: Sequence[Any] | None,
    control_types: Sequence[Any] | None, layers: Sequence[int] | None,
) -> list[int]:
    """Refuse misaligned or malformed inputs; the layer numbers of the runs."""
    if not runs:
        raise DataError("run_probes: no activation runs given")
    for name, x in runs.items():
        if "/" in name:
            raise DataError(f"run name {name!r} contains '/'; use names like 'O' or 'H:h_last'")
        check_activations(x, n, f"run {name!r}")
    if groups is not None and len(groups) != n:
        raise DataError(f"groups has {len(groups)} entries but there are {n} labels")
    if control_types is not None and len(control_types) != n:
        raise DataError(f"control_types has {len(control_types)} entries but there are {n} labels")
    shapes = {tuple(x.shape[1:]) for x in runs.values()}
    if len(shapes) != 1:
        raise DataError(f"runs differ in [layer, d] shape: {sorted(shapes)}")
    n_layer = next(iter(shapes))[0]
    out = list(range(n_layer)) if layers is None else [int(v) for v in layers]
    if len(out) != n_layer:
        raise DataError(f"{len(out)} layer numbers for {n_layer} layers of activations")
    return out


def fit_probe(
    probe: str, x: Float[Tensor, "layer n d"], y: Int[Tensor, " n"], w: Float[Tensor, "fold n"], n_cls: int,
    cfg: ProbeConfig,
) -> LinearProbe:
    """Fit one probe family on every (layer, fold) at once: ``w`` rows are the folds' training
    indicators (:func:`~innerprobe.probes.folds.fold_weights`), ``cfg`` its hyper-parameters."""
    if probe == "logistic":
        return fit_logistic(x, y, w, n_cls, C=cfg.C, max_iter=cfg.max_iter, tol=cfg.tol, standardise=cfg.standardise)
    if probe == "ridge":
        return fit_ridge(x, y, w, n_cls, alpha=cfg.ridge_alpha, mixed=cfg.ridge_mixed, standardise=cfg.standardise,
                         refine_answers=cfg.ridge_refine)
    return fit_mass_mean(x, y, w, n_cls, standardise=cfg.mass_mean_standardise, scope=cfg.standardise)


def run_probes(
    runs: Mapping[str, Float[Tensor, "n layer d"]],
    y: Sequence[Any],
    groups: Sequence[Any] | None = None,
    *,
    control_types: Sequence[Any] | None = None,
    layers: Sequence[int] | None = None,
    target: str = "label",
    config: ProbeConfig = ProbeConfig(),
    progress: Progress | None = None,
) -> ProbeResult:
    """Probe every run at every layer, with controls, and transfer between O and H runs.

    ``runs`` maps a run name (``"O"``, ``"H:h_last"``, ...; the part before ``:`` is its kind) to
    activations ``[n, layer, d]`` whose rows are the same items in the same order. ``groups`` keep
    duplicates in one fold; ``control_types`` are the Hewitt–Liang types (default:
    :func:`default_control_types` of ``groups``; ``None`` entries are dropped from the control).
    """
    layers = _check_inputs(runs, len(y), groups, control_types, layers)
    labels = encode_labels(y, folds=config.folds, min_count=config.min_count)
    keep, ids, n_cls = labels.keep, labels.ids, len(labels.classes)
    kept_groups = None if groups is None else [g for g, k in zip(groups, keep, strict=True) if k]
    grp = None if kept_groups is None else [str(g) for g in kept_groups]
    types = (default_control_types(kept_groups) if control_types is None
             else [t for t, k in zip(control_types, keep, strict=True) if k])
    fold = make_folds(ids, grp, config.folds, config.seed)
    dev = torch.device(config.device)
    w_dev = fold_weights(fold, config.folds).to(dev)
    xs = {name: x[torch.as_tensor(keep)].permute(1, 0, 2).contiguous().to(dev) for name, x in runs.items()}

    label_sets: dict[str, np.ndarray] = {"task": ids}
    warnings: list[str] = []
    ctrl: ControlTask | None = None
    if config.controls:
        label_sets["shuffled"] = shuffled_labels(ids, config.seed)
        ctrl, warning = _control_for(ids, types, n_cls, config.seed)
        if warning:
            log.warning("%s", warning)
            warnings.append(warning)
        if ctrl is not None and ctrl.warning is None:
            label_sets["control_task"] = ctrl.labels
    names = list(xs)
    views = list(label_sets) + (["random_proj"] if config.controls else [])
    advance = progress("fitting probes", len(config.probes) * len(names) * len(views)) if progress else (lambda k: None)

    correct: dict[str, Bool[np.ndarray, "layer n"]] = {}
    directions: dict[str, Tensor] = {}
    everyone = np.ones(len(ids), dtype=bool)
    for probe in config.probes:
        for src in names:
            for view in views:
                # The control is fitted on the items with a type only (compact class ids).
                rows = ctrl.keep if view == "control_task" and ctrl is not None else everyone
                lab, n_view = _view_labels(label_sets.get(view, ids), rows, n_cls)
                fold_v = fold[rows]
                w_v = w_dev if rows is everyone else fold_weights(fold_v, config.folds).to(dev)
                r_dev = torch.as_tensor(rows, device=dev)

                def prepare(
                    x: Float[Tensor, "layer n d"], view: str = view, rows: np.ndarray = rows, r_dev: Tensor = r_dev,
                ) -> Float[Tensor, "layer m k"]:
                    """The view's rows of ``x``, randomly projected for the ``random_proj`` control."""
                    x = x if rows is everyone else x[:, r_dev]
                    return random_projection(x, max(1, n_cls - 1), config.seed) if view == "random_proj" else x

                fitted = fit_probe(probe, prepare(xs[src]), torch.as_tensor(lab, device=dev), w_v, n_view, config)
                if view == "task":
                    directions[f"{probe}/{src}"] = fitted.directions().cpu()
                for tgt in names:
                    if tgt != src and run_kind(tgt) == run_kind(src):
                        continue
                    oof, same = heldout_predictions(fitted, prepare(xs[tgt]), fold_v)
                    correct[correct_key(probe, view, src, tgt, "held_out")] = oof.cpu().numpy() == lab[None]
                    if tgt != src:
                        correct[correct_key(probe, view, src, tgt, "same")] = same.cpu().numpy() == lab[None]
                advance(1)

    majority = majority_oof(ids, fold, n_cls) == ids
    ctrl_rows = ctrl.keep if ctrl is not None and "control_task" in label_sets else None
    table = tabulate(correct, majority, layers, target, config, progress, ctrl_rows)
    summary = summarise(correct, majority, layers, config, target=target, n_classes=n_cls, groups=grp,
                        control_rows=ctrl_rows)
    return ProbeResult(
        target=target, classes=labels.classes, layers=layers, runs=names, table=table, summary=summary,
        directions=directions, correct=correct, majority=majority, n_items=len(ids), n_dropped=labels.n_dropped,
        dropped_classes=labels.dropped_classes, config=config,
        control=ctrl.to_dict() if ctrl is not None else {}, control_rows=ctrl_rows, warnings=warnings, groups=grp,
    )


def _control_for(
    ids: Int[np.ndarray, " n"], types: Sequence[Any] | None, n_cls: int, seed: int
) -> tuple[ControlTask | None, str | None]:
    """The control task of a run and the warning to record (None when it is usable)."""
    if types is None:
        return None, "control task not fitted: no control_types and no groups to take types from"
    ctrl = control_task(ids, types, n_cls, seed)
    return ctrl, ctrl.warning


def _view_labels(lab: Int[np.ndarray, " n"], rows: Bool[np.ndarray, " n"], n_cls: int) -> tuple[np.ndarray, int]:
    """Labels of ``rows`` as compact class ids (a control may miss some classes) and their count."""
    sub = lab[rows]
    if len(sub) == len(lab) and sub.min(initial=0) >= 0:
        return sub, n_cls
    uniq, compact = np.unique(sub, return_inverse=True)
    return compact.astype(np.int64), max(2, len(uniq))
