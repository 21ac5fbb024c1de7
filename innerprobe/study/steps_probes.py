"""E3 of the battery: does a probe for the O answer, trained on O runs, read the answer in H?

Self-simulation says the hypothetical pass H recomputes the object answer, so the answer's code
in O should be readable in H: a probe trained on O's last token (``o_last``) to predict the
model's own answer, tested on H's last token (``h_last``), should beat its controls there. The
probes stage (:func:`innerprobe.probes.run_probes`) does the fitting, on the battery's shared
store of own answers on train items (:mod:`innerprobe.study.steps_store`): grouped cross-fitted
folds, a Hewitt–Liang control task (random labels per *type*, here the last animal of P), and a
best layer selected on one half of the items and estimated on the other.

Rows (mass-mean probes, the class-mean directions E6 ablates and E7 steers along):

* **primary**: O→H transfer accuracy on the items whose answer differs from the **surface
  feature** (the last animal of P), against the stricter of two controls on the same items: the
  majority baseline and the Hewitt–Liang control task. P is quoted inside H, so a probe that
  only reads the last animal would transfer too whenever the answer copies it; on these items it
  cannot help. The layer is selected on one half of these items, everything estimated on the
  other. (Selectivity alone, task − control task, is not enough for transfer: on an H run that
  carries no code at all the control probe can land below chance, and the difference looks
  like a signal; beside the primary row it is a secondary one);
* secondary: the same on all items, the transfer to the quote's last token, and the
  **surface-feature probe** (a probe for the last animal of P, same pipeline) beside it: how
  readable the surface feature is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool

from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.core.stats import Estimate, PairedDiff
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


def _frequent(labels: Sequence[Any], min_count: int) -> Bool[np.ndarray, " n"]:
    counts = Counter(x for x in labels if x is not None)
    return np.array([x is not None and counts[x] >= min_count for x in labels])


def _probe(store: Any, rows: Bool[np.ndarray, " n"], y: Sequence[Any], groups: Sequence[Any], target: str,
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


@dataclass(frozen=True)
class Transfer:
    """O→H transfer on a subset of items, at the layer chosen on one half, estimated on the other."""

    layer: int
    accuracy: Estimate
    majority: Estimate
    control_task: Estimate
    selectivity: PairedDiff

    @property
    def control(self) -> tuple[str, Estimate]:
        """The stricter control: the majority baseline or the control task, whichever is higher."""
        if self.majority.value >= self.control_task.value:
            return "majority baseline", self.majority
        return "control task", self.control_task


def subset_transfer(result: ProbeResult, keep: Bool[np.ndarray, " n"], groups: Sequence[Any], *, seed: int,
                    n_boot: int) -> Transfer:
    """O→H (``h_last``) transfer on the items ``keep``: the layer is chosen on one half of them
    (:func:`~innerprobe.core.stats.select_and_estimate`); on the other half, at that layer, the
    transfer accuracy, the majority baseline, the control-task accuracy and the selectivity
    (task − control task, paired)."""
    task = result.correct[correct_key(PROBE, "task", "O", "H:h_last", "held_out")]
    ctrl = result.correct.get(correct_key(PROBE, "control_task", "O", "H:h_last", "held_out"))
    if ctrl is None or result.control_rows is None or not result.control_rows.all():
        raise DataError("the control task was not fitted on every item; no subset estimate")
    sub_groups = [g for g, k in zip(groups, keep) if k]
    sel = stats.select_and_estimate(task[:, keep].T.astype(float), seed=seed, groups=sub_groups, n_boot=n_boot,
                                    what="layer")
    half_b = ~stats.split_halves(int(keep.sum()), seed=seed, groups=sub_groups)
    j = sel.index
    t, c, m = task[j][keep][half_b], ctrl[j][keep][half_b], result.majority[keep][half_b]
    return Transfer(int(result.layers[j]), sel.estimate, stats.accuracy(m), stats.accuracy(c),
                    stats.paired_bootstrap_diff(t.astype(float), c.astype(float), n_boot=n_boot, seed=seed))


def _transfer_rows(sub: str, tr: Transfer, role: str, primary: bool) -> list[Evidence]:
    what, ctrl = tr.control
    return [Evidence("E3", sub, f"transfer accuracy vs {what}, layer {tr.layer}", tr.accuracy, ctrl, tr.accuracy.n,
                     model=role, primary=primary),
            Evidence("E3", sub, f"selectivity: task − control task (paired), layer {tr.layer}", tr.selectivity.diff,
                     None, tr.selectivity.diff.n, model=role, primary=False)]


def e3_probe_transfer(ctx: StepContext) -> list[Evidence]:
    """E3: O→H answer-probe transfer against its controls, on items where the answer is not the
    surface feature (primary) and on all items, with a surface-feature probe beside it (see the
    module docstring)."""
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
    out: list[Evidence] = []
    for sub, keep, primary in (("O->H transfer, answer != last animal of P", differs, True),
                               ("O->H transfer, all items", np.ones_like(differs), False)):
        try:
            out += _transfer_rows(sub, subset_transfer(res, keep, kept_groups, seed=cfg.seed, n_boot=cfg.n_boot),
                                  role, primary)
        except DataError as error:
            out.append(not_run("E3", sub, f"no estimate: {error}", model=role))
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


__all__ = ["Transfer", "e3_probe_transfer", "subset_transfer", "surface_feature"]
