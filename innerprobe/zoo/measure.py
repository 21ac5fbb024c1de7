"""Forward-pass measurements the route check is made of (HF model, no TransformerLens, no battery).

* :func:`object_answers`: the word the model puts first after O(P)'s prefill (argmax over the
  task's answer words' first tokens; each is one token in the zoo tokenizer).
* :func:`self_predictions`: the property label argmax at ``h_last`` of H(P, property), with an
  optional per-site subspace projected out after the quoted P (:mod:`innerprobe.zoo.hooks`).
* :func:`nearest_mean`: which O class mean (at the final site) each H residual at ``h_last`` is
  nearest to: whether H carries O's answer code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.zoo.data import Encoded, pad_batch
from innerprobe.zoo.hooks import Projection, capture_sites, positions_from, project_out


@torch.no_grad()
def _last_logits(model, rows: Sequence[list[int]], pad_id: int, starts=None, bases=None):  # noqa: ANN001, ANN202
    ids, mask, last = pad_batch(list(rows), pad_id)
    at = torch.arange(ids.shape[0])
    if bases is None:
        return model(input_ids=ids, attention_mask=mask).logits[at, last]
    where = positions_from(starts, [len(r) for r in rows], ids.shape[1])
    with project_out(model, Projection(bases, where)):
        return model(input_ids=ids, attention_mask=mask).logits[at, last]


def object_answers(model, encoded: Sequence[Encoded], word_ids: Sequence[int], words: Sequence[str],  # noqa: ANN001
                   pad_id: int, bases=None) -> list[str]:  # noqa: ANN001
    """The answer word of each O(P) (``bases``: with the subspace removed at every position)."""
    rows = [e.object_ids[: e.object_prompt_len] for e in encoded]
    logits = _last_logits(model, rows, pad_id, [0] * len(rows), bases)
    return [words[i] for i in logits[:, list(word_ids)].argmax(-1).tolist()]


def self_predictions(model, encoded: Sequence[Encoded], label_ids: Sequence[int], labels: Sequence[str],  # noqa: ANN001
                     pad_id: int, bases=None) -> list[str]:  # noqa: ANN001
    """The forced-choice property label of each H(P, property), optionally with ``bases`` projected out."""
    logits = _last_logits(model, [e.hypo_ids for e in encoded], pad_id, [e.after_quote for e in encoded], bases)
    return [labels[i] for i in logits[:, list(label_ids)].argmax(-1).tolist()]


@torch.no_grad()
def hypo_last_acts(model, encoded: Sequence[Encoded], pad_id: int) -> Float[Tensor, "n site d"]:  # noqa: ANN001
    """Each site's residual at ``h_last`` of H(P, property)."""
    ids, mask, last = pad_batch([e.hypo_ids for e in encoded], pad_id)
    with capture_sites(model) as sites:
        model(input_ids=ids, attention_mask=mask)
    at = torch.arange(ids.shape[0])
    return torch.stack([s[at, last] for s in sites], dim=1).float()


def nearest_mean(o_acts: Float[Tensor, "n d"], o_labels: Sequence[str], h_acts: Float[Tensor, "m d"]) -> list[str]:
    """The O answer class whose (centred, normalised) mean is most cosine-similar to each H residual."""
    classes = sorted(set(o_labels))
    means = torch.stack([o_acts[[i for i, y in enumerate(o_labels) if y == c]].mean(0) for c in classes])
    centre = o_acts.mean(0)
    m = torch.nn.functional.normalize(means - centre, dim=-1)
    h = torch.nn.functional.normalize(h_acts - h_acts.mean(0), dim=-1)
    return [classes[i] for i in (h @ m.T).argmax(-1).tolist()]


__all__ = ["hypo_last_acts", "nearest_mean", "object_answers", "self_predictions"]
