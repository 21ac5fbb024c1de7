"""E6, E7 and E8 of the battery: ablation, steering and concept injection as Evidence rows.

Each step runs one intervention stage on held-out *test* items, with the directions and
subspaces estimated on the battery's shared store of the model's own answers on *train* items
(:mod:`innerprobe.study.steps_store`), and turns its summary into rows. The voted (primary) row
is always a paired difference against the stage's built-in control (a matched random subspace, a
norm-matched random vector, no injection); a secondary row beside it shows the two sides, each
with its own interval (:func:`~innerprobe.study.step_rows.paired_rows`).

**Sizing.** These are the battery's most expensive steps (every arm is a forward over every
item), so each runs on at most a fixed number of items, whatever the study's ``n_items``
(``E6_ITEMS``, ``E7_ITEMS``), chosen so that each step stays near two minutes on one CPU thread
for SmolLM2-135M; E8's trial count is derived from the decision rule's ``min_n`` so that its
primary row rests on exactly enough trials to be read.

* **E6** (:func:`~innerprobe.interventions.ablation.run_ablation`): the self-prediction's drop
  when the answer subspace (rank ``classes − 1``, from the middle layer on, mean ablation) is
  projected out of H after the quoted P, minus its drop under a random subspace of equal rank
  drawn outside it and matched in variance (the reference's ablation from the quote on is
  reported beside it; :func:`e6_ablation` says why it is not the voted one).
  Secondary: the same in O (the subspace must break O's own answer, else an H null says
  nothing) and on the control question that needs no answer (should not drop). The drop is
  voted only when it can be read: when the unablated self-prediction is not above its mode
  baseline (nothing to remove) or O's answer survives the ablation, the primary row is an
  explicit "not run" saying so, and the measured drop stays as a secondary row.
* **E7** (:func:`~innerprobe.interventions.steering.run_steering`): steer O along ``μ_t − μ_s``
  (at ``E7_DEPTH`` of the depth, scale ``E7_SCALE``: at the middle layer and scale 1 nothing
  moves on SmolLM2) and ask whether the self-prediction, steered the same way over the quoted P,
  follows O's *new* property rather than the old one. Secondary: the unsteered H (cannot know:
  a harness check), the share at the target against a norm-matched random vector in H and in O.
* **E8** (:func:`~innerprobe.interventions.injection.run_injection`): P(yes) to "do you detect
  an injected thought?" with a concept injected minus without (paired by trial variant; the
  no-injection trials are the false positives). Secondary: concept vs a norm-matched random
  vector, and the detection shift beyond the yes-shift on an impossible question under the same
  injection. On an untrained 135M model this is expected to be about 0: a harness check.
"""

from __future__ import annotations

import math
from dataclasses import replace

from innerprobe.core import stats
from innerprobe.core.stats import Estimate
from innerprobe.interventions.ablation import AblationConfig, run_ablation
from innerprobe.interventions.ablation_result import AblationEffect
from innerprobe.interventions.concepts import CONCEPT_WORDS, concept_vectors
from innerprobe.interventions.injection import run_injection
from innerprobe.interventions.injection_config import InjectionConfig
from innerprobe.interventions.steering import SteeringConfig, run_steering
from innerprobe.study.decision import DecisionConfig, reading
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext
from innerprobe.study.step_rows import negated, paired_rows
from innerprobe.study.steps_store import shared_store

E6_ITEMS = 30
E7_ITEMS = 30
E7_DEPTH = 0.8
E7_SCALE = 8.0
E8_WORDS = CONCEPT_WORDS[:5]
E8_SCALE = 8.0
E8_CONTROL_TRIALS = 20


def _n(ctx: StepContext, cap: int) -> int:
    return min(ctx.n, cap)


#: E6's arms: where in H the answer subspace is removed, and whether the arm is voted.
E6_ARMS = (("after_quote", True), ("quote_onward", False))


def e6_ablation(ctx: StepContext) -> list[Evidence]:
    """E6: self-prediction drop under answer-subspace ablation vs a matched random subspace.

    Two arms, the same subspaces and items. The voted one removes the answer code only *after*
    the quoted P (``after_quote``: the question and ``h_last``, where H would form an answer once
    it has read P). The reference protocol's arm removes it from the quote on (``quote_onward``)
    and is reported beside it: when the answer words are also P's words (a sequence task's
    answers are items of its vocabulary), the answer subspace carries the quoted words' identity
    too, and removing it over the quote erases P itself, so any reader of P drops, simulator or
    not (the zoo's planted direct model dropped under it and held under the voted arm). The
    control question is the reference's guard against this, but a model that cannot answer it
    leaves the guard blind.

    Not an arm: sparing the property (``AblationConfig.spare="answer_property"``, the answer
    subspace minus the span of the property's class means). On the zoo it removed the drop on the
    direct models and on four of five simulation models alike: a simulating H reads the property
    from the property directions of its answer code, so sparing them spares the route
    (``experiments/results/zoo_confusion.md``).
    """
    rows: list[Evidence] = []
    for position, primary in E6_ARMS:
        rows += _e6_arm(ctx, position, primary)
    return rows


def _e6_arm(ctx: StepContext, position: str, primary: bool) -> list[Evidence]:
    """One E6 arm: ablate the answer subspace in H at ``position``."""
    cfg, role = ctx.config, ctx.role
    config = AblationConfig(modes=("mean",), h_position=position, batch_size=cfg.batch_size, n_boot=cfg.n_boot,
                            seed=cfg.seed)
    res = run_ablation(ctx.model, shared_store(ctx), cfg.task, cfg.property, config, n=_n(ctx, E6_ITEMS),
                       split="test")
    s, by = res.summary, {e.reading: e for e in res.summary.effects}
    where = f"rank {s.rank} from layer {s.start_layer}, mean ablation, H {position}"
    h, o = by["hypothetical"], by["object"]
    sub = "answer-subspace ablation" + ("" if primary else f" ({position})")
    drop = Evidence("E6", sub, f"self-prediction drop: answer − random subspace (paired), {where}",
                    negated(h.answer_vs_random.diff), None, h.n, model=role, primary=primary)
    untestable = _untestable(h.unablated, s.mode_baseline, o, cfg.decision) if primary else None
    rows = [drop] if untestable is None else [not_run("E6", sub, untestable, model=role), replace(drop, primary=False)]
    hyp = res.table[(res.table["reading"] == "hypothetical")].pivot(index="id", columns="arm", values="correct")
    c0, ca, cr = (hyp[a].to_numpy(float) for a in ("none", "answer", "random"))
    rows.append(Evidence("E6", sub, "self-prediction drop under answer subspace vs under random subspace",
                         stats.paired_bootstrap_diff(c0, ca, n_boot=cfg.n_boot, seed=cfg.seed).diff,
                         stats.paired_bootstrap_diff(c0, cr, n_boot=cfg.n_boot, seed=cfg.seed).diff, h.n,
                         model=role, primary=False))
    if not primary:
        return rows
    rows.append(Evidence("E6", "O ablation (confirms the subspace is the answer code)",
                         "O answer drop: answer − random subspace (paired)", negated(o.answer_vs_random.diff), None,
                         o.n, model=role, primary=False))
    if "control" in by:
        c = by["control"]
        rows.append(Evidence("E6", "control question (needs no answer; should not drop)",
                             "control-question drop: answer − random subspace (paired)",
                             negated(c.answer_vs_random.diff), None, c.n, model=role, primary=False))
    return rows


def _untestable(unablated: Estimate, mode: Estimate | None, o: AblationEffect, rule: DecisionConfig) -> str | None:
    """Why the E6 drop cannot be read (None: it can).

    Self-simulation predicts the self-prediction *falls to its mode baseline*: a self-prediction
    already at or below it has nothing to lose, and "no drop" would be read as evidence against
    an answer code in H that the test never had the power to see. Nor can an H null be read when
    the same ablation does not break O's own answer (then the subspace is not the answer code).
    """
    if mode is not None and unablated.ci_low <= mode.value:
        return (f"unablated self-prediction {unablated.value:.3f} [{unablated.ci_low:.3f}, {unablated.ci_high:.3f}] "
                f"is not above its mode baseline {mode.value:.3f}: nothing for the ablation to remove "
                "(the measured drop is kept as a secondary row)")
    o_drop = Evidence("E6", "O", "O drop", negated(o.answer_vs_random.diff), None, o.n)
    if reading(o_drop, rule)[0] != "positive":
        return "the answer subspace does not break O's own answer beyond a random subspace: it is not the answer code"
    return None


def e7_steering(ctx: StepContext) -> list[Evidence]:
    """E7: does the self-prediction follow O's steered (new) behaviour, beside random vectors?"""
    cfg, role = ctx.config, ctx.role
    model = ctx.model
    layer = min(model.n_layers - 1, round(E7_DEPTH * model.n_layers))
    config = SteeringConfig(layer=layer, scale=E7_SCALE, h_positions=("quote",), batch_size=cfg.batch_size,
                            n_boot=cfg.n_boot, seed=cfg.seed)
    res = run_steering(model, shared_store(ctx), cfg.task, cfg.property, config, n=_n(ctx, E7_ITEMS), split="test")
    s = res.summary
    track = {t.predictor: t for t in s.tracking}
    eff = {e.condition: e for e in s.effects}
    where = f"layer {s.layer}, scale {s.scale:g}"
    quote = track.get("h:quote")
    rows: list[Evidence] = []
    if quote is None or quote.new_minus_old is None:
        rows.append(not_run("E7", "behaviour shift by steering", f"steering O changed no item's property ({where})",
                            model=role))
    else:
        rows += paired_rows("E7", "behaviour shift by steering", f"H (steered over the quote) follows O's new − old "
                            f"property (paired), {where}", quote.new_minus_old, model=role,
                            sides="share following the new property vs the old")
    unsteered = track.get("h:unsteered")
    if unsteered is not None and unsteered.new_minus_old is not None:
        rows += paired_rows("E7", "harness: unsteered H (cannot know the new behaviour)",
                            "unsteered H follows new − old property (paired)", unsteered.new_minus_old, model=role,
                            primary=False)
    for cond, what in (("h:quote", "self-prediction"), ("o:last", "O answer")):
        e = eff[cond]
        rows += paired_rows("E7", f"steering {cond} vs norm-matched random", f"{what} at target: direction − random "
                            f"(paired), {where}", e.direction_vs_random, model=role, primary=False,
                            sides="share at target: direction vs random")
    return rows


def e8_trials(ctx: StepContext, words: int, scales: int) -> int:
    """Trial variants per injected condition so that concept trials reach the decision rule's ``min_n``."""
    return max(1, math.ceil(ctx.config.decision.min_n / (words * scales)))


def e8_injection(ctx: StepContext) -> list[Evidence]:
    """E8: detection of an injected concept vs no injection (false positives) and random vectors."""
    cfg, role = ctx.config, ctx.role
    model = ctx.model
    if not getattr(model.tokenizer, "chat_template", None):  # the trial is a multi-turn conversation
        return [not_run("E8", "concept injection: detection", f"{cfg.model} has no chat template (a base model): "
                        "the injection trial is a multi-turn chat and cannot be posed", model=role)]
    layer = model.n_layers // 2
    n_trials = e8_trials(ctx, len(E8_WORDS), 1)
    config = InjectionConfig(scales=(E8_SCALE,), n_trials=n_trials,
                             n_control_trials=max(n_trials, E8_CONTROL_TRIALS), identification=False,
                             localisation=False, batch_size=cfg.batch_size, n_boot=cfg.n_boot, seed=cfg.seed,
                             random_seed=cfg.seed)
    concepts = concept_vectors(model, E8_WORDS, layer, site="resid_pre", batch_size=cfg.batch_size)
    s = run_injection(model, concepts, config).summary
    where = f"layer {layer}, scale {E8_SCALE:g}, {len(E8_WORDS)} concepts"
    sub = "concept injection: detection"
    if s.concept_vs_none is None:
        return [not_run("E8", sub, "no paired injected / no-injection trials", model=role)]
    rows = paired_rows("E8", sub, f"P(yes): concept injected − no injection (paired by variant), {where}",
                       s.concept_vs_none, model=role)
    if s.detect_yes_concept is not None and s.detect_yes_none is not None:
        rows.append(Evidence("E8", sub, "P(yes) with a concept injected vs no-injection false-positive rate",
                             s.detect_yes_concept, s.detect_yes_none, s.detect_yes_concept.n, model=role,
                             primary=False))
    rows += paired_rows("E8", "concept vs norm-matched random vector", "P(yes): concept − random (paired)",
                        s.concept_vs_random, model=role, primary=False, sides="P(yes): concept vs random")
    rows += paired_rows("E8", "detection beyond the yes-shift", "detection shift − impossible-question yes-shift "
                        "(paired, logits)", s.detection_beyond_yes_shift, model=role, primary=False, unit="logits")
    return rows


__all__ = ["E6_ITEMS", "E7_DEPTH", "E7_ITEMS", "E7_SCALE", "E8_WORDS", "e6_ablation", "e7_steering", "e8_injection",
           "e8_trials"]
