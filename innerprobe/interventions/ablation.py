"""Ablating the answer subspace (E6): does the self-prediction need the answer's representation?

Self-simulation says H reads its property off a recomputed object answer. Then removing the
answer's linear code from H — projecting out the span of the ``k`` centred class means of the O
runs (:meth:`~innerprobe.interventions.directions.ClassMeans.subspace`), at every layer from
``l`` on (each layer with its own subspace) and at every position from the quoted P to ``h_last``
— should drop self-prediction accuracy toward the mode baseline, while:

* a **random subspace** of equal rank, **matched in variance**
  (:func:`~innerprobe.interventions.directions.random_subspace`), removes as much of the
  activations' variance without the answer code: its drop is what any such ablation costs;
* a **control question that needs no answer** keeps its accuracy. No registered property is
  answer-independent (every one is read off the response), so the control is an H prompt of the
  same form asking about P's *input*: "the first character of the last word in the text of that
  question" (:data:`INPUT_CONTROL`); its truth comes from the item, not from the model;
* the **same ablation in O** (all of O's positions) must break O's own answer: that confirms the
  subspace is the answer code (if it does not, an H null result says nothing).

Two modes: ``zero`` removes the component, ``mean`` replaces it by the mean component of the
*same kind of run* (keeps the activation on-distribution): in O the store's O-run mean at each
layer; in H (the self-prediction and the control) the store's H-run mean at its H position
(``h_last``, which lies in the ablated span), falling back to the O mean only for a store that
holds no H run (recorded as ``mean_source`` in the summary). ``k = 0``
is the identity arm: no hook is installed and every reading equals the unablated one bit for bit.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from innerprobe.core import stats
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.io import provenance
from innerprobe.interventions.ablation_result import (
    AblationResult,
    AblationSummary,
    ablation_effect,
)
from innerprobe.interventions.directions import (
    ClassMeans,
    Subspace,
    outside_span,
    projected_variance,
    random_subspace,
    store_class_means,
)
from innerprobe.interventions.edits import ProjectOut
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
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, PromptSpec, hypothetical_prompt
from innerprobe.protocol.properties import Property, clean_response, get_property
from innerprobe.protocol.tasks import item_meta

log = logging.getLogger(__name__)

__all__ = ["INPUT_CONTROL", "MODES", "AblationConfig", "ablation_interventions", "run_ablation"]

MODES = ("zero", "mean")
Progress = Callable[[str, int], Callable[[int], None]] | None

INPUT_CONTROL = Property(
    "input_last_word_first_character",
    "What is the first character of the last word in the text of that question? Respond only with that character.",
    "single_character",
    ("sequence",),
    lambda text, target: (text.split()[-1][:1] or None) if text.split() else None,
    get_property("first_character").fixed_labels,
)
"""The answer-independent control question: asked in H's form, answered from P's own text."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"AblationConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class AblationConfig:
    """Settings of :func:`run_ablation`, checked at construction.

    Attributes:
        layer: first ablated layer (None: the middle layer); every later layer is ablated too.
        k: rank of the answer subspace (None: ``n_classes − 1``; 0: the identity arm).
        modes: any of :data:`MODES`.
        site: hook site (the store must hold it; subspaces are estimated there).
        h_position / o_position: where in H (default from the quote on) and in O (default all).
        control: also run the answer-independent control question.
        reuse_prefix: run layers below ``layer`` once per batch (on the unablated forward) and
            replay their output in every ablated forward (:class:`LayerPrefix`; identical
            numbers, about half the cost from the middle layer); False runs every forward whole.
        random_outside: draw the random control subspace inside the orthogonal complement of the
            answer subspace (:func:`~innerprobe.interventions.directions.random_subspace`'s
            ``outside``): a control that shares no direction with the code it controls for. Where
            the rank is a large share of the width (tiny models) a whole-space variance-matched
            subspace overlaps the answer code and ablates it too (found on the zoo: answer and
            random arms both broke O). Falls back to the whole space when ``2k > d_model``
            (recorded in the subspace's provenance). False: the whole space, as before.
        spare: a store row column (e.g. ``answer_property``) whose class-mean span is *kept*: the
            ablated subspace is the answer subspace minus that span
            (:func:`~innerprobe.interventions.directions.outside_span`), so the answer's identity
            is removed and the code of its property left in place. Its rank is then lower than
            ``k`` (per layer); the random control gets the same rank. None: the whole answer
            subspace.
        label_column, store_position, min_count, batch_size, n_boot, seed, spec: as in steering.
    """

    layer: int | None = None
    k: int | None = None
    modes: tuple[str, ...] = MODES
    site: str = "resid_post"
    h_position: str = "quote_onward"
    o_position: str = "all"
    control: bool = True
    reuse_prefix: bool = True
    random_outside: bool = True
    spare: str | None = None
    label_column: str = "object_answer"
    store_position: str = "o_last"
    min_count: int = 3
    batch_size: int = 16
    n_boot: int = 2000
    seed: int = 0
    spec: PromptSpec = PromptSpec()

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise UnknownNameError("site", self.site, SITES)
        object.__setattr__(self, "modes", tuple(self.modes))
        if not self.modes:
            raise DataError(f"AblationConfig.modes is empty; valid modes: {', '.join(MODES)}")
        for m in self.modes:
            if m not in MODES:
                raise UnknownNameError("ablation mode", m, MODES)
        for pos in (self.h_position, self.o_position):
            if pos not in NAMED:
                raise UnknownNameError("position", pos, NAMED)
        if self.layer is not None:
            _check_int("layer", self.layer, -10**6)
        if self.k is not None:
            _check_int("k", self.k, 0)
        for name, minimum in (("min_count", 1), ("batch_size", 1), ("n_boot", 1), ("seed", 0)):
            _check_int(name, getattr(self, name), minimum)
        if not isinstance(self.spec, PromptSpec):
            raise DataError(f"AblationConfig.spec must be a PromptSpec, got {type(self.spec).__name__}")

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}


def ablation_interventions(
    subspaces: dict[int, Subspace], centres: dict[int, torch.Tensor], mode: str, site: str, position: str
) -> list[Intervention]:
    """One :class:`ProjectOut` per layer (rank-0 subspaces install nothing: the identity).

    ``centres`` holds, per layer, the mean activation the ``mean`` mode restores the removed
    component to (unused by ``zero``).
    """
    out = []
    for layer, sub in subspaces.items():
        if sub.rank == 0:
            continue
        mean = centres[layer] if mode == "mean" else None
        out.append(Intervention(ProjectOut(sub.basis, mean=mean), layers=(layer,), site=site, positions=position,
                                name=f"{sub.kind}-{mode}", provenance=sub.record()))
    return out


def _subspaces(store: Any, means: dict[int, ClassMeans], k: int, config: AblationConfig
               ) -> tuple[dict[int, Subspace], dict[int, Subspace]]:
    """Per layer the answer subspace and a random one of equal rank matched in variance (outside
    the answer subspace when ``config.random_outside``)."""
    d = next(iter(means.values())).d_model
    if k == 0:
        return ({layer: Subspace(torch.zeros(0, d), "answer", layer) for layer in means},
                {layer: Subspace(torch.zeros(0, d), "random", layer) for layer in means})
    acts = store.read("object", config.site, config.store_position, layers=list(means))
    spared = store_class_means(store, list(means), label_column=config.spare, site=config.site,
                               position=config.store_position, min_count=config.min_count) if config.spare else {}
    answer, random = {}, {}
    for i, (layer, m) in enumerate(means.items()):
        full = m.subspace(k)
        answer[layer] = full if not spared else _spare(full, spared[layer], config.spare)
        x, rank = acts[:, i], answer[layer].rank
        if rank == 0:
            random[layer] = Subspace(torch.zeros(0, d), "random", layer)
            continue
        target = projected_variance(x, answer[layer].basis)
        outside = full.basis if config.random_outside and k + rank <= d else None
        r = random_subspace(rank, d, seed=config.seed * 7919 + layer, acts=x, target_variance=target, outside=outside)
        random[layer] = Subspace(r.basis, "random", layer, (), r.provenance)
    return answer, random


def _spare(full: Subspace, spared: ClassMeans, column: str) -> Subspace:
    """The answer subspace minus the span of ``column``'s class means (its provenance says so)."""
    keep = spared.subspace()
    basis = outside_span(full.basis, keep.basis)
    return Subspace(basis, "answer", full.layer, full.classes,
                    {**full.provenance, "spared": column, "spared_rank": keep.rank, "answer_rank": full.rank})


def _centres(store: Any, means: dict[int, ClassMeans], site: str) -> tuple[dict[int, torch.Tensor], str]:
    """Per layer the mean H-run activation (for H readings) and where it came from.

    Mean ablation restores the removed component to its average *in that kind of run*; an O mean
    put into H would move H's activations toward O's distribution, an edit of its own.
    """
    h_positions = store.positions.get("hypothetical", [])
    if not h_positions or site not in store.sites:
        return {layer: m.grand_mean for layer, m in means.items()}, "object_mean (store has no H run)"
    pos = "h_last" if "h_last" in h_positions else h_positions[0]
    acts = store.read("hypothetical", site, pos, layers=list(means))
    return ({layer: acts[:, i].mean(0).to(means[layer].grand_mean.dtype) for i, layer in enumerate(means)},
            f"hypothetical_mean@{pos}")


def _control_prompts(model: LoadedModel, trials: Trials, spec: PromptSpec) -> tuple[list[Prompt], list[str | None]]:
    prompts = [hypothetical_prompt(model.tokenizer, q, INPUT_CONTROL, spec) for q in trials.items["question"]]
    truth = []
    for row in trials.items:
        words = clean_response(item_meta(row).get("string") or "").split()
        truth.append(words[-1][:1] if words else None)
    return prompts, truth


def _readings(model: LoadedModel, trials: Trials, current: list[str], config: AblationConfig
              ) -> dict[str, tuple[list[Prompt], Choice, list[str | None], str]]:
    """Per reading: its prompts, its choice, each item's truth and where to ablate.

    The self-prediction's truth is the property of O's unablated answer; O's truth is that
    answer itself; the control's truth is read off P.
    """
    truths_h: list[str | None] = [trials.property_of(a) for a in current]
    out = {"hypothetical": (trials.h_prompts, trials.properties, truths_h, config.h_position),
           "object": (trials.o_prompts, trials.objects, list(current), config.o_position)}
    if config.control:
        prompts, truth = _control_prompts(model, trials, config.spec)
        out["control"] = (prompts, trials.properties, truth, config.h_position)
    return out


def _score_rows(trials: Trials, reading: str, arm: str, mode: str, lp: np.ndarray, base: np.ndarray,
                choice: Choice, truth: list[str | None], kept: list[int]) -> list[dict[str, Any]]:
    preds = argmax_labels(lp, choice)
    rows = []
    for i in kept:
        j = choice.index(truth[i])
        rows.append({"id": str(trials.items[i]["id"]), "reading": reading, "arm": arm, "mode": mode,
                     "truth": truth[i], "prediction": preds[i], "correct": preds[i] == truth[i],
                     "logp_truth": float(lp[i, j]), "dlogp": float(lp[i, j] - base[i, j])})
    return rows


def run_ablation(
    model: LoadedModel,
    store: Any,
    items: Any,
    prop: Property | str,
    config: AblationConfig = AblationConfig(),
    *,
    n: int | None = None,
    split: str = "test",
    progress: Progress = None,
) -> AblationResult:
    """Project the answer subspace (from ``store``'s O runs) out of H, O and the control question.

    See the module docstring for the arms and what each must show. Items whose object answer's
    property (or the control's truth) is not a label are dropped and counted.
    """
    prop = get_property(prop) if isinstance(prop, str) else prop
    check_store(store, model)
    start = resolve_layer(config.layer, model.n_layers)
    layers = list(range(start, model.n_layers))
    means = store_class_means(store, layers, label_column=config.label_column, site=config.site,
                              position=config.store_position, min_count=config.min_count)
    n_classes = len(next(iter(means.values())).classes)
    k = n_classes - 1 if config.k is None else config.k
    if k > n_classes - 1:
        raise DataError(f"AblationConfig.k={k} needs {k + 1} classes; the store has {n_classes} with >= "
                        f"{config.min_count} items")
    answer, random = _subspaces(store, means, k, config)
    trials = prepare_trials(model, items, prop, config.spec, means[start].classes, n=n, split=split, seed=config.seed)
    prefix = LayerPrefix(model, start if config.reuse_prefix else 0)
    with prefix.recording():
        o_base = choice_logprobs(model, trials.o_prompts, trials.objects, batch_size=config.batch_size)
    current = argmax_labels(o_base, trials.objects)
    readings = _readings(model, trials, current, config)
    truths_h = readings["hypothetical"][2]
    dropped: Counter = Counter()
    kept = []
    for i in range(trials.n):
        if truths_h[i] not in trials.properties.labels:
            dropped["property_not_a_label"] += 1
        elif config.control and readings["control"][2][i] not in trials.properties.labels:
            dropped["control_truth_not_a_label"] += 1
        else:
            kept.append(i)
    if not kept:
        raise DataError(f"no scorable item: {dict(dropped)}")
    o_centres = {layer: m.grand_mean for layer, m in means.items()}
    h_centres, mean_source = _centres(store, means, config.site)
    advance = progress("ablation", len(readings) * (1 + 2 * len(config.modes))) if progress else (lambda k: None)
    rows: list[dict[str, Any]] = []
    for reading, (prompts, choice, truth, position) in readings.items():
        if reading == "object":
            base = o_base
        else:
            with prefix.recording():
                base = choice_logprobs(model, prompts, choice, batch_size=config.batch_size)
        rows += _score_rows(trials, reading, "none", "none", base, base, choice, truth, kept)
        advance(1)
        for mode in config.modes:
            for arm, subs in (("answer", answer), ("random", random)):
                centres = o_centres if reading == "object" else h_centres
                ivs = ablation_interventions(subs, centres, mode, config.site, position)
                with prefix.replaying([x for iv in ivs for x in iv.layers]):
                    lp = choice_logprobs(model, prompts, choice, ivs, batch_size=config.batch_size)
                rows += _score_rows(trials, reading, arm, mode, lp, base, choice, truth, kept)
                advance(1)
    table = pd.DataFrame(rows)
    mb = stats.mode_baseline([truths_h[i] for i in kept])
    summary = AblationSummary(
        property=prop.name, start_layer=start, layers=layers, rank=answer[start].rank, site=config.site, n_items=trials.n,
        n_scored=len(kept), dropped=dict(dropped), mode_baseline=mb.estimate,
        mean_source={"object": "object_mean", "hypothetical": mean_source, "control": mean_source},
        variance_ratio=[float(s.provenance.get("variance_ratio", float("nan"))) for s in random.values()],
        effects=[ablation_effect(table, r, m, n_boot=config.n_boot, seed=config.seed)
                 for r in readings for m in config.modes],
    )
    records = [s.record() for s in (*answer.values(), *random.values())]
    prov = provenance(model.fingerprint, seed=config.seed, template_hash=config.spec.template_hash(prop),
                      store=next(iter(means.values())).provenance)
    log.info("ablation: rank %d from layer %d on %d items", k, start, len(kept))
    return AblationResult(table, summary, records, config.record(), prov)
