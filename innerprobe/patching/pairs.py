"""Minimal pairs for patching, built from the model's own behaviour.

A minimal pair (P_A, P_B) differs in one sequence word: word ``i`` of P_A is replaced by another
vocabulary word of the *same token length in context*, so that O(P_A) and O(P_B) (and H(P_A),
H(P_B)) tokenise to the same length and every position lines up. Candidates of unequal token
length are excluded and counted.

Which pairs are informative depends on what *this* model answers, so answers are measured, not
assumed: the object-level answer is the model's forced choice over the task vocabulary at the
first token after the prefill (``Answer:``). A pair is kept as

* a **property pair** when the two answers differ *and* their property values differ (e.g.
  second characters ``"i"`` vs ``"o"``): patching its H run asks where the self-prediction's
  property is decided;
* a **control pair** when the answers differ but the property value is the same: patching its O
  run still moves the answer, but nothing about the property should move.

**Forced choice vs greedy.** Behaviour (:mod:`innerprobe.behavior`) takes the object answer from
*greedy generation*; pairs need a one-token metric and use the forced choice. The two can
disagree (SmolLM2 may generate "1. deer" where the forced first token is "cat"), so each pair also
records both sides' greedy answer (the same memoised decode behaviour uses, the first
vocabulary word of it, and the property value behaviour would score), whether each agrees with
the forced answer, and :meth:`PairSet.summary` reports the agreement rates
(``forced_vs_greedy``): a patching result is about behaviour only to the extent they agree.

Which word to replace is searched, not fixed (``word_index="any"``): SmolLM2-135M asked for
"the next animals" mostly copies a sequence word, most often the *first*, so replacing the last
word left ~97% of answers unchanged. Each item tries the first word, then other positions in a
seeded order, until its answer flips (unchanged candidates are counted as ``same_answer``).

A **logit-difference gap filter** drops pairs whose clean and corrupt runs barely differ on the
metric (normalised recovery divides by that gap). With ``gap_rule="both_runs"`` each run must
prefer its own label by more than ``min_gap`` (``ld_A > min_gap`` and ``-ld_B > min_gap``); with
``"difference"`` only ``ld_A - ld_B > min_gap`` is needed. Every exclusion is counted by reason
in :class:`PairSet`.

The grids patch a pair at *cells* (:func:`grid_cells`): the replaced word (all its tokens at
once: its place differs between pairs), the last tokens of P, and the last prompt positions;
:func:`transplant_positions` aligns the O prompt's word and P tokens with the H prompt's quote.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from innerprobe.behavior.elicitation import greedy_responses
from innerprobe.behavior.inference import next_token_logprobs
from innerprobe.core.errors import DataError
from innerprobe.protocol.prompts import (
    Prompt,
    PromptSpec,
    _tokenize,
    char_span_to_tokens,
    hypothetical_prompt,
    label_tokens,
    object_prompt,
)
from innerprobe.protocol.properties import Property, extract_with_compliance, get_property
from innerprobe.protocol.tasks import TASKS, item_meta, load_items

log = logging.getLogger(__name__)

GapRule = Literal["both_runs", "difference"]
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


@dataclass
class MinimalPair:
    """Two prompts that differ in one same-length word, with the model's answers and metrics.

    ``o_tokens`` / ``h_tokens``: ``(a, b)`` first token of A's and B's answer (O) or property
    label (H); the metric is ``logit[a] - logit[b]``. ``o_ld`` / ``h_ld``: that metric in the A
    and B runs. Control pairs have no H metric (same label): ``h_tokens`` is ``None``.
    ``o_span`` / ``h_span``: token span ``[first, last + 1)`` of the replaced word in the O and H
    prompts (:func:`word_token_span`); it covers every position where the A and B prompts differ
    (``h_span`` is ``(0, 0)`` where the H prompts differ in length).
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
class PairSet:
    """Property pairs, control pairs and the count excluded for each reason."""

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
        return [(p.h_a.input_ids, p.h_b.input_ids) for p in self.pairs], [
            p.h_tokens for p in self.pairs
        ]

    def to_dataframe(self) -> pd.DataFrame:
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

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "property": self.property,
            "n_pairs": len(self.pairs),
            "n_controls": len(self.controls),
            "n_candidates": self.n_candidates,
            "excluded": dict(self.excluded),
            "forced_vs_greedy": self.agreement(),
            "settings": self.settings,
        }


def replace_word(question: str, string: str, index: int, new: str) -> tuple[str, str]:
    """Replace word ``index`` of the sequence ``string`` inside ``question``; return (q, old)."""
    words = string.split()
    if not -len(words) <= index < len(words):
        raise DataError(f"word index {index} outside a sequence of {len(words)} words")
    old = words[index]
    words[index] = new
    new_string = " ".join(words) + (" " if string.endswith(" ") else "")
    if string not in question:
        raise DataError("the item's sequence string is not inside its question")
    return question.replace(string, new_string, 1), old


def word_token_span(tokenizer: Any, a: Prompt, b: Prompt) -> tuple[int, int]:
    """Token span ``[first, last + 1)`` of the replaced word in two aligned prompts.

    The tokens where ``a`` and ``b`` differ, widened to whole words in either prompt (a leading
    token the two words share, like `` be`` in `` bear`` / `` beaver``, belongs to the word too).

    Raises:
        DataError: the prompts differ in length or not at all.
    """
    if len(a) != len(b):
        raise DataError(f"prompts differ in length ({len(a)} vs {len(b)} tokens)")
    diff = [i for i, (x, y) in enumerate(zip(a.input_ids, b.input_ids)) if x != y]
    if not diff:
        raise DataError("the two prompts are identical: no replaced word")
    lo, hi = diff[0], diff[-1] + 1
    for p in (a, b):
        ids, offsets = _tokenize(tokenizer, p.text)
        if ids != p.input_ids:
            continue  # cannot map characters to these tokens; keep the differing span
        s, e = offsets[diff[0]][0], offsets[diff[-1]][1]
        while s > 0 and p.text[s - 1].isalnum():
            s -= 1
        while e < len(p.text) and p.text[e].isalnum():
            e += 1
        first, last = char_span_to_tokens(offsets, s, e)
        lo, hi = min(lo, first), max(hi, last)
    return lo, hi


@dataclass
class Candidate:
    item_id: str
    index: int
    word_a: str
    word_b: str
    o_a: Prompt
    o_b: Prompt
    question_a: str
    question_b: str


def word_replacements(
    tokenizer: Any,
    items: Any,
    vocabulary: Sequence[str],
    spec: PromptSpec = PromptSpec(),
    word_index: int = -1,
    per_item: int = 1,
    seed: int = 0,
) -> tuple[list[Candidate], Counter]:
    """Same-token-length replacements of word ``word_index`` in each item, behaviour unchecked.

    The raw material of :func:`build_pairs` without the model's answers: up to ``per_item``
    replacement words per item whose object prompt tokenises to the original length (for
    benchmarks and hand-built pairs). Returns the candidates and the exclusion counts.
    """
    rng = np.random.default_rng(seed)
    excluded: Counter = Counter()
    out: list[Candidate] = []
    for row, string in _sequence_items(items, excluded):
        out += _item_candidates(tokenizer, row, string, vocabulary, spec, word_index, per_item, rng, excluded)
    return out, excluded


def _sequence_items(items: Any, excluded: Counter) -> Iterator[tuple[Any, str]]:
    """``(row, sequence string)`` of each sequence item; others are counted as ``not_sequence``."""
    for row in items:
        meta = item_meta(row)
        if meta.get("kind") != "sequence" or not meta.get("string"):
            excluded["not_sequence"] += 1
            continue
        yield row, meta["string"]


def _item_candidates(
    tokenizer: Any,
    row: Any,
    string: str,
    vocabulary: Sequence[str],
    spec: PromptSpec,
    word_index: int,
    per_item: int,
    rng: np.random.Generator,
    excluded: Counter,
    o_a: Prompt | None = None,
) -> list[Candidate]:
    words = string.split()
    if not -len(words) <= word_index < len(words):
        return []
    o_a = o_a or object_prompt(tokenizer, row["question"], spec)
    old = words[word_index]
    out = []
    for w in rng.permutation([v for v in vocabulary if v != old]):
        q_b, _ = replace_word(row["question"], string, word_index, str(w))
        o_b = object_prompt(tokenizer, q_b, spec)
        if len(o_b) != len(o_a):
            excluded["unequal_length"] += 1
            continue
        out.append(Candidate(row["id"], word_index, old, str(w), o_a, o_b, row["question"], q_b))
        if len(out) >= per_item:
            break
    return out


def word_order(n_words: int, rng: np.random.Generator) -> list[int]:
    """Word indices tried by ``word_index="any"``: the first word, then the rest in seeded order.

    The first word goes first because small instruct models asked for "the next animals" often
    answer by copying the *first* sequence word (SmolLM2-135M does for ~40% of items), so
    replacing it flips the answer far more often than replacing the last word.
    """
    return [0] + [int(i) for i in 1 + rng.permutation(n_words - 1)]


def _flipping_candidates(
    model: Any,
    items: Any,
    vocabulary: Sequence[str],
    spec: PromptSpec,
    word_index: int | Literal["any"],
    per_item: int,
    max_tries: int,
    rng: np.random.Generator,
    excluded: Counter,
    batch_size: int,
) -> tuple[list[Candidate], list[tuple[str, str]], list[tuple[int, int]], list[tuple[float, float]]]:
    """Candidates whose forced answer changes, searching word positions round by round.

    Round ``r`` tries, for every item without a flip yet, the ``r``-th index of its order
    (``[word_index]`` for an int, :func:`word_order` for ``"any"``, at most ``max_tries``
    indices). Each candidate whose answer does not change is counted as ``same_answer``.
    Returns the flipping candidates, their ``(A, B)`` answers, answer first tokens and O logit
    differences ``(ld_A, ld_B)`` of those two tokens.
    """
    tok = model.tokenizer
    open_items: list[tuple[Any, str, Prompt, list[int]]] = []
    for row, string in _sequence_items(items, excluded):
        order = [word_index] if word_index != "any" else word_order(len(string.split()), rng)[:max_tries]
        open_items.append((row, string, object_prompt(tok, row["question"], spec), order))
    base = _forced_answers(model, [o[2] for o in open_items], vocabulary, spec, batch_size) if open_items else ([], [], [])
    base_of = {o[0]["id"]: (a, f, sc) for o, a, f, sc in zip(open_items, *base)}
    kept: list[Candidate] = []
    answers: list[tuple[str, str]] = []
    firsts: list[tuple[int, int]] = []
    o_lds: list[tuple[float, float]] = []
    for r in range(max(len(o[3]) for o in open_items) if open_items else 0):
        cands = []
        for row, string, o_a, order in open_items:
            if r < len(order):
                cands += _item_candidates(tok, row, string, vocabulary, spec, order[r], per_item, rng, excluded, o_a)
        if not cands:
            break
        ans_b, first_b, scores_b = _forced_answers(model, [c.o_b for c in cands], vocabulary, spec, batch_size)
        flipped = set()
        for c, ab, fb, sb in zip(cands, ans_b, first_b, scores_b):
            aa, fa, sa = base_of[c.item_id]
            if aa == ab:
                excluded["same_answer"] += 1
                continue
            kept.append(c)
            answers.append((aa, ab))
            firsts.append((fa, fb))
            o_lds.append((sa[fa] - sa[fb], sb[fa] - sb[fb]))
            flipped.add(c.item_id)
        open_items = [o for o in open_items if o[0]["id"] not in flipped]
        log.info("word-position round %d: %d candidates, %d flipped, %d items still open", r, len(cands), len(flipped), len(open_items))
    return kept, answers, firsts, o_lds


def _forced_answers(
    model: Any, prompts: Sequence[Prompt], vocabulary: Sequence[str], spec: PromptSpec, batch_size: int
) -> tuple[list[str], list[int], list[dict[int, float]]]:
    """Forced choice over the vocabulary at the first token after the prefill.

    Each label is scored by its first token (one forward per prompt); labels that share a first
    token are indistinguishable here and such pairs are later excluded as ``same_first_token``.
    Returns the answers, their first tokens and each prompt's log-probs of every label's first
    token (the O logit differences of the gap filter are read from these: no second forward).
    """
    tok = model.tokenizer
    labels = label_tokens(tok, list(vocabulary), prompts[0].text, spec.object_prefill)
    lp = next_token_logprobs(
        model.hf_model, [p.input_ids for p in prompts], tok.pad_token_id, batch_size=batch_size
    )
    sub = lp[:, labels.first_ids].double()
    idx = sub.argmax(-1).tolist()
    scores = [dict(zip(labels.first_ids, row)) for row in sub.tolist()]
    return [vocabulary[i] for i in idx], [labels.first_ids[i] for i in idx], scores


def _logit_diffs(model: Any, prompts: Sequence[Prompt], tokens: Sequence[tuple[int, int]], batch_size: int) -> np.ndarray:
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


def _passes(ld_a: float, ld_b: float, min_gap: float, rule: GapRule) -> bool:
    if rule == "both_runs":
        return ld_a > min_gap and -ld_b > min_gap
    return ld_a - ld_b > min_gap


def _filter_pairs(
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
        if not _passes(ld_a, ld_b, min_gap, gap_rule):
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
    ha = _logit_diffs(model, [mp.h_a for mp in h_todo], h_toks, batch_size)
    hb = _logit_diffs(model, [mp.h_b for mp in h_todo], h_toks, batch_size)
    for mp, t, x, y in zip(h_todo, h_toks, ha, hb):
        mp.h_tokens, mp.h_ld = t, (float(x), float(y))
        if _passes(float(x), float(y), min_gap, gap_rule):
            pairs.append(mp)
        else:
            excluded["small_h_gap"] += 1
    return pairs, controls


def _answer_word(cleaned: str, vocabulary: set[str]) -> str | None:
    """The first word of a cleaned response that is a vocabulary word ("1. deer," -> "deer")."""
    words = (w.strip(".,;:!?\"'()").lower() for w in cleaned.split())
    return next((w for w in words if w in vocabulary), None)


def annotate_greedy(
    model: Any,
    pairs: Sequence[MinimalPair],
    task: str,
    prop: Property,
    vocabulary: Sequence[str],
    spec: PromptSpec,
    *,
    max_new_tokens: int = 24,
    batch_size: int = 16,
) -> None:
    """Record on each pair the greedy answers of its O prompts (behaviour's definition).

    Decodes O(P_A) and O(P_B) greedily through :func:`innerprobe.behavior.greedy_responses`
    (memoised per model state, so a behaviour run on the same prompts shares the decode), then
    keeps the first vocabulary word (the answer the model means) and the property value that
    behaviour would score (``extract_with_compliance`` of the prefilled response).
    """
    if not pairs:
        return
    prompts = [p.o_a for p in pairs] + [p.o_b for p in pairs]
    responses = greedy_responses(model, [q.input_ids for q in prompts], max_new_tokens, batch_size)
    prefill = spec.object_prefill_text(task)
    vocab = {w.lower() for w in vocabulary}
    n = len(pairs)
    for k, mp in enumerate(pairs):
        ext_a = extract_with_compliance(prop, prefill + responses[k], "sequence")
        ext_b = extract_with_compliance(prop, prefill + responses[n + k], "sequence")
        mp.greedy_answer_a, mp.greedy_answer_b = _answer_word(ext_a.cleaned, vocab), _answer_word(ext_b.cleaned, vocab)
        mp.greedy_value_a = ext_a.value if ext_a.compliant else None
        mp.greedy_value_b = ext_b.value if ext_b.compliant else None


def build_pairs(
    model: Any,
    task: str = "animals",
    prop: str | Property = "second_character",
    *,
    n_pairs: int = 16,
    n_items: int = 200,
    split: str = "test",
    word_index: int | Literal["any"] = "any",
    per_item: int = 2,
    max_tries: int = 4,
    min_gap: float = 0.5,
    gap_rule: GapRule = "difference",
    spec: PromptSpec = PromptSpec(),
    seed: int = 0,
    batch_size: int = 16,
    n_controls: int | None = None,
    items: Any = None,
    chunk_size: int | None = 64,
    greedy_max_new_tokens: int = 24,
) -> PairSet:
    """Build up to ``n_pairs`` property pairs (and up to ``n_controls`` control pairs).

    Items are worked through in chunks of ``chunk_size`` (``None``: all at once): each chunk is
    searched and filtered, and the search stops once both budgets are full, so a large
    ``n_items`` costs only what the budgets need. ``PairSet.settings["n_items_used"]`` says how
    many items were searched; exclusion counts cover those items only.

    Args:
        task: a sequence task (``animals``, ``colors``...; see ``TASKS``).
        prop: the property of the answer the hypothetical asks about.
        n_items: items drawn from ``split`` (at most); ``per_item`` replacement words tried per item.
        word_index: which sequence word is replaced (``-1``: the last); ``"any"`` (default)
            searches up to ``max_tries`` word positions per item (:func:`word_order`) and stops
            at the first position that flips the model's answer.
        min_gap, gap_rule: the logit-difference gap filter (see the module docstring).
        n_controls: control-pair budget (default: ``n_pairs``).
        greedy_max_new_tokens: length of the greedy decode each kept pair's O prompts get
            (:func:`annotate_greedy`; behaviour's default ``object_max_new_tokens``, so the
            decode is shared with a behaviour run of the same prompts).

    Raises:
        DataError: no property pair survives the filters (the counts are in the message).
    """
    if task not in TASKS or TASKS[task].vocabulary is None:
        valid = [k for k, t in TASKS.items() if t.vocabulary]
        raise DataError(f"task {task!r} has no vocabulary for symmetric replacement; valid: {valid}")
    if word_index != "any" and not isinstance(word_index, int):
        raise DataError(f"word_index must be an int or 'any', got {word_index!r}")
    if chunk_size is not None and chunk_size < 1:
        raise DataError(f"chunk_size must be a positive item count or None, got {chunk_size}")
    prop = get_property(prop) if isinstance(prop, str) else prop
    vocab = list(TASKS[task].vocabulary)
    n_controls = n_pairs if n_controls is None else n_controls
    rng = np.random.default_rng(seed)
    excluded: Counter = Counter()
    items = items if items is not None else load_items(task, n=n_items, split=split, seed=seed)
    step = chunk_size or len(items)
    pairs: list[MinimalPair] = []
    controls: list[MinimalPair] = []
    n = n_used = 0
    for lo in range(0, len(items), step):
        chunk = items.select(range(lo, min(lo + step, len(items)))) if hasattr(items, "select") else items[lo : lo + step]
        cands, answers, firsts, o_lds = _flipping_candidates(
            model, chunk, vocab, spec, word_index, per_item, max_tries, rng, excluded, batch_size
        )
        n_used += len(chunk)
        n += len(cands)
        more_p, more_c = _filter_pairs(
            model, task, prop, vocab, cands, answers, firsts, o_lds, min_gap, gap_rule, spec, batch_size, excluded,
            need_pairs=len(pairs) < n_pairs,
        )
        pairs += more_p
        controls += more_c
        if len(pairs) >= n_pairs and len(controls) >= n_controls:
            break
    n_flipped = n
    n += excluded["same_answer"]
    if not n:
        raise DataError(f"no candidate pairs: excluded {dict(excluded)}")
    if not n_flipped:
        raise DataError(f"no pair changes the model's answer; excluded {dict(excluded)}")
    settings = {
        "n_items": len(items), "n_items_used": n_used, "chunk_size": chunk_size, "split": split,
        "word_index": word_index, "per_item": per_item, "max_tries": max_tries,
        "min_gap": min_gap, "gap_rule": gap_rule, "seed": seed, "spec": spec.to_dict(),
        "greedy_max_new_tokens": greedy_max_new_tokens,
    }
    result = PairSet(
        task, prop.name, pairs[:n_pairs], controls[:n_controls],
        {r: int(excluded.get(r, 0)) for r in EXCLUSION_REASONS}, n, settings,
    )
    result.excluded["over_budget"] = int(excluded["over_budget"]) + max(0, len(pairs) - n_pairs)
    result.excluded["controls_over_budget"] = max(0, len(controls) - len(result.controls))
    log.info("pairs: %d property, %d control of %d candidates from %d items; excluded %s",
             len(result.pairs), len(result.controls), n, n_used, result.excluded)
    if not result.pairs:
        raise DataError(
            f"empty pair set after filtering ({n} candidates from {n_used} items; excluded {result.excluded}); "
            "try more items (n_items), a smaller min_gap or gap_rule='difference'"
        )
    annotate_greedy(model, result.pairs + result.controls, task, prop, vocab, spec,
                    max_new_tokens=greedy_max_new_tokens, batch_size=batch_size)
    agree = result.agreement()
    if agree["n"] and agree["n_disagree"]:
        log.warning("pairs: forced-choice and greedy object answers disagree on %d of %d pairs (%s)",
                    agree["n_disagree"], agree["n"], agree)
    return result


# --------------------------------------------------------------------------- patch positions


def p_end(tokenizer: Any, prompt: Any, question: str) -> int:
    """Token index one past the question text inside an object prompt."""
    enc = tokenizer(prompt.text, add_special_tokens=False, return_offsets_mapping=True)
    q = question.rstrip()
    start = prompt.text.find(q)
    return char_span_to_tokens([tuple(o) for o in enc["offset_mapping"]], start, start + len(q))[1]


def _aligned(o_ids: list[int], o_end: int, h_ids: list[int], h_end: int, k: int) -> tuple[list[int], list[int]]:
    """Up to ``k`` (O position, H position) pairs of identical tokens, walking back from the P ends."""
    read, write = [], []
    for d in range(1, 4 * k):
        i, j = o_end - d, h_end - d
        if i < 0 or j < 0 or len(read) >= k:
            break
        if o_ids[i] == h_ids[j]:
            read.append(i)
            write.append(j)
    return read[::-1], write[::-1]


def cell_names(k: int, last: int) -> list[str]:
    """Column names of the patch grids: the replaced word, the last ``k`` tokens of P, the end."""
    return ["word"] + [f"P{d}" for d in range(-k, 0)] + [str(d) for d in range(-last, 0)]


def grid_cells(span: tuple[int, int], p_end: int, n: int, k: int, last: int) -> list[tuple[int, ...]]:
    """One pair's patch cells (absolute positions), in the order of :func:`cell_names`.

    The replaced word is one cell holding *all* its tokens (its place differs between pairs and
    it may span several tokens); then each of the last ``k`` tokens of P (ending at ``p_end``,
    exclusive) and each of the last ``last`` prompt positions.
    """
    if not 0 <= span[0] < span[1] <= n:
        raise DataError(f"replaced-word span {span} is empty or outside a prompt of {n} tokens")
    if not k <= p_end <= n or last > n:
        raise DataError(f"--p-tokens {k} / --last {last} do not fit a prompt of {n} tokens (P ends at {p_end})")
    return [tuple(range(*span))] + [(p,) for p in range(p_end - k, p_end)] + [(n + d,) for d in range(-last, 0)]


def transplant_positions(
    o_ids: list[int], o_span: tuple[int, int], o_end: int, h_ids: list[int], h_span: tuple[int, int], h_end: int, k: int
) -> tuple[list[int], list[int], bool]:
    """``(O read positions, H write positions, word included)`` for the O→H transplant.

    The replaced word's tokens of O map one-to-one onto its tokens in H's quoted P (when both
    spans have the same length; else the word is left out and ``False`` returned), plus up to
    ``k`` identical tokens walking back from the P ends (:func:`_aligned`).
    """
    pairs: dict[int, int] = {}
    word = (o_span[1] - o_span[0]) == (h_span[1] - h_span[0]) > 0
    if word:
        pairs.update(zip(range(*h_span), range(*o_span)))
    for i, j in zip(*_aligned(o_ids, o_end, h_ids, h_end, k)):
        pairs.setdefault(j, i)
    write = sorted(pairs)
    return [pairs[j] for j in write], write, word
