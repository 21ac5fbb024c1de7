"""Where a pair is patched: the grid's cells, and the O→H transplant's aligned positions.

A patching grid over whole prompts spends most of its cells on template tokens that are equal in
both runs. The study's grids patch *cells* instead (:func:`grid_cells`, named by
:func:`cell_names`):

* ``word``: the replaced word, all its tokens at once (its place differs between pairs and it
  may span several tokens, so one cell per pair, not one per position);
* ``P-k`` … ``P-1``: each of the last ``k`` tokens of P, the question text (ending at
  :func:`p_end` in O, at ``positions["quote_end"]`` in H, where P is quoted);
* ``-last`` … ``-1``: each of the last prompt positions (the prefill; ``-1`` reads the answer).

O and H share the first ``1 + k`` columns (the word and the last tokens of P), which is what the
O-vs-H comparison lines up. :func:`transplant_positions` aligns the same tokens between an O
prompt and an H prompt for writing O's residual into H.
"""

from __future__ import annotations

from typing import Any

from innerprobe.core.errors import DataError
from innerprobe.protocol.prompts import char_span_to_tokens


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


__all__ = ["cell_names", "grid_cells", "p_end", "transplant_positions"]
