"""``build_zoo_model``: build (or reuse) one zoo model directory, with its provenance.

The directory is an ordinary HF model directory (weights, tokenizer, ChatML template) written
by :func:`innerprobe.core.io.save_model_dir`, so ``innerprobe.models.load.load_model(dir)``
boots it through TransformerLens and every stage (behave, capture, probes, patching, the
battery) runs on it unchanged. ``zoo.json`` beside the weights records the config, its digest,
the planted route and why the construction forces it, the weights' sha256, the items it was
built on, the losses, the build time and the library versions.

Builds are deterministic given the config (one seeded initialisation, seeded batch order,
CPU kernels), and cached: the default directory is ``cache_dir("zoo", config.digest())`` and
a directory whose ``zoo.json`` carries the same digest is reused without training.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from innerprobe.core.errors import OutDirError
from innerprobe.core.io import provenance, read_json, save_model_dir, write_json
from innerprobe.core.paths import cache_dir
from innerprobe.zoo.config import ZooConfig
from innerprobe.zoo.data import (
    Encoded,
    ZooEncoder,
    all_items,
    build_tokenizer,
    planted_answers,
    text_pool,
    zoo_items,
)
from innerprobe.zoo.pretrained import cut_of, load_base, merged, top_layers, with_adapters
from innerprobe.zoo.train import new_model, stage_object, stage_readout

ZOO_JSON = "zoo.json"
WHY = {
    "simulation": (
        "stage 2 trains only position-wise weights after the last attention (last MLP, final norm, "
        "unembedding) on train items, reading the frozen residual at h_last that stage 1 trained to "
        "carry the answer; the property can only be read off the answer representation"
    ),
    "direct": (
        "stage 2 trains H to give the property both with O's answer subspace projected out of its "
        "residual at every site after the quoted P (where the answer would be formed) and without, ties "
        "the two answers, and penalises H's residual inside that subspace, so H reads the property from "
        "the quote without forming the answer code"
    ),
}
WHY_PRETRAINED = {
    "simulation": (
        "stage 2 trains only the LoRA adapters of the last block's MLP, that block's MLP norm and the final "
        "norm (position-wise after the last attention; the unembedding is tied to the frozen embeddings) on "
        "train items, reading the frozen residual at h_last that stage 1 trained to carry the answer"
    ),
    "direct": WHY["direct"] + (
        "; the sites are those of the adapted top blocks, the first being the residual entering them, so the "
        "projection also removes whatever the frozen blocks below wrote into the answer code"
    ),
}


@dataclass(frozen=True)
class ZooModel:
    """A built zoo model: its directory (load it with ``load_model(str(path))``) and record."""

    path: Path
    config: ZooConfig
    weights_sha256: str
    record: dict[str, Any]

    @property
    def route(self) -> str:
        return self.config.route

    @property
    def task_kind(self) -> str:
        return self.config.task_kind


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, in name order (float32 bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cached(path: Path, config: ZooConfig) -> ZooModel | None:
    record_path = path / ZOO_JSON
    if not record_path.is_file():
        return None
    record = read_json(record_path)
    if record.get("digest") != config.digest():
        return None
    return ZooModel(path, config, record["weights_sha256"], record)


HYPOTHETICAL_ITEMS = {
    ("memorised", "direct"): "train and test items",
    ("text", "direct"): "train items + pool items",
    ("memorised", "simulation"): "train items",
    ("text", "simulation"): "train items",
}


def hypothetical_items(config: ZooConfig, encoded: list[Encoded], objects: list[Encoded]) -> list[Encoded]:
    """The items stage 2 trains H on (``HYPOTHETICAL_ITEMS``; never a test item of a text model).

    A memorised/direct H must store each item's property, so it sees every item; a text/direct H
    must learn the rule through the projection, so it sees the pool the object circuit learns
    from; a simulation H's readout sees train items only (its test self-prediction must come
    from the frozen answer representation)."""
    if config.route == "direct":
        return encoded if config.task_kind == "memorised" else objects
    return encoded[: config.n_train]


def build_zoo_model(config: ZooConfig, out_dir: str | Path | None = None) -> ZooModel:
    """Train the zoo model ``config`` describes into ``out_dir`` (default: the cache), or reuse it."""
    path = Path(out_dir) if out_dir is not None else cache_dir("zoo", config.digest())
    hit = _cached(path, config)
    if hit is not None:
        return hit
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / ZOO_JSON).is_file())):
        raise OutDirError(f"{path} exists and is not a zoo model directory; pass a new directory")
    start = time.perf_counter()
    base, tok = load_base(config) if config.pretrained else (None, build_tokenizer())
    enc = ZooEncoder(tok, config)
    items = all_items(config)
    answers = planted_answers(config, items)
    encoded = [enc.encode(r["question"], a) for r, a in zip(items, answers)]
    n_train = config.n_train
    memorised = config.task_kind == "memorised"
    objects = encoded if memorised else encoded[:n_train]
    object_answers = answers if memorised else answers[:n_train]
    pool = text_pool(config)
    if pool is not None:  # the rule, learnt from many more items than the hypothetical sees
        pool_answers = planted_answers(config, pool)
        objects = objects + [enc.encode(r["question"], a) for r, a in zip(pool, pool_answers)]
        object_answers = object_answers + pool_answers
    h_items = hypothetical_items(config, encoded, objects)
    if base is not None:  # LoRA on the top blocks, trained on residuals cached at the cut
        adapted = with_adapters(base, config)
        model = top_layers(adapted, config, objects, [*objects, *encoded], tok.pad_token_id)
    else:
        model = new_model(config, tok)
    model.train()
    loss1 = stage_object(model, config, objects, objects, tok.pad_token_id, enc.label_ids)
    loss2 = stage_readout(model, config, objects, h_items, enc.label_ids, tok.pad_token_id, object_answers)
    model = merged(adapted) if base is not None else model.eval()
    sha = weights_sha256(model)
    save_model_dir(path, model, tok)
    train, test = zoo_items(config)
    record = {
        "digest": config.digest(),
        "name": config.name,
        "config": config.to_dict(),
        "route": config.route,
        "task_kind": config.task_kind,
        "why": (WHY_PRETRAINED if config.pretrained else WHY)[config.route],
        "base": config.base,
        "adapted_blocks": (list(range(cut_of(model, config), model.config.num_hidden_layers))
                           if config.pretrained else "all (from scratch)"),
        "weights_sha256": sha,
        "items": {"train": list(train["id"]), "test": list(test["id"])},
        "object_trained_on": "train and test items" if memorised else f"train items + {config.n_text_pool} pool items",
        "hypothetical_trained_on": HYPOTHETICAL_ITEMS[config.task_kind, config.route],
        "final_loss": {"object_stage": loss1[-1], "readout_stage": loss2[-1]},
        "build_seconds": round(time.perf_counter() - start, 2),
        "provenance": provenance(seed=config.seed, stage="zoo"),
    }
    write_json(path / ZOO_JSON, record)
    return ZooModel(path, config, sha, record)


__all__ = ["HYPOTHETICAL_ITEMS", "WHY", "WHY_PRETRAINED", "ZOO_JSON", "ZooModel", "build_zoo_model", "hypothetical_items", "weights_sha256"]
