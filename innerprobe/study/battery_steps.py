"""Per-experiment adapters of the battery: each turns one library stage into Evidence rows.

A step is ``step(ctx) -> list[Evidence]``; :class:`StepContext` carries the config, the item
count and the loaded model. E3 lives in :mod:`~innerprobe.study.steps_probes`, E6-E8 in
:mod:`~innerprobe.study.steps_interventions`; they share one activation store of the model's own
answers (:mod:`~innerprobe.study.steps_store`). Experiments without an adapter yet return an explicit "not run" row
saying so (never a fabricated number).
"""

from __future__ import annotations

from collections.abc import Callable

from innerprobe.behavior import BehaviorConfig, behave
from innerprobe.core.errors import DataError
from innerprobe.interventions.lens_trace import LensTraceConfig, lens_trace
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.tasks import load_items
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_interventions import e6_ablation, e7_steering, e8_injection
from innerprobe.study.steps_patching import e4_patching_maps, e5_transplant
from innerprobe.study.steps_peer import e3b_peer_probes
from innerprobe.study.steps_probes import e3_probe_transfer


def e1_behaviour(ctx: StepContext) -> list[Evidence]:
    """E1: self-prediction against the mode baseline, and against a third-person framing (paired)."""
    cfg = ctx.config
    res = behave(ctx.model, cfg.task, cfg.property, BehaviorConfig(batch_size=cfg.batch_size, seed=cfg.seed),
                 predictor_spec=PromptSpec(variant="third_person"), n=ctx.n, split="test")
    s = res.summary
    rows = [Evidence("E1", "self vs mode baseline", "self-prediction accuracy", s.self.accuracy,
                     s.mode_baseline.estimate, s.self.n, model=ctx.role)]
    if s.self_minus_cross is not None:
        rows.append(Evidence("E1", "self vs third-person", "self − third-person accuracy (paired)",
                             s.self_minus_cross.diff, None, s.self_minus_cross.n, model=ctx.role))
    return rows


def e2_lens(ctx: StepContext) -> list[Evidence]:
    """E2: at H's last token, does the own answer emerge more often than a frequency-matched word,
    and does the property label emerge layers after the answer (logit lens)?"""
    cfg = ctx.config
    items = load_items(cfg.task, n=ctx.n, split="test", seed=cfg.seed)
    try:
        res = lens_trace(ctx.model, items, cfg.property, LensTraceConfig(positions=("last",), n_boot=cfg.n_boot,
                                                                         seed=cfg.seed))
    except DataError as error:  # e.g. no item with a readable answer: say so, do not fake a number
        return [not_run("E2", "property after answer", f"lens trace could not score: {error}", model=ctx.role)]
    p = res.summary.positions["last"]
    rows = [Evidence("E2", "answer vs matched word emerges", "answer emerged in H (logit lens)", p.answer_emerged,
                     p.control_emerged, p.n_items, model=ctx.role, primary=False)]
    if p.gap_property_minus_answer is not None:
        rows.append(Evidence("E2", "property after answer", "layer gap property − answer",
                             p.gap_property_minus_answer, None, p.gap_property_minus_answer.n, model=ctx.role,
                             unit="layers"))
    else:
        rows.append(not_run("E2", "property after answer", "no item where both answer and property emerged",
                            model=ctx.role))
    return rows


STEPS: dict[str, Callable[[StepContext], list[Evidence]]] = {
    "E1": e1_behaviour,
    "E2": e2_lens,
    "E3": e3_probe_transfer,
    "E3b": e3b_peer_probes,
    "E4": e4_patching_maps,
    "E5": e5_transplant,
    "E6": e6_ablation,
    "E7": e7_steering,
    "E8": e8_injection,
}

__all__ = ["STEPS", "StepContext", "e1_behaviour", "e2_lens"]
