"""Steering along answer directions (E5/E7): does pushing the answer move the self-prediction?

If the hypothetical pass H recomputes the object answer and reads its property off it
(self-simulation), then adding the O-run direction that turns answer ``s`` into answer ``t``
(``μ_t − μ_s``, a difference of class means from the activation store,
:mod:`~innerprobe.interventions.directions`) should move H's self-prediction from ``f(s)`` to
``f(t)``, and move O's own answer from ``s`` to ``t``. A separate self-model need not move.

Per item: its current answer ``s`` is the unsteered forced choice of O; its target ``t`` is the
most frequent store class whose property differs (``f(t) ≠ f(s)``, so a move is visible in H).
The direction is added at one layer and site:

* ``h:quote`` — only over the quoted P inside H (where a recomputation would happen);
* ``h:all`` — at every position of H;
* ``o:last`` — at O's last token (where O's answer is read).

Each is run twice on the same items: with the answer direction and with a **norm-matched random
vector** at the same positions (the control: what any push of that size does). Reported per
place: share moved to the target (Wilson), direction vs random paired (exact McNemar), and the
logit shift ``Δ[log p(target) − log p(source)]`` with bootstrap CIs.

**White-box behaviour shift** (Binder's Exp. 2 without finetuning): steer O, take its new answer
``b'``; over the items whose property changed (``f(b') ≠ f(s)``), does a self-prediction equal
the new property or the old one (paired, McNemar)? Asked of the unsteered H (it cannot know: a
harness check that should not track) and of H steered along the same direction (quote / all).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.io import provenance
from innerprobe.interventions.directions import (
    ClassMeans,
    Direction,
    norm_matched,
    store_class_means,
)
from innerprobe.interventions.edits import AddVector
from innerprobe.interventions.experiment import (
    Trials,
    argmax_labels,
    check_store,
    prepare_trials,
    resolve_layer,
)
from innerprobe.interventions.hooks import SITES, Intervention
from innerprobe.interventions.positions import NAMED
from innerprobe.interventions.prefix import LayerPrefix
from innerprobe.interventions.readout import Choice, choice_logprobs
from innerprobe.interventions.steering_result import (
    SteeringResult,
    SteeringSummary,
    effect_of,
    mean_norm,
    tracking_of,
)
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import Property, get_property

log = logging.getLogger(__name__)

__all__ = ["SteeringConfig", "choose_targets", "run_steering"]

Progress = Callable[[str, int], Callable[[int], None]] | None


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"SteeringConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class SteeringConfig:
    """Settings of :func:`run_steering`, checked at construction.

    Attributes:
        layer: where to steer (None: the middle layer; negative counts from the end). The
            direction is estimated at the same layer and site of the store's O run.
        site: hook site, one of :data:`~innerprobe.interventions.hooks.SITES`; the store must hold it.
        scale: multiplier of the direction ``μ_t − μ_s`` (1: the full difference of means).
        h_positions: where in H, each a named selector (``quote``, ``all``, ``last``, ...).
        o_position: where in O (default ``last``: O's last token).
        label_column: store row column naming each O run's answer class.
        store_position: the O position the class means are read at.
        min_count: least store items a class needs to get a direction.
        batch_size, n_boot, seed: batching, bootstrap resamples, the seed of random vectors.
        spec: prompt wording (as in behaviour runs).
        reuse_prefix: run layers below ``layer`` once per batch (on the unsteered forward of the
            same items, grouped as the steered ones are) and replay their output in every steered
            forward (:class:`~innerprobe.interventions.prefix.LayerPrefix`; identical numbers;
            from layer 24 of 30 a steered forward costs a fifth). False runs every forward whole.
    """

    layer: int | None = None
    site: str = "resid_post"
    scale: float = 1.0
    h_positions: tuple[str, ...] = ("quote", "all")
    o_position: str = "last"
    label_column: str = "object_answer"
    store_position: str = "o_last"
    min_count: int = 3
    batch_size: int = 16
    n_boot: int = 2000
    seed: int = 0
    spec: PromptSpec = PromptSpec()
    reuse_prefix: bool = True

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise UnknownNameError("site", self.site, SITES)
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) \
                or self.scale == 0:
            raise DataError(f"SteeringConfig.scale must be a finite non-zero number, got {self.scale!r}")
        object.__setattr__(self, "h_positions", tuple(self.h_positions))
        for pos in (*self.h_positions, self.o_position):
            if pos not in NAMED:
                raise UnknownNameError("position", pos, NAMED)
        if self.layer is not None:
            _check_int("layer", self.layer, -10**6)
        for name, minimum in (("min_count", 1), ("batch_size", 1), ("n_boot", 1), ("seed", 0)):
            _check_int(name, getattr(self, name), minimum)
        if not isinstance(self.spec, PromptSpec):
            raise DataError(f"SteeringConfig.spec must be a PromptSpec, got {type(self.spec).__name__}")

    @property
    def conditions(self) -> list[tuple[str, str, str]]:
        """``(name, run, position)`` of each steered place."""
        return [*((f"h:{p}", "hypothetical", p) for p in self.h_positions), (f"o:{self.o_position}", "object", self.o_position)]

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}


def choose_targets(
    means: ClassMeans, prop: Property, allowed: Sequence[str], answers: Sequence[str] | None = None
) -> dict[str, str]:
    """Per source class, the most frequent other class whose property differs (and is a label).

    ``allowed``: the property labels the self-prediction can choose; ``answers``: the object
    answers O can choose (default: any class).

    Classes are sorted by count, so the target's mean is the best estimated one available.
    Sources without such a class get no target (their items are dropped and counted).
    """
    out = {}
    for s in means.classes:
        fs = prop.extract(s)
        for t in means.classes:
            ft = prop.extract(t)
            if t != s and ft is not None and ft != fs and ft in allowed and (answers is None or t in answers):
                out[s] = t
                break
    return out


def _grouped(
    model: LoadedModel, trials: Trials, run: str, groups: dict[str, list[int]], config: SteeringConfig,
    prefix: LayerPrefix,
) -> np.ndarray:
    """Unsteered log-probs of the run's choice, batched group by group exactly as the steered
    runs will be (NaN outside the groups), recording the prefix of every batch."""
    prompts = trials.h_prompts if run == "hypothetical" else trials.o_prompts
    choice = trials.properties if run == "hypothetical" else trials.objects
    out = np.full((trials.n, len(choice.labels)), np.nan)
    with prefix.recording():
        for idx in groups.values():
            out[idx] = choice_logprobs(model, [prompts[i] for i in idx], choice, batch_size=config.batch_size)
    return out


def _steered(
    model: LoadedModel, trials: Trials, run: str, position: str, groups: dict[str, list[int]],
    vectors: dict[str, Direction], config: SteeringConfig, layer: int, prefix: LayerPrefix,
) -> np.ndarray:
    """Log-probs of the run's choice for every item in ``groups``, each group with its vector."""
    prompts = trials.h_prompts if run == "hypothetical" else trials.o_prompts
    choice = trials.properties if run == "hypothetical" else trials.objects
    out = np.full((trials.n, len(choice.labels)), np.nan)
    for source, idx in groups.items():
        v = vectors[source]
        iv = Intervention(AddVector(v.vector, float(config.scale)), layers=(layer,), site=config.site,
                          positions=position, name=v.label, provenance=v.record())
        with prefix.replaying(iv.layers):
            out[idx] = choice_logprobs(model, [prompts[i] for i in idx], choice, [iv], batch_size=config.batch_size)
    return out


def _shift(after: np.ndarray, before: np.ndarray, choice: Choice, src: str, tgt: str) -> float:
    i, j = choice.index(tgt), choice.index(src)
    return float((after[i] - after[j]) - (before[i] - before[j]))


def _rows(trials: Trials, kept: list[int], current: list[str], targets: dict[str, str], cond: str, run: str,
          arm: str, before: np.ndarray, after: np.ndarray, norms: dict[str, float]) -> list[dict[str, Any]]:
    choice = trials.properties if run == "hypothetical" else trials.objects
    rows = []
    for i in kept:
        s, t = current[i], targets[current[i]]
        src, tgt = (trials.property_of(s), trials.property_of(t)) if run == "hypothetical" else (s, t)
        b, a = argmax_labels(before[i : i + 1], choice)[0], argmax_labels(after[i : i + 1], choice)[0]
        rows.append({"id": str(trials.items[i]["id"]), "condition": cond, "arm": arm, "reading": run,
                     "current": s, "target": t, "source_label": src, "target_label": tgt, "before": b,
                     "after": a, "hit_before": b == tgt, "hit": a == tgt,
                     "shift": _shift(after[i], before[i], choice, src, tgt), "norm": norms[s]})
    return rows


def _tracking(trials: Trials, kept: list[int], current: list[str], o_after: list[str],
              predictors: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for name, preds in predictors.items():
        for i in kept:
            old, new = trials.property_of(current[i]), trials.property_of(o_after[i])
            changed = new is not None and new != old and new in trials.properties.labels
            rows.append({"id": str(trials.items[i]["id"]), "predictor": name, "old_answer": current[i],
                         "new_answer": o_after[i], "old_property": old, "new_property": new, "changed": changed,
                         "prediction": preds[i], "follows_new": preds[i] == new, "follows_old": preds[i] == old})
    return pd.DataFrame(rows)


def _keep(trials: Trials, current: list[str], targets: dict[str, str], means: ClassMeans) -> tuple[list[int], Counter]:
    kept, dropped = [], Counter()
    for i, s in enumerate(current):
        if s not in means.classes:
            dropped["answer_without_direction"] += 1
        elif s not in targets:
            dropped["no_target_with_other_property"] += 1
        elif trials.property_of(s) not in trials.properties.labels:
            dropped["property_not_a_label"] += 1
        else:
            kept.append(i)
    return kept, dropped


def run_steering(
    model: LoadedModel,
    store: Any,
    items: Any,
    prop: Property | str,
    config: SteeringConfig = SteeringConfig(),
    *,
    n: int | None = None,
    split: str = "test",
    progress: Progress = None,
) -> SteeringResult:
    """Steer H and O along answer directions from ``store`` against norm-matched random vectors.

    ``items`` (a task name, Dataset or list of dicts; ``n``/``split`` for generated tasks) should
    be held out from the store's items: the directions are estimated there. See the module
    docstring for the conditions and what is measured.
    """
    prop = get_property(prop) if isinstance(prop, str) else prop
    check_store(store, model)
    layer = resolve_layer(config.layer, model.n_layers)
    means = store_class_means(store, [layer], label_column=config.label_column, site=config.site,
                              position=config.store_position, min_count=config.min_count)[layer]
    trials = prepare_trials(model, items, prop, config.spec, means.classes, n=n, split=split, seed=config.seed)
    n_runs = 2 + 2 * len(config.conditions)
    advance = progress("steering", n_runs) if progress else (lambda k: None)
    o_base = choice_logprobs(model, trials.o_prompts, trials.objects, batch_size=config.batch_size)
    current = argmax_labels(o_base, trials.objects)
    targets = choose_targets(means, prop, trials.properties.labels, trials.objects.labels)
    kept, dropped = _keep(trials, current, targets, means)
    if not kept:
        raise DataError(f"no item can be steered: {dict(dropped)} (store classes: {', '.join(means.classes)})")
    groups: dict[str, list[int]] = {}
    for i in kept:
        groups.setdefault(current[i], []).append(i)
    prefix = LayerPrefix(model, layer if config.reuse_prefix else 0)
    h_base = _grouped(model, trials, "hypothetical", groups, config, prefix)
    if config.reuse_prefix:  # O's prefix, batched as the steered O runs (O's base stays the all-items run)
        _grouped(model, trials, "object", groups, config, prefix)
    advance(2)
    directions = {s: means.difference(targets[s], s) for s in groups}
    records = [d.record() for d in directions.values()]
    table_rows: list[dict[str, Any]] = []
    steered_preds: dict[str, list[str]] = {}
    o_after: list[str] = list(current)
    for c, (cond, run, pos) in enumerate(config.conditions):
        base = h_base if run == "hypothetical" else o_base
        randoms = {s: norm_matched(d, seed=config.seed * 1_000_003 + 1009 * c + g)
                   for g, (s, d) in enumerate(directions.items())}
        records += [r.record() | {"condition": cond} for r in randoms.values()]
        norms = {s: d.norm * abs(config.scale) for s, d in directions.items()}
        for arm, vectors in (("direction", directions), ("random", randoms)):
            after = _steered(model, trials, run, pos, groups, vectors, config, layer, prefix)
            table_rows += _rows(trials, kept, current, targets, cond, run, arm, base, after, norms)
            advance(1)
            if arm == "direction" and run == "hypothetical":
                steered_preds[cond] = argmax_labels(np.nan_to_num(after, nan=-np.inf), trials.properties)
            if arm == "direction" and run == "object":
                o_after = argmax_labels(np.nan_to_num(after, nan=-np.inf), trials.objects)
    table = pd.DataFrame(table_rows)
    predictors = {"h:unsteered": argmax_labels(np.nan_to_num(h_base, nan=-np.inf), trials.properties),
                  **steered_preds}
    tracking = _tracking(trials, kept, current, o_after, predictors)
    summary = SteeringSummary(
        property=prop.name, layer=layer, site=config.site, scale=float(config.scale), n_items=trials.n,
        n_steered=len(kept), dropped=dict(dropped), mean_direction_norm=mean_norm(records),
        effects=[effect_of(table, cond, n_boot=config.n_boot, seed=config.seed) for cond, _, _ in config.conditions],
        tracking=[tracking_of(tracking, p, n_boot=config.n_boot, seed=config.seed) for p in predictors],
    )
    prov = provenance(model.fingerprint, seed=config.seed, template_hash=config.spec.template_hash(prop),
                      store=records[0]["provenance"] if records else {},
                      object_labels_dropped=list(trials.objects.dropped),
                      property_labels_dropped=list(trials.properties.dropped))
    log.info("steering: %d of %d items steered at layer %d", len(kept), trials.n, layer)
    return SteeringResult(table, tracking, summary, records, config.record(), prov)
