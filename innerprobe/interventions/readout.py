"""Forced choice read off one forward, with or without interventions installed.

The steering and ablation experiments compare many runs of the same prompts (unsteered, along a
direction, along a random vector, ablated, ...), so each reading must be cheap and exactly
comparable. A reading is the log-probability of each candidate label's **first token** after
the prompt (one forward per prompt, last position only): labels whose first token is shared
with another label (SmolLM2 spells " 7" as a space, then the digit) are dropped from the choice
and recorded, never scored ambiguously. Because no key/value cache is extended, an intervention
sees exactly one fresh forward per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from innerprobe.behavior.inference import next_token_logprobs
from innerprobe.core.errors import DataError
from innerprobe.interventions.hooks import Intervention, intervene
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, label_tokens

__all__ = ["Choice", "choice_logprobs", "choice_tokens"]


@dataclass(frozen=True)
class Choice:
    """Candidate labels, the first token of each, and the labels left out (shared first token)."""

    labels: tuple[str, ...]
    token_ids: tuple[int, ...]
    dropped: tuple[str, ...] = ()

    def index(self, label: str | None) -> int | None:
        return self.labels.index(label) if label in self.labels else None


def choice_tokens(tokenizer: Any, labels: Sequence[str], context: str, prefill: str | None) -> Choice:
    """The first token of each label as it continues ``context``; shared first tokens are dropped."""
    lt = label_tokens(tokenizer, list(labels), context, prefill)
    counts = Counter(lt.first_ids)
    keep = [(lab, t) for lab, t in zip(lt.labels, lt.first_ids) if counts[t] == 1]
    if len(keep) < 2:
        raise DataError(f"fewer than two labels of {list(labels)[:8]}... have a first token of their own")
    return Choice(tuple(lab for lab, _ in keep), tuple(t for _, t in keep),
                  tuple(lab for lab, t in zip(lt.labels, lt.first_ids) if counts[t] > 1))


def choice_logprobs(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    choice: Choice,
    interventions: Sequence[Intervention] = (),
    *,
    batch_size: int = 16,
) -> Float[np.ndarray, "n n_labels"]:
    """log p(first token of each label | prompt), with ``interventions`` installed (none: plain)."""
    rows = [p.input_ids for p in prompts]
    pad = model.tokenizer.pad_token_id
    if not interventions:
        lp = next_token_logprobs(model.hf_model, rows, pad, batch_size=batch_size)
    else:
        with intervene(model, *interventions, prompts=prompts):
            lp = next_token_logprobs(model.hf_model, rows, pad, batch_size=batch_size)
    return lp[:, list(choice.token_ids)].double().numpy()
