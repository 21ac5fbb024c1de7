"""Training rows as token ids: render each chat as evaluation does, mask all but the answer.

Each row (see :mod:`innerprobe.training.data`) is rendered with the *trained* model's
:func:`~innerprobe.protocol.prompts.render_chat`, the layout
:func:`~innerprobe.protocol.prompts.hypothetical_prompt` builds at evaluation, assistant prefill
included, and the answer is appended with :func:`~innerprobe.protocol.prompts.label_tokens`, so
the trained tokens are exactly the ones forced-choice evaluation scores. Prompt and padding
positions carry the label ``-100`` (:data:`IGNORE`): the loss (:func:`answer_loss`) is the mean
cross-entropy over answer tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from jaxtyping import Int
from torch import Tensor

from innerprobe.behavior.inference import left_pad
from innerprobe.core.errors import DataError
from innerprobe.protocol.prompts import label_tokens, render_chat

IGNORE = -100


@dataclass
class Encoded:
    """One tokenised row: prompt + answer ids, labels ``-100`` except on the answer tokens."""

    input_ids: list[int]
    labels: list[int]



def _split_messages(messages: list[dict[str, str]], prefill: str) -> tuple[str | None, str]:
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    user = next((m["content"] for m in messages if m["role"] == "user"), None)
    if user is None:
        raise DataError(f"training row without a user message: {messages!r}")
    return system, user


def encode_row(tokenizer: Any, user: str, system: str | None, prefill: str, completion: str) -> Encoded:
    """Render one chat row as evaluation does and mask everything but the answer tokens."""
    text = render_chat(tokenizer, user, system, prefill or None)
    prompt_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    answer = list(label_tokens(tokenizer, [completion], text, prefill or None).token_ids[0])
    return Encoded(prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer)


def encode_dataset(tokenizer: Any, data: Dataset) -> list[Encoded]:
    """Tokenise every row of a training Dataset (columns messages, completion, prefill)."""
    if len(data) == 0:
        raise DataError("empty training data")
    missing = {"messages", "completion"} - set(data.column_names)
    if missing:
        raise DataError(f"training data lacks columns {sorted(missing)} (has {data.column_names})")
    out = []
    for row in data:
        prefill = row.get("prefill") or ""
        system, user = _split_messages(row["messages"], prefill)
        out.append(encode_row(tokenizer, user, system, prefill, row["completion"]))
    return out


def collate(
    rows: list[Encoded], pad_id: int
) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"], Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """Left-pad a batch: ``(input_ids, attention_mask, position_ids, labels)``.

    Left padding puts every answer at the end of its row, so the LM head only has to run on the
    last ``max answer length + 1`` positions (see :func:`answer_loss`). Padding is masked out of
    attention and carries label ``-100``.
    """
    ids, mask, pos = left_pad([r.input_ids for r in rows], pad_id)
    labels = torch.full(ids.shape, IGNORE, dtype=torch.long)
    width = ids.shape[1]
    for i, r in enumerate(rows):
        labels[i, width - len(r.labels) :] = torch.tensor(r.labels)
    return ids, mask, pos, labels


def answer_loss(
    model: Any,
    ids: Int[Tensor, "batch seq"],
    mask: Int[Tensor, "batch seq"],
    pos: Int[Tensor, "batch seq"],
    labels: Int[Tensor, "batch seq"],
) -> Tensor:
    """Mean next-token cross-entropy over the answer tokens (labels != -100) of a left-padded batch.

    Only the last ``k + 1`` positions' logits are computed (``k`` = longest answer): the logit at
    position t predicts token t+1, and no earlier position has a target. With a 262k-token
    vocabulary (gemma) this removes most of the step's cost.
    """
    answer_cols = (labels != IGNORE).any(0).nonzero()
    if answer_cols.numel() == 0:
        raise DataError("a batch without answer tokens (all labels are -100)")
    k = labels.shape[1] - int(answer_cols.min())
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=k + 1).logits
    pred = logits[:, :-1].float()
    target = labels[:, -k:]
    return torch.nn.functional.cross_entropy(
        pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=IGNORE
    )


__all__ = ["IGNORE", "Encoded", "answer_loss", "collate", "encode_dataset", "encode_row"]
