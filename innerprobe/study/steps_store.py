"""The battery's shared activation store: the model's own answers on train items, captured once.

E3 (probe transfer), E6 (answer-subspace ablation) and E7 (steering) all read the object answer's
linear code from O runs of an activation store: E3 trains probes on it, E6 projects out the span
of its class means, E7 steers along differences of them. They must read the code of *this
model's* answers, so the store's label column ``object_answer`` is the model's own forced-choice
object answer (the reading :mod:`innerprobe.interventions.experiment` scores O with), on *train*
items (the experiments then score held-out test items).

What is captured is only what those steps read: the residual stream (``resid_post``) at every
layer (E3 selects a layer, E6 ablates from the middle layer to the last, so the forward runs to
the end anyway and extra layers cost only memory), at O's last token and at H's last token and
the last token of its quote. The store lives under ``ctx.work_dir/store-n<items>`` and is kept in
``ctx.shared["store"]``: the next step reuses the object, a resumed battery reopens the directory
(a capture interrupted mid-way resumes from its last complete shard).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from innerprobe.activations.capture import capture
from innerprobe.activations.config import CaptureConfig
from innerprobe.activations.store import MANIFEST, ActivationStore
from innerprobe.core.io import read_json
from innerprobe.interventions.experiment import argmax_labels, prepare_trials
from innerprobe.interventions.readout import choice_logprobs
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.study.step_context import StepContext

log = logging.getLogger(__name__)

#: Train items in the shared store per test item of a step (class means and probes need a few
#: items per answer class; the model's answers concentrate on few animals: on SmolLM2 "cat" is a
#: third of them). Each store item costs three forwards (the own-answer reading, O and H): 120
#: items took 126 s on one shared CPU thread. At 90 items (rank-10 subspace) the O ablation no
#: longer confirmed the subspace as O's answer code and E3 lost its power; at 120 both read.
STORE_PER_ITEM = 2
#: Never fewer train items than this (the quick study has 20 test items; at 40 items SmolLM2 has
#: a single answer class with the 5 items a probe fold needs, and E3 cannot run).
MIN_STORE_ITEMS = 60
STORE_KEY = "store"
CAPTURE = CaptureConfig(sites=("resid_post",), layers="all", object_positions=("o_last",),
                        hypothetical_positions=("h_last", "quote_last"))


def store_items(ctx: StepContext) -> int:
    """How many train items the shared store holds for ``ctx`` (``STORE_PER_ITEM · n``, at least
    :data:`MIN_STORE_ITEMS`)."""
    return max(MIN_STORE_ITEMS, round(STORE_PER_ITEM * ctx.n))


def store_item_set(ctx: StepContext) -> Any:
    """The train items of the shared store (the same ones every role and E3b's peer read)."""
    return load_items(ctx.config.task, n=store_items(ctx), split="train", seed=ctx.config.seed)


def own_answers(model: Any, items: Any, prop: Any, spec: PromptSpec, batch_size: int) -> list[str]:
    """The model's forced-choice object answer per item (argmax over the task's answer words)."""
    trials = prepare_trials(model, items, prop, spec, [])
    return argmax_labels(choice_logprobs(model, trials.o_prompts, trials.objects, batch_size=batch_size),
                         trials.objects)


def own_answer_labels(model: Any, items: Any, prop: Any, batch_size: int) -> dict[str, list]:
    """A store's label columns from ``model``'s forced-choice answers: the answer word, its
    property, and compliance (a forced choice always answers)."""
    answers = own_answers(model, items, prop, CAPTURE.spec, batch_size)
    return {"object_answer": answers, "answer_property": [prop.extract(a) for a in answers],
            "object_compliant": [True] * len(answers)}


def _work_dir(ctx: StepContext) -> Path:
    if ctx.work_dir is None:
        ctx.work_dir = Path(tempfile.mkdtemp(prefix="innerprobe-battery-"))
    return Path(ctx.work_dir)


def shared_store(ctx: StepContext) -> ActivationStore:
    """The role's store of own answers on train items: from ``ctx.shared``, else reopened from
    ``work_dir/store-n<items>`` when complete, else captured there (resuming a partial capture)."""
    if STORE_KEY in ctx.shared:
        return ctx.shared[STORE_KEY]
    cfg = ctx.config
    n = store_items(ctx)
    path = _work_dir(ctx) / f"store-n{n}"
    if (path / MANIFEST).exists() and read_json(path / MANIFEST).get("complete"):
        ctx.shared[STORE_KEY] = ActivationStore.open(path)
        return ctx.shared[STORE_KEY]
    prop = get_property(cfg.property)
    items = store_item_set(ctx)
    labels = own_answer_labels(ctx.model, items, prop, cfg.batch_size)
    capture_cfg = CaptureConfig.from_options(CAPTURE, batch_size=cfg.batch_size, seed=cfg.seed)
    store = capture(ctx.model, items, prop, capture_cfg, out=path, labels=labels)
    log.info("battery store: %d train items, %d layers at %s", n, len(store.layers), path)
    ctx.shared[STORE_KEY] = store
    return store


__all__ = ["CAPTURE", "MIN_STORE_ITEMS", "STORE_PER_ITEM", "own_answer_labels", "own_answers", "shared_store", "store_item_set", "store_items"]
