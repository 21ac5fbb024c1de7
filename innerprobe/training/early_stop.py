"""LoRA finetuning that stops when the held-out loss stops improving, resumable epoch by epoch.

:func:`~innerprobe.training.finetune.finetune` runs a fixed schedule. Self-training runs many
rounds, so each round should train only as long as it helps: after every epoch the mean
answer-token loss on held-out rows (never trained on) is measured; once ``patience`` epochs in a
row fail to lower the best held-out loss, training stops and the adapter of the best epoch is
saved. The learning-rate schedule still spans the full ``epochs`` (stopping early does not
reshape it), so the first epochs are exactly those of an uninterrupted run.

It is built from ``finetune`` itself: each epoch is one ``finetune(..., resume=True,
stop_after=<end of epoch>)`` call, which restores the latest checkpoint (weights, AdamW state,
RNG) and trains to the epoch's end. After each epoch the held-out curve is written to
``heldout.json`` and the best epoch's trainable tensors to ``best.safetensors`` (atomically), so
a killed run resumes at its last finished epoch with the same outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from innerprobe.core.io import atomic_path, provenance, read_json, write_json
from innerprobe.models.loaded import LoadedModel
from innerprobe.training.checkpoints import trainable_state
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.data import data_hash
from innerprobe.training.encode import answer_loss, collate, encode_dataset
from innerprobe.training.finetune import base_spec, finetune, save_adapter, steps_for

HELDOUT_FILE = "heldout.json"
BEST_FILE = "best.safetensors"


def heldout_loss(peft_model: Any, tokenizer: Any, rows: Dataset, batch_size: int = 8) -> float:
    """Mean answer-token cross-entropy of ``peft_model`` on ``rows`` (row-weighted over batches)."""
    enc = encode_dataset(tokenizer, rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    dev = next(peft_model.parameters()).device
    total, n = 0.0, 0
    peft_model.eval()
    with torch.no_grad():
        for s in range(0, len(enc), batch_size):
            chunk = enc[s : s + batch_size]
            ids, mask, pos, labels = (t.to(dev) for t in collate(chunk, pad))
            total += float(answer_loss(peft_model, ids, mask, pos, labels)) * len(chunk)
            n += len(chunk)
    return total / n


def _save_best(peft_model: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(trainable_state(peft_model), str(tmp))


def finetune_early_stop(
    model: LoadedModel,
    train: Dataset,
    heldout: Dataset | None,
    out_dir: str | Path,
    config: FinetuneConfig,
    *,
    patience: int | None = 1,
    device: str | None = None,
    progress: Callable[[int, float], None] | None = None,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train on ``train`` epoch by epoch, stop after ``patience`` epochs without held-out gain.

    Without ``heldout`` (or with ``patience`` None) this is one plain :func:`finetune` run.
    ``stop_after_epoch`` ends the call after that many epochs without saving an adapter (an
    interruption, for tests). Returns the held-out record: per-epoch losses, the best epoch,
    whether training stopped early, the steps run.
    """
    out_dir = Path(out_dir)
    if heldout is None or patience is None or len(heldout) == 0:
        res = finetune(model, train, out_dir, config, resume=True, device=device, progress=progress)
        record = {"epochs": [], "best_epoch": None, "stopped_early": False, "steps": res.step,
                  "total_steps": res.total_steps, "final_loss": res.history[-1]["loss"] if res.history else None}
        write_json(out_dir / HELDOUT_FILE, record)
        return record
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_for(len(train), config)
    path = out_dir / HELDOUT_FILE
    record = read_json(path) if path.exists() else {"epochs": [], "best_epoch": None, "stopped_early": False}
    if record.get("done"):
        return record
    curve: list[float] = list(record["epochs"])
    res = None
    for epoch in range(len(curve), config.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return record
        res = finetune(model, train, out_dir, config, resume=True, stop_after=min(total, (epoch + 1) * per_epoch),
                       device=device, progress=progress)
        loss = heldout_loss(res.model, model.tokenizer, heldout, config.batch_size)
        curve.append(loss)
        best = min(range(len(curve)), key=curve.__getitem__)
        if best == epoch:
            _save_best(res.model, out_dir / BEST_FILE)
        record = {"epochs": curve, "best_epoch": best, "stopped_early": False, "steps": res.step, "total_steps": total}
        write_json(path, record)
        if epoch - best >= patience:
            record["stopped_early"] = epoch + 1 < config.epochs
            break
    if res is None:  # every epoch was done before a kill that came before the adapter was saved
        res = finetune(model, train, out_dir, config, resume=True, stop_after=record["steps"], device=device)
    weights = load_file(str(out_dir / BEST_FILE))
    dev = next(res.model.parameters()).device
    res.model.load_state_dict({k: v.to(dev) for k, v in weights.items()}, strict=False)
    dhash = data_hash(train)
    save_adapter(res.model, out_dir, {
        "base_model": base_spec(model),
        "base_fingerprint": model.fingerprint.to_dict(),
        "provenance": provenance(model.fingerprint, seed=config.seed, data_hash=dhash, n_rows=len(train),
                                 heldout_hash=data_hash(heldout), n_heldout=len(heldout)),
        "config": config.to_dict(), "data_hash": dhash, "total_steps": total,
        "heldout": record,
    })
    record = {**record, "done": True, "final_loss": res.history[-1]["loss"] if res.history else None}
    write_json(path, record)
    return record


__all__ = ["BEST_FILE", "HELDOUT_FILE", "finetune_early_stop", "heldout_loss"]
