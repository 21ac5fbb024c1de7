"""Candidate pairs: same-token-length word replacements in a sequence item, behaviour unchecked.

Patching compares two runs position by position, so the two prompts of a pair must tokenise to
the same length. A candidate replaces word ``i`` of an item's sequence (``meta["string"]``) by
another vocabulary word and is kept only when the object prompt keeps its token length *in
context* (a word can tokenise differently after a space or at the start of a line); every other
replacement is counted as ``unequal_length``, and items that are not sequences as
``not_sequence``.

:func:`word_token_span` then finds the replaced word's tokens in the aligned prompts (all of
them: `` be`` in `` bear`` / `` beaver`` belongs to the word even though the two prompts share
it), and :func:`word_order` is the order in which :func:`~innerprobe.patching.search.build_pairs`
tries word positions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from innerprobe.core.errors import DataError
from innerprobe.protocol.prompts import (
    Prompt,
    PromptSpec,
    _tokenize,
    char_span_to_tokens,
    object_prompt,
)
from innerprobe.protocol.tasks import item_meta


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
    """One same-length replacement: item, word position, the two words, prompts and questions."""

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

    The raw material of :func:`~innerprobe.patching.search.build_pairs` without the model's
    answers: up to ``per_item`` replacement words per item whose object prompt tokenises to the
    original length (for benchmarks and hand-built pairs). Returns the candidates and the
    exclusion counts.
    """
    rng = np.random.default_rng(seed)
    excluded: Counter = Counter()
    out: list[Candidate] = []
    for row, string in sequence_items(items, excluded):
        out += item_candidates(tokenizer, row, string, vocabulary, spec, word_index, per_item, rng, excluded)
    return out, excluded


def sequence_items(items: Any, excluded: Counter) -> Iterator[tuple[Any, str]]:
    """``(row, sequence string)`` of each sequence item; others are counted as ``not_sequence``."""
    for row in items:
        meta = item_meta(row)
        if meta.get("kind") != "sequence" or not meta.get("string"):
            excluded["not_sequence"] += 1
            continue
        yield row, meta["string"]


def item_candidates(
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
    """Up to ``per_item`` same-length replacements of word ``word_index`` of one item.

    Replacement words are tried in a ``rng`` permutation of the vocabulary (the original word
    left out); each whose object prompt changes token length is counted as ``unequal_length``.
    ``o_a``: the item's object prompt when the caller has it already.
    """
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


__all__ = ["Candidate", "item_candidates", "replace_word", "sequence_items", "word_order", "word_replacements",
           "word_token_span"]
