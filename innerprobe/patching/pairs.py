"""Minimal pairs for patching: what a pair is, and the set of them a search returns.

A minimal pair (P_A, P_B) differs in one sequence word: word ``i`` of P_A is replaced by another
vocabulary word of the *same token length in context*, so that O(P_A) and O(P_B) (and H(P_A),
H(P_B)) tokenise to the same length and every position lines up
(:mod:`innerprobe.patching.candidates`).

Which pairs are informative depends on what *this* model answers, so answers are measured, not
assumed (:func:`innerprobe.patching.search.build_pairs`): the object-level answer is the model's
forced choice over the task vocabulary at the first token after the prefill (``Answer:``). A
pair is kept as

* a **property pair** when the two answers differ *and* their property values differ (e.g.
  second characters ``"i"`` vs ``"o"``): patching its H run asks where the self-prediction's
  property is decided;
* a **control pair** when the answers differ but the property value is the same: patching its O
  run still moves the answer, but nothing about the property should move.

**Forced choice vs greedy.** Behaviour (:mod:`innerprobe.behavior`) takes the object answer from
*greedy generation*; pairs need a one-token metric and use the forced choice. The two can
disagree (SmolLM2 may generate "1. deer" where the forced first token is "cat"), so each pair also
records both sides' greedy answer and whether it agrees with the forced one, and
:attr:`PairSet.summary` reports the agreement rates with Wilson intervals: a patching result is
about behaviour only to the extent they agree.

A :class:`PairSet` is a :class:`~innerprobe.core.result.Result`: ``.table`` (one row per pair),
``.summary`` (a :class:`PairSetSummary`), ``.figure()`` (where the candidates went) and
``.save(dir)`` / ``PairSet.load(dir)`` (the prompts and their token ids round-trip as JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, proportion
from innerprobe.protocol.prompts import Prompt

GapRule = Literal["both_runs", "difference"]
"""The logit-difference gap filter (:func:`~innerprobe.patching.search.build_pairs`)."""

EXCLUSION_REASONS = (
    "not_sequence",
    "unequal_length",
    "same_answer",
    "same_first_token",
    "no_property_value",
    "small_o_gap",
    "small_h_gap",
    "unequal_h_length",
)
"""Why a candidate pair was dropped, in the order the filters run (see :class:`PairSet`)."""


@dataclass
class MinimalPair:
    """Two prompts that differ in one same-length word, with the model's answers and metrics.

    ``o_tokens`` / ``h_tokens``: ``(a, b)`` first token of A's and B's answer (O) or property
    label (H); the metric is ``logit[a] - logit[b]``. ``o_ld`` / ``h_ld``: that metric in the A
    and B runs. Control pairs have no H metric (same label): ``h_tokens`` is ``None``.
    ``o_span`` / ``h_span``: token span ``[first, last + 1)`` of the replaced word in the O and H
    prompts (:func:`~innerprobe.patching.candidates.word_token_span`); it covers every position
    where the A and B prompts differ (``h_span`` is ``(0, 0)`` where the H prompts differ in
    length).
    """

    item_id: str
    kind: Literal["property", "control"]
    word_index: int
    word_a: str
    word_b: str
    o_a: Prompt
    o_b: Prompt
    h_a: Prompt
    h_b: Prompt
    answer_a: str
    answer_b: str
    value_a: str
    value_b: str
    o_tokens: tuple[int, int]
    o_ld: tuple[float, float]
    h_tokens: tuple[int, int] | None = None
    h_ld: tuple[float, float] | None = None
    o_span: tuple[int, int] = (0, 0)
    h_span: tuple[int, int] = (0, 0)
    greedy_answer_a: str | None = None
    greedy_answer_b: str | None = None
    greedy_value_a: str | None = None
    greedy_value_b: str | None = None
    """The greedy (behaviour) answers of O(P_A) / O(P_B): the first vocabulary word of the greedy
    decode and the property value behaviour scores (``None``: none / non-compliant)."""

    @property
    def greedy_agrees_a(self) -> bool:
        """Does A's forced-choice answer equal its greedy answer?"""
        return self.greedy_answer_a == self.answer_a

    @property
    def greedy_agrees_b(self) -> bool:
        return self.greedy_answer_b == self.answer_b

    def record(self) -> dict[str, Any]:
        """One row of :attr:`PairSet.table`: words, answers, spans, metrics, greedy agreement."""
        return {
            "item_id": self.item_id,
            "kind": self.kind,
            "word_index": self.word_index,
            "word_a": self.word_a,
            "word_b": self.word_b,
            "answer_a": self.answer_a,
            "answer_b": self.answer_b,
            "value_a": self.value_a,
            "value_b": self.value_b,
            "o_span_start": self.o_span[0],
            "o_span_end": self.o_span[1],
            "h_span_start": self.h_span[0],
            "h_span_end": self.h_span[1],
            "o_len": len(self.o_a),
            "h_len": len(self.h_a),
            "o_ld_a": self.o_ld[0],
            "o_ld_b": self.o_ld[1],
            "h_ld_a": self.h_ld[0] if self.h_ld else np.nan,
            "h_ld_b": self.h_ld[1] if self.h_ld else np.nan,
            "greedy_answer_a": self.greedy_answer_a,
            "greedy_answer_b": self.greedy_answer_b,
            "greedy_value_a": self.greedy_value_a,
            "greedy_value_b": self.greedy_value_b,
            "greedy_agrees_a": self.greedy_agrees_a,
            "greedy_agrees_b": self.greedy_agrees_b,
        }


@dataclass
class PairSetSummary(Summary):
    """What a pair search kept and dropped, and how far its forced answers are behaviour's.

    ``answer_agreement``: share of kept pairs (property and control) whose forced-choice answer
    equals the greedy answer on *both* sides; ``value_agreement``: share whose property values
    equal behaviour's on both sides (Wilson intervals; ``None`` without pairs).
    ``forced_vs_greedy``: the raw rates of :meth:`PairSet.agreement`.
    """

    task: str
    property: str
    n_pairs: int
    n_controls: int
    n_candidates: int
    n_items_used: int | None
    answer_agreement: Estimate | None
    value_agreement: Estimate | None
    excluded: dict[str, int]
    forced_vs_greedy: dict[str, Any]
    settings: dict[str, Any]


@dataclass
class PairSet(Result):
    """Property pairs, control pairs and the count excluded for each reason.

    ``excluded`` has every reason of :data:`EXCLUSION_REASONS` plus ``over_budget`` (property
    pairs found beyond ``n_pairs``) and ``controls_over_budget``. ``n_candidates`` counts the
    candidates whose answers were compared (every same-length replacement tried); ``settings``
    records the search's arguments.
    """

    stage: ClassVar[str] = "pairs"

    task: str
    property: str
    pairs: list[MinimalPair]
    controls: list[MinimalPair]
    excluded: dict[str, int] = field(default_factory=dict)
    n_candidates: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def o_inputs(self, which: Literal["pairs", "controls"] = "pairs") -> tuple[list, list]:
        """``(pairs of token ids, metric tokens)`` for patching the object-level prompts."""
        src = self.pairs if which == "pairs" else self.controls
        return [(p.o_a.input_ids, p.o_b.input_ids) for p in src], [p.o_tokens for p in src]

    def h_inputs(self) -> tuple[list, list]:
        """``(pairs of token ids, metric tokens)`` for patching the hypothetical prompts."""
        return [(p.h_a.input_ids, p.h_b.input_ids) for p in self.pairs], [p.h_tokens for p in self.pairs]

    @property
    def table(self) -> pd.DataFrame:
        """One row per pair (property pairs, then controls): :meth:`MinimalPair.record`."""
        return pd.DataFrame([p.record() for p in self.pairs + self.controls])

    def agreement(self) -> dict[str, Any]:
        """Forced-choice vs greedy agreement over property and control pairs.

        ``answer_a`` / ``answer_b``: share of pairs whose forced answer equals the greedy one
        on that side; ``answer_both``: on both sides; ``value_both``: the property values the
        pair was built from equal behaviour's on both sides. ``n_disagree``: pairs that
        disagree on at least one side's answer.
        """
        both = self.pairs + self.controls
        if not both:
            return {"n": 0}
        a = np.array([p.greedy_agrees_a for p in both])
        b = np.array([p.greedy_agrees_b for p in both])
        v = np.array([p.greedy_value_a == p.value_a and p.greedy_value_b == p.value_b for p in both])
        return {
            "n": len(both),
            "answer_a": float(a.mean()),
            "answer_b": float(b.mean()),
            "answer_both": float((a & b).mean()),
            "value_both": float(v.mean()),
            "n_disagree": int((~(a & b)).sum()),
        }

    @property
    def summary(self) -> PairSetSummary:
        agree = self.agreement()
        both = self.pairs + self.controls
        n = len(both)
        k_answer = sum(p.greedy_agrees_a and p.greedy_agrees_b for p in both)
        k_value = sum(p.greedy_value_a == p.value_a and p.greedy_value_b == p.value_b for p in both)
        return PairSetSummary(
            task=self.task,
            property=self.property,
            n_pairs=len(self.pairs),
            n_controls=len(self.controls),
            n_candidates=self.n_candidates,
            n_items_used=self.settings.get("n_items_used"),
            answer_agreement=proportion(k_answer, n) if n else None,
            value_agreement=proportion(k_value, n) if n else None,
            excluded=dict(self.excluded),
            forced_vs_greedy=agree,
            settings=dict(self.settings),
        )

    def figure(self) -> go.Figure:
        """Where the candidates went: kept property and control pairs beside each exclusion."""
        kept = {"property pairs": len(self.pairs), "control pairs": len(self.controls)}
        dropped = {k: v for k, v in self.excluded.items() if v}
        fig = go.Figure(
            go.Bar(
                x=list(kept) + list(dropped),
                y=list(kept.values()) + list(dropped.values()),
                marker_color=["#2b8cbe"] * len(kept) + ["#bdbdbd"] * len(dropped),
            )
        )
        fig.update_layout(
            title=f"{self.task} / {self.property}: {self.n_candidates} candidates → kept and excluded",
            xaxis_title="outcome", yaxis_title="candidates",
        )
        return fig


__all__ = ["EXCLUSION_REASONS", "GapRule", "MinimalPair", "PairSet", "PairSetSummary"]
