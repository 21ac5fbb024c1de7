"""The pair search: which word replacements flip *this* model's answer, and survive the filters.

:func:`build_pairs` turns items into a :class:`~innerprobe.patching.pairs.PairSet` in four steps:

1. **Candidates** (:mod:`innerprobe.patching.candidates`): same-token-length replacements of one
   sequence word.
2. **Flips.** The object answer of O(P_A) and O(P_B) is the forced choice over the task
   vocabulary at the first token after the prefill; a candidate whose answer does not change is
   counted as ``same_answer``. Which word to replace is searched, not fixed
   (``word_index="any"``): SmolLM2-135M asked for "the next animals" mostly copies a sequence
   word, most often the *first*, so replacing the last word left ~97% of answers unchanged. Each
   item tries the first word, then other positions in a seeded order
   (:func:`~innerprobe.patching.candidates.word_order`), until its answer flips.
3. **Filters.** Answers that share a first token, or have no property value, are dropped; a
   **logit-difference gap filter** drops pairs whose clean and corrupt runs barely differ on the
   metric (normalised recovery divides by that gap). With ``gap_rule="both_runs"`` each run must
   prefer its own label by more than ``min_gap`` (``ld_A > min_gap`` and ``-ld_B > min_gap``);
   with ``"difference"`` only ``ld_A - ld_B > min_gap`` is needed. Property pairs also need H
   prompts of equal length and an H gap on the two property labels.
4. **Greedy answers** (:func:`annotate_greedy`): each kept pair records behaviour's greedy
   answers, so the forced-vs-greedy agreement can be reported.

Every exclusion is counted by reason in the :class:`~innerprobe.patching.pairs.PairSet`. Items
come from a task name or from the caller (a ``datasets.Dataset`` or a list of dicts, read by
:func:`~innerprobe.protocol.tasks.loaders.as_items`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from datasets import Dataset

from innerprobe.behavior.elicitation import greedy_responses
from innerprobe.behavior.inference import next_token_logprobs
from innerprobe.core.errors import DataError
from innerprobe.patching.candidates import Candidate, item_candidates, sequence_items, word_order
from innerprobe.patching.filters import filter_pairs
from innerprobe.patching.pairs import EXCLUSION_REASONS, GapRule, MinimalPair, PairSet
from innerprobe.protocol.prompts import Prompt, PromptSpec, label_tokens, object_prompt
from innerprobe.protocol.properties import Property, extract_with_compliance, get_property
from innerprobe.protocol.tasks import TASKS
from innerprobe.protocol.tasks.loaders import as_items

log = logging.getLogger(__name__)

Items = str | Dataset | Sequence[Mapping[str, Any]]
"""Where items come from: a task name (or file, folder, Hub id), a Dataset or a list of dicts."""


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
    for row, string in sequence_items(items, excluded):
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
                cands += item_candidates(tok, row, string, vocabulary, spec, order[r], per_item, rng, excluded, o_a)
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


def pair_tasks() -> list[str]:
    """The tasks whose items can be paired: sequence tasks with a vocabulary to replace words from."""
    return [k for k, t in TASKS.items() if t.vocabulary]


def check_pair_task(task: str) -> None:
    """``DataError`` naming the valid tasks unless ``task`` has a replacement vocabulary."""
    if task not in TASKS or TASKS[task].vocabulary is None:
        raise DataError(f"task {task!r} has no vocabulary for symmetric replacement; valid: {pair_tasks()}")


def _resolve_items(task: str | None, items: Items | None, n_items: int, split: str, seed: int) -> Dataset:
    """The items to search: ``items`` (a Dataset or list whole, a name's first ``n_items``) or ``task``'s."""
    if items is None:
        return as_items(task or "animals", n=n_items, split=split, seed=seed)
    if isinstance(items, str):
        return as_items(items, n=n_items, split=split, seed=seed)
    return as_items(items, split=split)


def _items_task(items: Dataset) -> str:
    """The one task the items belong to (their ``task`` column), for its vocabulary and wording."""
    names = sorted(set(items["task"]))
    if len(names) != 1:
        raise DataError(f"items of several tasks {names}: pass task= one of {pair_tasks()} for the vocabulary")
    return names[0]


def build_pairs(
    model: Any,
    task: str | None = None,
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
    items: Items | None = None,
    chunk_size: int | None = 64,
    greedy_max_new_tokens: int = 24,
) -> PairSet:
    """Build up to ``n_pairs`` property pairs (and up to ``n_controls`` control pairs).

    Items are worked through in chunks of ``chunk_size`` (``None``: all at once): each chunk is
    searched and filtered, and the search stops once both budgets are full, so a large
    ``n_items`` costs only what the budgets need. ``PairSet.settings["n_items_used"]`` says how
    many items were searched; exclusion counts cover those items only.

    Items are either drawn from ``task`` (``n_items`` of ``split`` with ``seed``, as
    :func:`~innerprobe.protocol.tasks.load_items` draws them) or given as ``items``: a
    ``datasets.Dataset`` or a list of dicts (item records, read by
    :func:`~innerprobe.protocol.tasks.loaders.as_items`; all of them are searched, in order), or
    a task name, file or Hub id (its first ``n_items``). Only items of kind ``sequence`` can be
    paired; others are counted as ``not_sequence``.

    Args:
        task: the sequence task whose vocabulary supplies the replacement words and whose wording
            the hypothetical uses (``animals``, ``colors``...: a task of ``TASKS`` with a
            vocabulary). Default: the items' own ``task`` (it must be one such task), else
            ``animals``.
        prop: the property of the answer the hypothetical asks about.
        n_items: items drawn from ``task`` (at most); ``per_item`` replacement words tried per item.
        items: the caller's items (see above) instead of drawing them from ``task``.
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
    items = _resolve_items(task, items, n_items, split, seed)
    task = task or _items_task(items)
    check_pair_task(task)
    if word_index != "any" and not isinstance(word_index, int):
        raise DataError(f"word_index must be an int or 'any', got {word_index!r}")
    if chunk_size is not None and chunk_size < 1:
        raise DataError(f"chunk_size must be a positive item count or None, got {chunk_size}")
    prop = get_property(prop) if isinstance(prop, str) else prop
    vocab = list(TASKS[task].vocabulary)
    n_controls = n_pairs if n_controls is None else n_controls
    rng = np.random.default_rng(seed)
    excluded: Counter = Counter()
    step = chunk_size or len(items)
    pairs: list[MinimalPair] = []
    controls: list[MinimalPair] = []
    n = n_used = 0
    for lo in range(0, len(items), step):
        chunk = items.select(range(lo, min(lo + step, len(items))))
        cands, answers, firsts, o_lds = _flipping_candidates(
            model, chunk, vocab, spec, word_index, per_item, max_tries, rng, excluded, batch_size
        )
        n_used += len(chunk)
        n += len(cands)
        more_p, more_c = filter_pairs(
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


__all__ = ["Items", "annotate_greedy", "build_pairs", "check_pair_task", "pair_tasks"]
