"""Battery step E1: is the model's self-prediction better than every outside predictor?

Binder et al.'s black-box test, on the battery's test items. The model M answers the object
prompts (its behaviour, the ground truth) and predicts its own answers from the hypothetical
prompt (forced choice). The self-prediction accuracy is read against four controls, all on
exactly the items that were scored (object-compliant, value inside the label set):

* **mode baseline**: always guessing M's most common value (the row the "represented but not
  read out" finding reads);
* **third-person**: M itself, asked about "a model" instead of "you" (same weights, no self
  reference; a self-advantage over it is about the framing, not the weights);
* **text-only**: a TF-IDF logistic regression on the item string, cross-validated on M's own
  behaviour on the other folds of the same items: what a third party that sees only the text
  can learn about M's answers;
* **cross-model (peer)**: another model (``battery.peer``; Gemma-3-270M, when installed) answering the same
  hypotheticals about M's behaviour: the paper's cross-predictor, untrained here as M is.

Each comparison is a paired difference over the same items (bootstrap CI, exact McNemar p); the
rule reads the differences (their control is 0) and shows the two sides in a secondary row. A
self-advantage over every measured outside predictor (text-only, third-person, the peer) is the E1
evidence for privileged access (`DecisionConfig.advantage`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from innerprobe.behavior import (
    BehaviorConfig,
    behave,
    predict,
    property_labels,
    score,
    text_only_predictions,
)
from innerprobe.behavior.result import BehaviorResult
from innerprobe.core import stats
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext
from innerprobe.study.step_rows import paired_rows
from innerprobe.study.steps_peer import peer_missing, peer_model

SUB_MODE = "self vs mode baseline"
SUB_THIRD = "self vs third-person"
SUB_TEXT = "self vs text-only"
SUB_PEER = "self vs cross-model (peer)"


def _scored(table: pd.DataFrame) -> np.ndarray:
    return table["scored"].to_numpy(bool)


def text_only_diff(items, table: pd.DataFrame, seed: int) -> stats.PairedDiff | None:
    """Self − text-only accuracy on the scored items (text-only cross-validated on those items)."""
    keep = _scored(table)
    values = [v if k else None for v, k in zip(table["object_value"], keep)]
    text = text_only_predictions(items, values, seed=seed)
    text_ok = np.array([t is not None and t == v for t, v in zip(text, values)])[keep]
    if keep.sum() < 2:
        return None
    return stats.paired_bootstrap_diff(table["correct"].to_numpy(bool)[keep].astype(float), text_ok.astype(float),
                                       seed=seed)


def peer_diff(ctx: StepContext, items, res: BehaviorResult, config: BehaviorConfig) -> stats.PairedDiff | None:
    """Self − peer accuracy: the peer answers the same hypotheticals about M's behaviour."""
    table, keep = res.table, _scored(res.table)
    prop = get_property(ctx.config.property)
    values = table["object_value"].tolist()
    labels = property_labels(prop, items, values)
    peer_ok = score(values, predict(peer_model(ctx), items, prop, labels, config))
    if keep.sum() < 2:
        return None
    return stats.paired_bootstrap_diff(table["correct"].to_numpy(bool)[keep].astype(float),
                                       peer_ok[keep].astype(float), seed=config.seed)


def e1_behaviour(ctx: StepContext) -> list[Evidence]:
    """E1: self-prediction against the mode baseline, third-person, text-only and peer (see the module)."""
    cfg = ctx.config
    items = load_items(cfg.task, n=ctx.n, split="test", seed=cfg.seed)
    bcfg = BehaviorConfig(batch_size=cfg.batch_size, seed=cfg.seed)
    res = behave(ctx.model, items, cfg.property, bcfg, predictor_spec=PromptSpec(variant="third_person"))
    s = res.summary
    rows = [Evidence("E1", SUB_MODE, "self-prediction accuracy", s.self.accuracy, s.mode_baseline.estimate, s.self.n,
                     model=ctx.role)]
    rows += paired_rows("E1", SUB_THIRD, "self − third-person accuracy (paired)", s.self_minus_cross,
                        model=ctx.role, sides="self (effect) vs third-person (control) accuracy")
    rows += paired_rows("E1", SUB_TEXT, "self − text-only accuracy (paired)", text_only_diff(items, res.table, cfg.seed),
                        model=ctx.role, sides="self (effect) vs text-only (control) accuracy")
    missing = peer_missing(ctx)
    if missing is not None:
        rows.append(not_run("E1", SUB_PEER, missing, model=ctx.role))
    else:
        peer = cfg.peer
        rows += paired_rows("E1", SUB_PEER, f"self − {peer} accuracy (paired)", peer_diff(ctx, items, res, bcfg),
                            model=ctx.role, sides=f"self (effect) vs {peer} (control) accuracy")
    if ctx.work_dir is not None:
        res.save(ctx.work_dir / "e1-behaviour")
    return rows


__all__ = ["SUB_MODE", "SUB_PEER", "SUB_TEXT", "SUB_THIRD", "e1_behaviour", "peer_diff", "text_only_diff"]
