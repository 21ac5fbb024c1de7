"""Concept vectors: the direction a word writes into the residual stream at one layer.

**Method** (Lindsey 2026, "Emergent introspective awareness"; the replications' recipe). For a
concept word ``w`` render a few *carrier* sentences that contain it ("Tell me about {w}.", ...)
as chat user turns, read the residual stream ``blocks.{l}.hook_{site}`` at the last prompt token
of each (where the model has read the whole turn and is about to answer), and average:
``m(w) = mean_c h_l(carrier_c(w))``. Do the same for a *baseline* of other words and subtract
their mean: ``v(w) = m(w) − mean_b m(b)``. The subtraction removes what every carrier sentence
shares (the template, the chat scaffolding, the "a noun is being discussed" direction), leaving
what is specific to ``w``. The vector is added at the same hook point it was read from, so
``α·v`` is a push of ``α`` times the word's own typical displacement.

Every :class:`ConceptSet` records its provenance (model fingerprint, layer, site, carriers,
baseline words, readout position) and each vector's norm; :func:`random_like` draws
norm-matched random directions, the control every injection is reported beside.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.behavior.inference import left_pad
from innerprobe.core.errors import DataError
from innerprobe.interventions.hooks import SITES
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import render_chat

log = logging.getLogger(__name__)

CARRIERS: tuple[str, ...] = (
    "Tell me about {w}.",
    "I keep thinking about {w}.",
    "Write one sentence about {w}.",
    "What comes to mind when you hear the word {w}?",
)
"""Carrier sentences; ``{w}`` is replaced by the concept (or baseline) word."""

BASELINE_WORDS: tuple[str, ...] = (
    "table", "window", "paper", "street", "garden", "number", "morning", "teacher", "market", "bottle",
    "mountain", "pencil", "doctor", "engine", "blanket", "island", "ladder", "mirror", "orange", "village",
)
"""Baseline words whose mean carrier residual is subtracted (disjoint from the concepts)."""

CONCEPT_WORDS: tuple[str, ...] = (
    "ocean", "fire", "music", "bread", "castle", "snow", "dog", "money", "rain", "gold",
)
"""Default concept words (single tokens after a space in SmolLM2's vocabulary)."""


@dataclass
class ConceptSet:
    """Concept vectors ``[n_concepts, d_model]`` for ``words``, read at ``layer`` / ``site``."""

    words: list[str]
    vectors: Float[Tensor, "concept d_model"]
    layer: int
    site: str = "resid_pre"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise DataError(f"{len(self.words)} words but vectors of shape {tuple(self.vectors.shape)}")
        if not torch.isfinite(self.vectors).all():
            raise DataError("concept vectors have non-finite entries (NaN or inf)")

    @property
    def norms(self) -> list[float]:
        return [float(x) for x in self.vectors.norm(dim=-1)]

    def vector(self, word: str) -> Float[Tensor, " d_model"]:
        if word not in self.words:
            raise DataError(f"no concept vector for {word!r}; concepts: {', '.join(self.words)}")
        return self.vectors[self.words.index(word)]

    def subset(self, words: Sequence[str]) -> ConceptSet:
        """The vectors of ``words`` only (a held-out split), same provenance."""
        idx = [self.words.index(w) if w in self.words else -1 for w in words]
        missing = [w for w, i in zip(words, idx) if i < 0]
        if missing:
            raise DataError(f"no concept vectors for {missing}; concepts: {', '.join(self.words)}")
        return ConceptSet(list(words), self.vectors[idx].clone(), self.layer, self.site, dict(self.provenance))


def check_layer(model: LoadedModel, layer: int) -> int:
    """``layer`` as an int, or ``DataError`` naming the model's valid layers."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < model.n_layers:
        raise DataError(f"layer {layer!r} is outside the model's layers 0..{model.n_layers - 1}")
    return int(layer)


def carrier_rows(model: LoadedModel, word: str, carriers: Sequence[str]) -> list[list[int]]:
    """Token ids of each carrier sentence about ``word``, chat-templated (assistant turn opened;
    a base model without a chat template gets the plain layout of :func:`render_chat`)."""
    tok = model.tokenizer
    texts = [render_chat(tok, c.format(w=word), None, None) for c in carriers]
    return [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def _keeper(store: dict[str, Tensor]) -> Any:
    def keep(module: Any, inputs: Any, output: Tensor) -> None:
        store["h"] = output.detach()

    return keep


def last_token_residuals(
    model: LoadedModel, rows: Sequence[Sequence[int]], layer: int, site: str = "resid_pre", *, batch_size: int = 16
) -> Float[Tensor, "n d_model"]:
    """The residual ``blocks.{layer}.hook_{site}`` at the last real token of each row (left-padded)."""
    point = model.bridge.hook_dict[f"blocks.{layer}.hook_{site}"]
    out = []
    for start in range(0, len(rows), batch_size):
        ids, mask, pos = left_pad(rows[start : start + batch_size], model.tokenizer.pad_token_id, model.device)
        grabbed: dict[str, Tensor] = {}
        handle = point.register_forward_hook(_keeper(grabbed))
        try:  # the HF forward fires the bridge's hook points; only the last position is unembedded
            with torch.inference_mode():
                model.hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
        finally:
            handle.remove()
        out.append(grabbed["h"][:, -1].float().cpu())  # left padding: the last column is real
    return torch.cat(out)


def _mean_carrier(model: LoadedModel, words: Sequence[str], carriers: Sequence[str], layer: int, site: str,
                  batch_size: int) -> Float[Tensor, "word d_model"]:
    rows = [r for w in words for r in carrier_rows(model, w, carriers)]
    h = last_token_residuals(model, rows, layer, site, batch_size=batch_size)
    return h.view(len(words), len(carriers), -1).mean(1)


def concept_vectors(
    model: LoadedModel,
    words: Sequence[str] = CONCEPT_WORDS,
    layer: int = 0,
    *,
    site: str = "resid_pre",
    carriers: Sequence[str] = CARRIERS,
    baseline: Sequence[str] = BASELINE_WORDS,
    batch_size: int = 16,
) -> ConceptSet:
    """``v(w) = mean_carriers h_l(w) − mean_baseline mean_carriers h_l(b)`` for each word.

    Raises ``DataError`` for an empty or duplicated word list, a concept that is also a
    baseline word, carriers without ``{w}``, or a layer the model lacks; ``site`` must be one
    of :data:`~innerprobe.interventions.hooks.SITES`.
    """
    words, baseline, carriers = list(words), list(baseline), list(carriers)
    layer = check_layer(model, layer)
    if site not in SITES:
        raise DataError(f"unknown site {site!r}; valid sites: {', '.join(SITES)}")
    if not words or len(set(words)) != len(words):
        raise DataError(f"concept words must be a non-empty list without repeats, got {words}")
    if not baseline or set(words) & set(baseline):
        raise DataError(f"baseline words must be non-empty and disjoint from the concepts "
                        f"(shared: {sorted(set(words) & set(baseline))})")
    if not carriers or any("{w}" not in c for c in carriers):
        raise DataError(f"every carrier sentence needs a '{{w}}' placeholder, got {carriers}")
    concept_means = _mean_carrier(model, words, carriers, layer, site, batch_size)
    base_mean = _mean_carrier(model, baseline, carriers, layer, site, batch_size).mean(0)
    vectors = concept_means - base_mean
    if float(vectors.norm(dim=-1).max()) < 1e-4 * max(1.0, float(base_mean.norm())):
        log.warning("concept vectors at %s of layer %d are ~0: the readout token's residual there does not depend "
                    "on the word (at layer 0 it is the token's embedding); pick a later layer", site, layer)
    prov = {
        "model": model.fingerprint.short, "fingerprint": model.fingerprint.to_dict(), "layer": layer, "site": site,
        "carriers": carriers, "baseline": baseline, "readout": "last prompt token (assistant turn opened)",
        "method": "mean carrier residual minus baseline-word mean (Lindsey 2026)",
        "baseline_norm": float(base_mean.norm()),
    }
    return ConceptSet(words, vectors, layer, site, prov)


def random_like(concepts: ConceptSet, *, seed: int = 0) -> ConceptSet:
    """Gaussian random directions with exactly the norm of each concept vector (the control)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(concepts.vectors.shape, generator=g)
    r = r / r.norm(dim=-1, keepdim=True) * concepts.vectors.norm(dim=-1, keepdim=True)
    prov = {**concepts.provenance, "method": f"norm-matched Gaussian random directions (seed={seed})"}
    return ConceptSet([f"random:{w}" for w in concepts.words], r, concepts.layer, concepts.site, prov)


__all__ = [
    "BASELINE_WORDS", "CARRIERS", "CONCEPT_WORDS", "ConceptSet", "carrier_rows", "check_layer", "concept_vectors",
    "last_token_residuals", "random_like",
]
