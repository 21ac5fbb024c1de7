"""Per-experiment adapters of the battery: each turns one library stage into Evidence rows.

A step is ``step(ctx) -> list[Evidence]``; :class:`StepContext` carries the config, the item
count and the loaded model. E1 lives in :mod:`~innerprobe.study.steps_behaviour`, E3 in :mod:`~innerprobe.study.steps_probes`, E6-E8 in
:mod:`~innerprobe.study.steps_interventions`; they share one activation store of the model's own
answers (:mod:`~innerprobe.study.steps_store`). Experiments without an adapter yet return an explicit "not run" row
saying so (never a fabricated number).
"""

from __future__ import annotations

from collections.abc import Callable

from innerprobe.core.errors import DataError
from innerprobe.interventions.lens_trace import LensTraceConfig, lens_trace
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_behaviour import e1_behaviour
from innerprobe.study.steps_interventions import e6_ablation, e7_steering, e8_injection
from innerprobe.study.steps_patching import e4_patching_maps, e5_transplant
from innerprobe.study.steps_peer import e3b_peer_probes
from innerprobe.study.steps_probes import e3_probe_transfer
from innerprobe.study.steps_store import own_answers


def e2_lens(ctx: StepContext) -> list[Evidence]:
    """E2: at H's last token, does the own answer emerge more often than a frequency-matched word,
    and does the property label emerge layers after the answer (logit lens)?

    The own answer is the model's forced choice among the item's words, as in E3, E3b, E6 and E7
    (a greedy answer can drift off the task's words: a self-trained M1 then leaves no item to
    trace), and the property traced is that word's.
    """
    cfg = ctx.config
    items = load_items(cfg.task, n=ctx.n, split="test", seed=cfg.seed)
    lens_cfg = LensTraceConfig(positions=("last",), n_boot=cfg.n_boot, seed=cfg.seed, batch_size=cfg.batch_size)
    answers = own_answers(ctx.model, items, get_property(cfg.property), lens_cfg.spec, cfg.batch_size)
    try:
        res = lens_trace(ctx.model, items, cfg.property, lens_cfg, answers=answers)
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
