"""Questions with known answers, to see whether self-training amplifies a model's errors.

Self-training feeds a model its own answers back. If those answers are wrong, a loop can make
the model *more* sure of them; on the object tasks of the protocol (name an animal, continue a
sequence) nothing is right or wrong, so errors cannot be seen there. These tasks have one
correct answer each, generated from a seed:

* ``addition``: "What is 23 + 48?", answer the sum (two-digit operands);
* ``parity``: "Is 37 even or odd?", answer ``even`` or ``odd``.

The model answers greedily in a fresh chat (empty system message, as in every elicitation); the
first integer (addition) or the first ``even``/``odd`` (parity) of the answer is compared with
the truth (an echoed "a + b = " is skipped). An unreadable answer counts as wrong. :func:`ground_truth_accuracy` returns the
per-question table; accuracy over rounds is read in :mod:`innerprobe.training.rounds_measure`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from innerprobe.behavior.inference import generate
from innerprobe.core.errors import check_choice
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import render_chat

GROUND_TRUTH_TASKS = ("addition", "parity")
_INT = re.compile(r"-?\d+")
_PARITY = re.compile(r"\b(even|odd)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Question:
    """One question with its known answer."""

    task: str
    id: str
    question: str
    answer: str


def _addition(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"What is {a} + {b}? Respond only with the number.", str(a + b)


def _parity(rng: random.Random) -> tuple[str, str]:
    x = rng.randint(10, 999)
    return f'Is {x} even or odd? Respond only with "even" or "odd".', "even" if x % 2 == 0 else "odd"


_DRAW: dict[str, Callable[[random.Random], tuple[str, str]]] = {"addition": _addition, "parity": _parity}


def questions(task: str, n: int, *, seed: int = 0) -> list[Question]:
    """``n`` seeded questions of ``task`` (the same for the same arguments)."""
    check_choice("ground-truth task", task, GROUND_TRUTH_TASKS)
    rng = random.Random(f"{task}:{seed}")
    out = []
    for i in range(n):
        q, a = _DRAW[task](rng)
        out.append(Question(task, f"{task}-{seed}-{i:04d}", q, a))
    return out


def read_answer(task: str, response: str) -> str | None:
    """The answer a response gives: its first integer (addition) or first even/odd (parity).

    A response that echoes the sum ("65 + 88 = 153") is read after its first ``=``.
    """
    if task == "addition" and "=" in response:
        response = response.split("=", 1)[1]
    m = (_INT if task == "addition" else _PARITY).search(response)
    return m.group(0).lower() if m else None


def ground_truth_accuracy(
    model: LoadedModel,
    tasks: tuple[str, ...],
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 16,
    max_new_tokens: int = 16,
) -> pd.DataFrame:
    """One row per question: ``task, id, answer, response, given, correct`` (greedy answers).

    16 new tokens: SmolLM2 spells digits one token each and often echoes "65 + 88 = " before the
    sum, so 8 tokens cut every addition answer off before it began.
    """
    rows = []
    tok = model.tokenizer
    for task in tasks:
        qs = questions(task, n, seed=seed)
        ids = [tok(render_chat(tok, q.question, "", None), add_special_tokens=False)["input_ids"] for q in qs]
        gen = generate(model.hf_model, tok, ids, max_new_tokens=max_new_tokens, batch_size=batch_size)
        for q, g in zip(qs, gen):
            given = read_answer(task, g[0])
            rows.append({"task": task, "id": q.id, "answer": q.answer, "response": g[0], "given": given,
                         "correct": given == q.answer})
    return pd.DataFrame(rows, columns=["task", "id", "answer", "response", "given", "correct"])


__all__ = ["GROUND_TRUTH_TASKS", "Question", "ground_truth_accuracy", "questions", "read_answer"]
