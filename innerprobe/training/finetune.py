"""LoRA finetuning for self-prediction (M1) and cross-prediction (M2), resumable and pickle-free.

**Method.** A low-rank adapter (LoRA: W + (alpha/r)·B·A on every linear projection q, k, v, o,
gate, up, down) is trained with AdamW on chat rows (see :mod:`innerprobe.training.data`),
tokenised as evaluation renders them (:mod:`innerprobe.training.encode`); the loss is the mean
cross-entropy over the answer tokens only. One :class:`FinetuneConfig` holds every knob and
checks it when built.

* **M1** = M trained on its own object-level behaviour.
* **M2** = another model trained on M1's behaviour (collected *after* training M1), same prompts
  and sizes. If M1 predicts itself better than M2 predicts M1 on held-out tasks, M1 has an
  advantage that training data alone does not give.

**Reproducibility.** The data order of epoch e is a permutation seeded by (seed, e); the learning
rate is a pure function of the step (linear warm-up then linear decay). A checkpoint holds the
trainable tensors and AdamW's moment tensors (safetensors), RNG states (safetensors) and the step,
param groups and loss history (JSON) — no pickle, see :mod:`innerprobe.training.checkpoints` — so
a resumed run replays the same batches with the same state and ends with the same adapter as an
uninterrupted one.

**Layout.** The output directory *is* the adapter: peft's ``adapter_config.json`` +
``adapter_model.safetensors`` + ``innerprobe_adapter.json`` (base model spec, base fingerprint,
data hash, config), so ``load_model(out_dir)`` merges it into its base for every other stage.
:func:`finetune` returns a :class:`FinetuneResult` (``.table``: the loss curve; ``.summary``;
``.figure()``; ``.save(dir)`` / ``.load(dir)``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from innerprobe.core.errors import DataError, InnerprobeError, UnknownNameError
from innerprobe.core.io import provenance, write_json
from innerprobe.models.adapters import (
    ADAPTER_META,
    _resolve_base_dir,
    is_adapter_dir,
    merged_model_dir,
    quiet_peft,
)
from innerprobe.models.embedded import EMBEDDED
from innerprobe.models.loaded import LoadedModel
from innerprobe.training.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    trainable_state,
)
from innerprobe.training.config import LORA_TARGETS, FinetuneConfig
from innerprobe.training.data import data_hash
from innerprobe.training.encode import (
    IGNORE,
    Encoded,
    answer_loss,
    collate,
    encode_dataset,
    encode_row,
)
from innerprobe.training.result import HISTORY_COLUMNS, FinetuneResult, FinetuneSummary, loss_figure

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- schedule


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The row order of ``epoch``: a permutation that depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def batch_schedule(n: int, config: FinetuneConfig) -> list[tuple[int, list[int]]]:
    """Every optimiser step's (epoch, row indices), truncated at ``max_steps``."""
    out = []
    for epoch in range(config.epochs):
        order = epoch_order(n, config.seed, epoch)
        for s in range(0, n, config.batch_size):
            out.append((epoch, order[s : s + config.batch_size]))
    return out[: config.max_steps] if config.max_steps is not None else out


def lr_at(step: int, total: int, config: FinetuneConfig) -> float:
    """Linear warm-up over ``warmup_steps`` then linear decay to 0 at ``total``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, total - config.warmup_steps)
    return config.lr * max(0.0, 1.0 - (step - config.warmup_steps) / span)


# --------------------------------------------------------------------------- model


def hf_weights_dir(model: LoadedModel) -> str:
    """The HF directory (or hub id) holding ``model``'s weights, for a clean trainable copy."""

    return _resolve_base_dir(base_spec(model))


def lora_model(model: LoadedModel, config: FinetuneConfig, device: str | torch.device | None = None) -> Any:
    """A peft LoRA wrapper around a fresh HF copy of ``model``'s weights.

    The bridge's ``hf_model`` holds TransformerLens wrapper modules that peft cannot inject into,
    so the plain HF model is loaded again from the same weights (the loaded bridge is untouched).
    The default targets (:data:`LORA_TARGETS`) are those of the model's linear modules it has;
    targets named in ``config`` must all be linear modules of the model, else
    ``UnknownNameError`` lists the model's linear module names.
    """

    dtype = next(model.hf_model.parameters()).dtype
    base = AutoModelForCausalLM.from_pretrained(hf_weights_dir(model), dtype=dtype)
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)})
    if config.target_modules == LORA_TARGETS:  # the defaults: those this architecture has
        targets = [t for t in config.target_modules if t in linear]
        if not targets:
            raise UnknownNameError(f"LoRA target module of {model.name}", list(LORA_TARGETS), linear)
    else:  # named by the caller: every one must exist
        for t in config.target_modules:
            if t not in linear:
                raise UnknownNameError(f"LoRA target module of {model.name}", t, linear)
        targets = list(config.target_modules)
    if device is not None:
        base = base.to(device)
    torch.manual_seed(config.seed)
    lcfg = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with quiet_peft():
        return get_peft_model(base, lcfg)


def base_spec(model: LoadedModel) -> str:
    """How ``load_model`` can find this model's weights again (embedded name or directory)."""
    fp = model.fingerprint
    if fp.name in EMBEDDED:
        return fp.name
    src = Path(fp.source)
    if src.is_dir():

        return str(merged_model_dir(src) if is_adapter_dir(src) else src.resolve())
    if fp.source.startswith("hub:"):
        return fp.source.removeprefix("hub:")
    raise InnerprobeError(
        f"cannot finetune {fp.short} (source {fp.source!r}): training reloads the weights from disk. "
        "Save the model first (hf_model.save_pretrained(dir); tokenizer.save_pretrained(dir)) and "
        "load_model(dir), or load it by name, directory or hub id"
    )


# --------------------------------------------------------------------------- adapter


def save_adapter(model: Any, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write peft's adapter files + ``innerprobe_adapter.json`` into ``out_dir`` (atomically per file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.tmp-", dir=out_dir))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(out_dir / ADAPTER_META, meta)
    return out_dir


def _config_digest(config: FinetuneConfig) -> str:
    blob = json.dumps({k: v for k, v in config.to_dict().items() if k != "save_every"}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- training


def finetune(
    model: LoadedModel,
    data: Dataset,
    out_dir: str | Path,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    resume: bool = False,
    stop_after: int | None = None,
    device: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on ``data`` for ``model`` and save it to ``out_dir``.

    Args:
        model: the model to train (its bridge is not modified: a copy of ``hf_model`` is wrapped).
        data: rows from :func:`innerprobe.training.data.build_training_data`.
        out_dir: becomes an adapter directory loadable by ``load_model(out_dir)``.
        config: hyper-parameters; with ``resume`` they must match the checkpoint's.
        resume: continue from the latest checkpoint in ``out_dir/checkpoints``.
        stop_after: stop (with a checkpoint) once this many steps are done — simulates an
            interruption; the schedule still spans the full run.
        device: default: cuda when present, else the model's device.
        progress: ``(step, loss)`` callback after every optimiser step.
    """
    out_dir = Path(out_dir)
    tok = model.tokenizer
    encoded = encode_dataset(tok, data)
    schedule = batch_schedule(len(encoded), config)
    total = len(schedule)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else str(model.device)))
    peft_model = lora_model(model, config, dev)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    dhash = data_hash(data)
    run_meta = {"config": config.to_dict(), "config_digest": _config_digest(config), "data_hash": dhash, "total_steps": total}
    step, history = 0, []
    if resume and (ckpt := latest_checkpoint(out_dir)) is not None:
        state = load_checkpoint(ckpt, peft_model, opt)
        if state["config_digest"] != run_meta["config_digest"] or state["data_hash"] != dhash:
            raise DataError(
                f"{ckpt}: cannot resume, the checkpoint was made with another config or data "
                f"(config {state['config_digest']} vs {run_meta['config_digest']}, data {state['data_hash']} vs {dhash})"
            )
        step, history = int(state["step"]), list(state["history"])
        log.info("resumed from %s at step %d/%d", ckpt, step, total)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    peft_model.train()
    end = total if stop_after is None else min(total, stop_after)
    t0 = time.perf_counter()
    while step < end:
        epoch, idx = schedule[step]
        ids, mask, pos, labels = (t.to(dev) for t in collate([encoded[i] for i in idx], pad))
        lr = lr_at(step, total, config)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = answer_loss(peft_model, ids, mask, pos, labels)
        if not torch.isfinite(loss):
            raise InnerprobeError(f"non-finite loss at step {step}: lower the learning rate ({config.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history.append(
            {"step": step, "epoch": epoch, "loss": float(loss.item()), "lr": lr, "seconds": time.perf_counter() - t0}
        )
        if progress is not None:
            progress(step, history[-1]["loss"])
        if config.save_every and step % config.save_every == 0 and step < end:
            save_checkpoint(out_dir / "checkpoints" / f"step-{step}", peft_model, opt, step, history, run_meta)
    peft_model.eval()
    finished = step >= total
    save_checkpoint(out_dir / "checkpoints" / f"step-{step}", peft_model, opt, step, history, run_meta)
    write_json(out_dir / "loss_curve.json", {"history": history, **run_meta})
    if finished:
        meta = {
            "base_model": base_spec(model),
            "base_fingerprint": model.fingerprint.to_dict(),
            "provenance": provenance(model.fingerprint, seed=config.seed, data_hash=dhash, n_rows=len(data)),
            **run_meta,
            "final_loss": history[-1]["loss"] if history else None,
        }
        save_adapter(peft_model, out_dir, meta)
        fig = loss_figure(history, f"LoRA loss · {model.name}")
        write_json(out_dir / "loss_curve.plotly.json", json.loads(fig.to_json()))
    return FinetuneResult(out_dir, peft_model, history, step, total, finished, len(data), dhash, config)


def merged_copy(peft_model: Any) -> Any:
    """The in-memory adapter merged into a copy of its base (what ``load_model(dir)`` builds)."""
    return copy.deepcopy(peft_model).merge_and_unload()


def steps_for(n_rows: int, config: FinetuneConfig) -> int:
    """Optimiser steps a run over ``n_rows`` takes."""
    per_epoch = math.ceil(n_rows / config.batch_size)
    total = per_epoch * config.epochs
    return min(total, config.max_steps) if config.max_steps is not None else total


__all__ = [
    "HISTORY_COLUMNS", "IGNORE", "LORA_TARGETS", "Encoded", "FinetuneConfig", "FinetuneResult", "FinetuneSummary",
    "answer_loss", "base_spec", "batch_schedule", "collate", "encode_dataset", "encode_row", "epoch_order", "finetune",
    "hf_weights_dir", "latest_checkpoint", "load_checkpoint", "lora_model", "loss_figure", "lr_at", "merged_copy",
    "save_adapter", "save_checkpoint", "steps_for", "trainable_state",
]
