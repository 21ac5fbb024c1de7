"""The answer subspace: the span of the object answer's class means at ``o_last``, per site.

For each site (see :mod:`innerprobe.zoo.hooks`), the residual at the last O(P) token is averaged
per answer word; the centred class means span the directions along which the residual *encodes
which answer* the model is about to give (rank ≤ #classes − 1; the same construction as the
battery's E6 answer subspace, here computed on the HF model without the store). Its orthonormal
basis comes from an SVD of the centred means, keeping directions whose singular value is above
``1e-3`` of the largest (a site where every class mean is equal, such as the prefill's own token
embedding at site 0, gets rank 0: nothing to remove).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.zoo.data import pad_batch
from innerprobe.zoo.hooks import capture_sites

RELATIVE_TOL = 1e-3


@torch.no_grad()
def last_site_acts(model, rows: Sequence[list[int]], pad_id: int, batch_size: int = 64) -> Float[Tensor, "n site d"]:  # noqa: ANN001
    """Each site's residual at each row's last token (one padded forward per batch)."""
    chunks = []
    for start in range(0, len(rows), batch_size):
        ids, mask, last = pad_batch(list(rows[start : start + batch_size]), pad_id)
        with capture_sites(model) as sites:
            model(input_ids=ids, attention_mask=mask)
        at = torch.arange(ids.shape[0])
        chunks.append(torch.stack([s[at, last] for s in sites], dim=1))
    return torch.cat(chunks).float()


def class_mean_basis(acts: Float[Tensor, "n d"], labels: Sequence[str], max_rank: int) -> Float[Tensor, "k d"]:
    """Orthonormal rows spanning the centred class means of ``acts`` (module docstring)."""
    classes = sorted(set(labels))
    lab = list(labels)
    means = torch.stack([acts[[i for i, y in enumerate(lab) if y == c]].mean(0) for c in classes])
    centred = (means - means.mean(0)).double()
    if len(classes) < 2:
        return torch.zeros((0, acts.shape[1]))
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    keep = int((s > RELATIVE_TOL * max(float(s.max()), 1e-30)).sum())
    return vh[: min(keep, max_rank)].float().contiguous()


def answer_subspaces(
    model, object_rows: Sequence[list[int]], answers: Sequence[str], pad_id: int, max_rank: int  # noqa: ANN001
) -> list[Float[Tensor, "k d"]]:
    """One answer-subspace basis per site from O prompts (without their answers) and answer words."""
    acts = last_site_acts(model, object_rows, pad_id)
    return [class_mean_basis(acts[:, s], answers, max_rank) for s in range(acts.shape[1])]


__all__ = ["answer_subspaces", "class_mean_basis", "last_site_acts"]
