"""Planted toys for the steering and ablation tests: a store whose class means carry a label.

:class:`PlantedStore` has the reading contract of an activation store (``rows``, ``read``,
``manifest``, ``path``, ``d_model``) with O activations built by hand: every row of class ``c``
is ``κ · (û(c) + û(f(c)))`` plus small noise, where ``û(x)`` is the unit unembedding row of the
first token of label ``x`` in the tiny model. Adding ``μ_t − μ_s`` at the last layer's output
therefore raises the logits of ``t`` (in O) and of ``f(t)`` (in H): a direction that carries the
label, which a norm-matched random vector does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from innerprobe.activations.capture import capture
from innerprobe.interventions.experiment import argmax_labels, prepare_trials
from innerprobe.interventions.readout import choice_logprobs
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items


@dataclass
class PlantedStore:
    rows: pd.DataFrame
    acts: torch.Tensor  # [n, n_layers, d]
    manifest: dict[str, Any]
    path: Path = Path("planted")
    reads: list = field(default_factory=list)

    @property
    def d_model(self) -> int:
        return int(self.acts.shape[-1])

    def read(self, run: str, site: str, position: str, *, layers: list[int] | None = None) -> torch.Tensor:
        self.reads.append((run, site, position))
        layers = list(range(self.acts.shape[1])) if layers is None else layers
        return self.acts[:, layers]


def planted_store(model: Any, items: Any, prop: Any, *, kappa: float = 60.0, per_class: int = 3,
                  noise: float = 0.05, seed: int = 0, n_classes: int | None = None,
                  outliers: int = 0, outlier_std: float = 0.0) -> PlantedStore:
    """A planted store over the answer classes the tiny model's object choice can produce.

    ``n_classes`` keeps only the first few; ``outliers`` coordinate axes get noise of
    ``outlier_std`` (an anisotropic stream, so a variance-matched random subspace has somewhere
    else to go than the answer subspace).
    """
    trials = prepare_trials(model, items, prop, PromptSpec(), [])
    w = model.hf_model.lm_head.weight.detach().float()
    unit = lambda t: w[t] / w[t].norm()  # noqa: E731
    labels, vecs = [], []
    g = torch.Generator().manual_seed(seed)
    for c, tok in zip(trials.objects.labels, trials.objects.token_ids):
        f = prop.extract(c)
        j = trials.properties.index(f)
        if j is None or (n_classes is not None and len(set(labels)) >= n_classes and c not in labels):
            continue
        mean = kappa * (unit(tok) + unit(trials.properties.token_ids[j]))
        for _ in range(per_class):
            labels.append(c)
            vecs.append(mean + noise * torch.randn(w.shape[1], generator=g))
    x = torch.stack(vecs)
    if outliers:
        axes = torch.randperm(x.shape[1], generator=g)[:outliers]
        x[:, axes] += outlier_std * torch.randn(x.shape[0], outliers, generator=g)
    x = x[:, None].repeat(1, model.n_layers, 1)
    rows = pd.DataFrame({"index": range(len(labels)), "id": [f"p{i}" for i in range(len(labels))],
                         "object_answer": labels, "object_compliant": [True] * len(labels)})
    fp = model.fingerprint.to_dict()
    manifest = {"d_model": int(w.shape[1]), "model": {"weights_sha256": fp.get("weights_sha256")},
                "manifest_sha256": "planted", "items_digest": "planted"}
    return PlantedStore(rows, x, manifest)


def own_answer_store(model: Any, out: Path, n: int = 80, hypothetical_positions: tuple[str, ...] = (),
                     with_property: bool = False) -> Any:
    """A real capture of ``model`` on ``n`` train items whose label column is its own
    forced-choice object answer, so the class means are the code its answer is read from
    (``with_property``: also the answer's second character, as the battery's store has it)."""
    prop = get_property("second_character")
    train = load_items("animals", n=n, split="train")
    trials = prepare_trials(model, train, prop, PromptSpec(), [])
    answers = argmax_labels(choice_logprobs(model, trials.o_prompts, trials.objects), trials.objects)
    labels = {"object_answer": answers, "object_compliant": [True] * len(answers)}
    if with_property:
        labels["answer_property"] = [prop.extract(a) for a in answers]
    return capture(model, train, prop, out=out, labels=labels, hypothetical_positions=hypothetical_positions)
