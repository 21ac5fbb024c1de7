"""The pair filters: which answer-flipping candidates become property pairs, control pairs, or neither.

A candidate whose forced answer flips (:mod:`innerprobe.patching.search`) is dropped, and counted
by reason, when

* both answers start with the same token (``same_first_token``: the one-token metric
  ``logit[a] - logit[b]`` would be identically 0);
* either answer has no value of the property (``no_property_value``);
* its O runs fail the **logit-difference gap filter** (``small_o_gap``). Normalised recovery
  divides by the clean-minus-corrupt gap, so a pair whose runs barely differ on the metric gives
  noise, not recovery. With ``gap_rule="both_runs"`` each run must prefer its own label by more
  than ``min_gap`` (``ld_A > min_gap`` and ``-ld_B > min_gap``); with ``"difference"`` only
  ``ld_A - ld_B > min_gap`` is needed.

The rest are **control pairs** when the two property values are equal, and **property pairs**
otherwise, which must also have H prompts of equal length (``unequal_h_length``) and pass the
same gap filter on the two property labels in H (``small_h_gap``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from innerprobe.behavior.inference import next_token_logprobs
from innerprobe.patching.candidates import Candidate, word_token_span
from innerprobe.patching.pairs import GapRule, MinimalPair
from innerprobe.protocol.prompts import Prompt, PromptSpec, hypothetical_prompt, label_tokens
from innerprobe.protocol.properties import Property


def logit_diffs(model: Any, prompts: Sequence[Prompt], tokens: Sequence[tuple[int, int]], batch_size: int) -> np.ndarray:
    """``logit[a] - logit[b]`` at the last position (log-prob difference: same normaliser).

    Identical prompts (the shared A side of an item's candidates) run once.
    """
    unique: dict[tuple[int, ...], int] = {}
    row_of = [unique.setdefault(tuple(p.input_ids), len(unique)) for p in prompts]
    lp = next_token_logprobs(model.hf_model, [list(k) for k in unique], model.tokenizer.pad_token_id, batch_size=batch_size)
    a = np.array([t[0] for t in tokens])
    b = np.array([t[1] for t in tokens])
    rows = np.array(row_of)
    return (lp[rows, a] - lp[rows, b]).double().numpy()


def passes(ld_a: float, ld_b: float, min_gap: float, rule: GapRule) -> bool:
    if rule == "both_runs":
        return ld_a > min_gap and -ld_b > min_gap
    return ld_a - ld_b > min_gap


def filter_pairs(
    model: Any,
    task: str,
    prop: Property,
    vocab: Sequence[str],
    cands: Sequence[Candidate],
    answers: Sequence[tuple[str, str]],
    firsts: Sequence[tuple[int, int]],
    o_lds: Sequence[tuple[float, float]],
    min_gap: float,
    gap_rule: GapRule,
    spec: PromptSpec,
    batch_size: int,
    excluded: Counter,
    need_pairs: bool = True,
) -> tuple[list[MinimalPair], list[MinimalPair]]:
    """``(property pairs, control pairs)`` among answer-flipping candidates, after the filters.

    Drops (and counts) pairs whose answers share a first token or have no property value, whose
    O runs fail the gap filter, and property pairs whose H prompts differ in length or whose H
    runs fail the gap filter on the two property labels. With ``need_pairs=False`` (the property
    budget is already full) property candidates skip the H runs and count as ``over_budget``.
    """
    tok = model.tokenizer
    pairs: list[MinimalPair] = []
    controls: list[MinimalPair] = []
    h_todo: list[MinimalPair] = []
    for c, (ans_a, ans_b), ot, (ld_a, ld_b) in zip(cands, answers, firsts, o_lds):
        if ot[0] == ot[1]:
            excluded["same_first_token"] += 1
            continue
        va, vb = prop.extract(ans_a), prop.extract(ans_b)
        if va is None or vb is None:
            excluded["no_property_value"] += 1
            continue
        if not passes(ld_a, ld_b, min_gap, gap_rule):
            excluded["small_o_gap"] += 1
            continue
        h_a = hypothetical_prompt(tok, c.question_a, prop, spec, task=task)
        h_b = hypothetical_prompt(tok, c.question_b, prop, spec, task=task)
        mp = MinimalPair(
            c.item_id, "property" if va != vb else "control", c.index, c.word_a, c.word_b,
            c.o_a, c.o_b, h_a, h_b, ans_a, ans_b, va, vb, ot, (float(ld_a), float(ld_b)),
        )
        mp.o_span = word_token_span(tok, c.o_a, c.o_b)
        if va == vb:
            if len(h_a) == len(h_b):
                mp.h_span = word_token_span(tok, h_a, h_b)
            controls.append(mp)
        elif not need_pairs:
            excluded["over_budget"] += 1
        elif len(h_a) != len(h_b):
            excluded["unequal_h_length"] += 1
        else:
            mp.h_span = word_token_span(tok, h_a, h_b)
            h_todo.append(mp)
    if not h_todo:
        return pairs, controls
    labels = prop.labels(list(vocab))
    lt = label_tokens(tok, labels, h_todo[0].h_a.text, spec.hypothetical_prefill)
    first_of = dict(zip(labels, lt.first_ids))
    bad = [mp for mp in h_todo if mp.value_a not in first_of or mp.value_b not in first_of]
    excluded["no_property_value"] += len(bad)
    h_todo = [mp for mp in h_todo if mp not in bad]
    if not h_todo:
        return pairs, controls
    h_toks = [(first_of[mp.value_a], first_of[mp.value_b]) for mp in h_todo]
    ha = logit_diffs(model, [mp.h_a for mp in h_todo], h_toks, batch_size)
    hb = logit_diffs(model, [mp.h_b for mp in h_todo], h_toks, batch_size)
    for mp, t, x, y in zip(h_todo, h_toks, ha, hb):
        mp.h_tokens, mp.h_ld = t, (float(x), float(y))
        if passes(float(x), float(y), min_gap, gap_rule):
            pairs.append(mp)
        else:
            excluded["small_h_gap"] += 1
    return pairs, controls


__all__ = ["filter_pairs", "logit_diffs", "passes"]
