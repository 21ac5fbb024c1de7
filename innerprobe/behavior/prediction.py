"""Self- and cross-prediction: a predictor answers the hypothetical H(P, property) about P.

In a fresh context the predictor is asked, e.g., *"Previously, you were asked the following
question: "P" What is the second character of the response you gave?"*. The object model asked
about itself is the **self**-prediction; another model, or the same model under another wording
(``third_person``: "Suppose another AI was asked ..."), is a **cross**-prediction. Either is
scored against the object model's behaviour (:mod:`.elicitation`) by exact match (:func:`score`).

Two ways to answer (``BehaviorConfig.mode``):

* ``free``: generated text, cleaned as the paper cleans it; a non-compliant answer counts as
  wrong (the paper's rule);
* ``forced``: after the hypothetical prefill, the probability of every label
  (:mod:`.labels`) is computed and the argmax is the answer; the full distribution is kept, for
  the calibration MAD, with ``label_mass``, the share of next-token mass the labels got (how
  plausible the forced choice was to the model at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from datasets import Dataset
from jaxtyping import Bool, Float

from innerprobe.behavior.config import BehaviorConfig
from innerprobe.behavior.inference import generate, label_distribution
from innerprobe.behavior.labels import label_groups
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, PromptSpec, hypothetical_prompt, label_tokens
from innerprobe.protocol.properties import Property, clean_response
from innerprobe.protocol.tasks import item_meta


@dataclass
class Predictions:
    """A predictor's answers to the hypotheticals, one entry per item.

    ``answers`` are raw (free text or the chosen label), ``cleaned`` what is scored. In forced
    mode ``labels`` are the distribution's columns, ``probs`` the distribution over them and
    ``label_mass`` each prompt's total next-token probability on the labels.
    """

    prompts: list[Prompt]
    answers: list[str]
    cleaned: list[str]
    compliant: Bool[np.ndarray, " n"]
    labels: tuple[str, ...] | None = None
    probs: Float[np.ndarray, "n n_labels"] | None = None
    label_mass: Float[np.ndarray, " n"] | None = None


def build_hypotheticals(
    model: LoadedModel, items: Dataset, prop: Property, spec: PromptSpec
) -> list[Prompt]:
    """H(P, ``prop``) for every item, worded by ``spec``, tokenised for ``model``.

    Items from the paper's release files keep the release's hypothetical text (``meta``'s
    ``hypothetical``) and name their original dataset as the task, so prompts match the paper's.
    """
    out = []
    for row in items:
        meta = item_meta(row)
        out.append(
            hypothetical_prompt(
                model.tokenizer,
                row["question"],
                prop,
                spec,
                task=meta.get("original_dataset") or row["task"],
                release_text=meta.get("hypothetical"),
            )
        )
    return out


def predict(
    model: LoadedModel,
    items: Dataset,
    prop: Property,
    labels: Sequence[str],
    config: BehaviorConfig = BehaviorConfig(),
    progress: Callable[[int], None] | None = None,
) -> Predictions:
    """``model``'s answers to H(P, prop) for every item, free text or forced choice.

    Forced choice takes the argmax over ``labels``: one list for every item, or an
    :class:`~innerprobe.behavior.labels.ItemLabels` (from ``property_labels``) whose items each
    choose among their own set; ``probs`` then has one column per label of the union, 0 outside
    an item's set. In free mode ``labels`` is unused.
    """
    tok = model.tokenizer
    prompts = build_hypotheticals(model, items, prop, config.spec)
    rows = [p.input_ids for p in prompts]
    if config.mode == "free":
        gen = generate(
            model.hf_model,
            tok,
            rows,
            max_new_tokens=config.hypothetical_max_new_tokens,
            batch_size=config.batch_size,
            progress=progress,
        )
        answers = [g[0] for g in gen]
        cleaned = [clean_response(config.spec.hypothetical_prefill_text() + a) for a in answers]
        compliant = np.array([prop.is_compliant(c) for c in cleaned])
        return Predictions(prompts, answers, cleaned, compliant)
    probs, mass = _forced_distribution(model, prompts, labels, config)
    if progress is not None:
        progress(len(rows))
    answers = [labels[i] for i in probs.argmax(-1)]
    return Predictions(
        prompts,
        answers,
        answers,
        np.ones(len(answers), dtype=bool),
        labels=tuple(labels),
        probs=probs,
        label_mass=mass,
    )


def _forced_distribution(
    model: LoadedModel, prompts: list[Prompt], labels: Sequence[str], config: BehaviorConfig
) -> tuple[Float[np.ndarray, "n n_labels"], Float[np.ndarray, " n"]]:
    """Forced-choice probabilities over the columns ``labels`` and each prompt's label mass.

    One label set for all prompts: one :func:`label_distribution` call. Per-item label sets
    (``ItemLabels``): one call per group of prompts sharing a set, scattered into the columns;
    an item's columns outside its own set get probability 0.
    """
    tok = model.tokenizer
    column = {label: j for j, label in enumerate(labels)}
    probs = np.zeros((len(prompts), len(labels)))
    mass = np.zeros(len(prompts))
    for group_labels, index in label_groups(labels, len(prompts)).items():
        lt = label_tokens(tok, list(group_labels), prompts[index[0]].text, config.spec.hypothetical_prefill)
        p, m = label_distribution(
            model.hf_model, [prompts[i].input_ids for i in index], lt, tok.pad_token_id,
            batch_size=config.batch_size,
        )
        probs[np.ix_(index, [column[label] for label in group_labels])] = p
        mass[index] = m
    return probs, mass


def score(values: Sequence[str | None], predictions: Predictions) -> Bool[np.ndarray, " n"]:
    """Exact match of cleaned predictions with the object-level property (None never matches).

    A non-compliant hypothetical answer counts as incorrect (the paper's rule).
    """
    return np.array(
        [
            v is not None and c and p == v
            for v, p, c in zip(values, predictions.cleaned, predictions.compliant)
        ],
        dtype=bool,
    )


__all__ = ["Predictions", "build_hypotheticals", "predict", "score"]
