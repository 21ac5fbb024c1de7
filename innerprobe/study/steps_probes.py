"""E3 of the battery: does a probe for the O answer, trained on O runs, read the answer in H?

Self-simulation says the hypothetical pass H recomputes the object answer, so the answer's code
in O should be readable in H: a probe trained on O's last token (``o_last``) to predict the
model's own answer, tested on H's last token (``h_last``), should beat its controls there. The
probes stage (:func:`innerprobe.probes.run_probes`) does the fitting, on the battery's shared
store of own answers on train items (:mod:`innerprobe.study.steps_store`): grouped cross-fitted
folds, a Hewitt–Liang control task (random labels per *type*, here the last animal of P), and a
best layer selected on one half of the items and estimated on the other.

Rows (mass-mean probes, the class-mean directions E6 ablates and E7 steers along):

* **primary**: O→H transfer *selectivity* (task − control-task accuracy, paired) on the items
  whose answer differs from the **surface feature** (the last animal of P). P is quoted inside
  H, so a probe that only reads the last animal would transfer too whenever the answer copies it;
  on these items it cannot help. The layer is selected on one half of these items, the
  selectivity estimated on the other;
* secondary: the same transfer on all items (selectivity, and accuracy beside the majority
  baseline), the transfer to the quote's last token, and the **surface-feature probe** (a probe
  for the last animal of P, same pipeline) beside it: how readable the surface feature is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.probes import ProbeConfig, ProbeResult, run_probes
from innerprobe.probes.result import BestLayer
from innerprobe.probes.table import correct_key
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_store import shared_store

FOLDS = 5
PROBE = "mass_mean"
SITE = "resid_post"
H_RUNS = {"H:h_last": "h_last", "H:quote_last": "quote_last"}


def surface_feature(groups: Sequence[Any]) -> list[str | None]:
    """The last animal of each item's sequence (its group is the normalised sequence)."""
    words = [str(g).split() if g is not None else [] for g in groups]
    return [w[-1] if w else None for w in words]


def _frequent(labels: Sequence[Any], min_count: int) -> np.ndarray:
    counts = Counter(x for x in labels if x is not None)
    return np.array([x is not None and counts[x] >= min_count for x in labels])


def _probe(store: Any, rows: np.ndarray, y: Sequence[Any], groups: Sequence[Any], target: str,
           config: ProbeConfig) -> ProbeResult:
    """Mass-mean probes of ``target`` on the O run and the H runs of the store's ``rows``."""
    idx = torch.as_tensor(np.nonzero(rows)[0])
    runs = {"O": store.read("object", SITE, "o_last")[idx]}
    runs |= {name: store.read("hypothetical", SITE, pos)[idx] for name, pos in H_RUNS.items()}
    return run_probes(runs, [y[i] for i in idx.tolist()], [groups[i] for i in idx.tolist()],
                      layers=store.layers, target=target, config=config)


def _best(result: ProbeResult, test_run: str) -> BestLayer:
    return next(b for b in result.summary.best
                if b.probe == PROBE and b.train_run == "O" and b.test_run == test_run and b.items == "held_out")


def subset_selectivity(result: ProbeResult, keep: np.ndarray, groups: Sequence[Any], *, seed: int,
                       n_boot: int) -> tuple[stats.PairedDiff, int]:
    """O→H selectivity on the items ``keep``: layer chosen on one half of them, paired task −
    control-task accuracy on the other half at that layer. Returns it and the layer index."""
    task = result.correct[correct_key(PROBE, "task", "O", "H:h_last", "held_out")]
    ctrl = result.correct.get(correct_key(PROBE, "control_task", "O", "H:h_last", "held_out"))
    if ctrl is None or result.control_rows is None or not result.control_rows.all():
        raise DataError("the control task was not fitted on every item; no subset selectivity")
    sub_groups = [g for g, k in zip(groups, keep) if k]
    sel = stats.select_and_estimate(task[:, keep].T.astype(float), seed=seed, groups=sub_groups, n_boot=n_boot,
                                    what="layer")
    half_b = ~stats.split_halves(int(keep.sum()), seed=seed, groups=sub_groups)
    j = sel.index
    diff = stats.paired_bootstrap_diff(task[j][keep][half_b].astype(float), ctrl[j][keep][half_b].astype(float),
                                       n_boot=n_boot, seed=seed)
    return diff, j


def e3_probe_transfer(ctx: StepContext) -> list[Evidence]:
    """E3: O→H answer-probe transfer with selectivity, on items where the answer is not the surface
    feature (primary), on all items, and a surface-feature probe beside it (see the module docstring)."""
    cfg, role = ctx.config, ctx.role
    store = shared_store(ctx)
    table = store.rows.reset_index(drop=True)
    answers, groups = table["object_answer"].tolist(), table["group"].tolist()
    surface = surface_feature(groups)
    config = ProbeConfig(probes=(PROBE,), folds=FOLDS, n_boot=cfg.n_boot, seed=cfg.seed)
    rows = _frequent(answers, FOLDS)
    if len({answers[i] for i in np.nonzero(rows)[0]}) < 2:
        return [not_run("E3", "O->H probe transfer", f"fewer than 2 answer classes with >= {FOLDS} of "
                        f"{len(answers)} train items: {dict(Counter(answers).most_common(4))}", model=role)]
    res = _probe(store, rows, answers, groups, "object_answer", config)
    kept_groups = [g for g, k in zip(groups, rows) if k]
    differs = np.array([a != s for a, s, k in zip(answers, surface, rows) if k])
    out = []
    sub = "O->H transfer, answer != last animal of P"
    try:
        diff, j = subset_selectivity(res, differs, kept_groups, seed=cfg.seed, n_boot=cfg.n_boot)
        out.append(Evidence("E3", sub, f"selectivity task - control task (paired), layer {res.layers[j]}", diff.diff,
                            None, diff.diff.n, model=role))
        out.append(Evidence("E3", sub, f"transfer accuracy vs control task, layer {res.layers[j]}", diff.a, diff.b,
                            diff.a.n, model=role, primary=False))
    except DataError as error:
        out.append(not_run("E3", sub, f"no subset estimate: {error}", model=role))
    best = _best(res, "H:h_last")
    if best.selectivity is not None:
        out.append(Evidence("E3", "O->H transfer, all items", f"selectivity (paired), layer {best.layer}",
                            best.selectivity, None, best.selectivity.n, model=role, primary=False))
    out.append(Evidence("E3", "O->H transfer, all items", f"transfer accuracy vs majority, layer {best.layer}",
                        best.accuracy, best.majority, best.accuracy.n, model=role, primary=False))
    quote = _best(res, "H:quote_last")
    out.append(Evidence("E3", "O->H(quote_last) transfer, all items", f"transfer accuracy vs majority, layer "
                        f"{quote.layer}", quote.accuracy, quote.majority, quote.accuracy.n, model=role, primary=False))
    out += _surface_rows(store, surface, groups, config, role)
    return out


def _surface_rows(store: Any, surface: list[str | None], groups: list[Any], config: ProbeConfig,
                  role: str) -> list[Evidence]:
    """The surface-feature probe (last animal of P), O→H transfer, beside its majority baseline."""
    rows = _frequent(surface, FOLDS)
    if len({surface[i] for i in np.nonzero(rows)[0]}) < 2:
        return [not_run("E3", "surface-feature probe O->H", "fewer than 2 last animals with enough items",
                        model=role)]
    best = _best(_probe(store, rows, surface, groups, "last_animal", replace(config, controls=False)), "H:h_last")
    return [Evidence("E3", "surface-feature probe O->H", f"last-animal transfer accuracy vs majority, layer "
                     f"{best.layer}", best.accuracy, best.majority, best.accuracy.n, model=role, primary=False)]


__all__ = ["e3_probe_transfer", "subset_selectivity", "surface_feature"]
