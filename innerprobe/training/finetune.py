"""LoRA finetuning for self-prediction (M1) and cross-prediction (M2), resumable and pickle-free.

**Method.** A low-rank adapter (LoRA: W + (alpha/r)·B·A on every linear projection q, k, v, o,
gate, up, down) is trained with AdamW on chat rows (see :mod:`innerprobe.training.data`). Each
row is rendered with the *trained* model's :func:`~innerprobe.protocol.prompts.render_chat` — the same
layout :func:`~innerprobe.protocol.prompts.hypothetical_prompt` builds at evaluation, including the
assistant prefill — and the answer is appended with :func:`~innerprobe.protocol.prompts.label_tokens`, so
the trained tokens are exactly the ones forced-choice evaluation scores. The loss is the mean
cross-entropy over answer tokens only: prompt and padding positions carry label ``-100``.

* **M1** = M trained on its own object-level behaviour.
* **M2** = another model trained on M1's behaviour (collected *after* training M1), same prompts
  and sizes. If M1 predicts itself better than M2 predicts M1 on held-out tasks, M1 has an
  advantage that training data alone does not give.

**Reproducibility.** The data order of epoch e is a permutation seeded by (seed, e); the learning
rate is a pure function of the step (linear warm-up then linear decay). A checkpoint holds the
trainable tensors and AdamW's moment tensors (safetensors), RNG states (safetensors) and the step,
param groups and loss history (JSON) — no pickle — so a resumed run replays the same batches with
the same state and ends with the same adapter as an uninterrupted one.

**Layout.** The output directory *is* the adapter: peft's ``adapter_config.json`` +
``adapter_model.safetensors`` + ``innerprobe_adapter.json`` (base model spec, base fingerprint,
data hash, config), so ``load_model(out_dir)`` merges it into its base for every other stage.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from datasets import Dataset
from jaxtyping import Int
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import AutoModelForCausalLM

from innerprobe.behavior.inference import left_pad
from innerprobe.core.errors import DataError, InnerprobeError, check_at_least
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
from innerprobe.protocol.prompts import label_tokens, render_chat
from innerprobe.training.data import data_hash

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one LoRA run (recorded with the adapter).

    ``max_steps`` caps the optimiser steps (None: ``epochs`` full passes); ``save_every`` writes a
    resumable checkpoint every so many steps (0: only at the end).
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 5e-4
    epochs: int = 2
    batch_size: int = 8
    max_steps: int | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    save_every: int = 0
    target_modules: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        for name in ("rank", "epochs", "batch_size"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("max_steps", self.max_steps, 1, allow_none=True)
        for name in ("warmup_steps", "save_every", "weight_decay"):
            check_at_least(name, getattr(self, name), 0)
        if not self.alpha > 0 or not self.lr > 0:
            raise DataError(f"alpha and lr must be > 0, got alpha={self.alpha!r}, lr={self.lr!r}")
        if not 0 <= self.dropout < 1:
            raise DataError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise DataError(f"target_modules is empty; e.g. {list(LORA_TARGETS)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}


@dataclass
class Encoded:
    """One tokenised row: prompt + answer ids, labels ``-100`` except on the answer tokens."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class FinetuneResult:
    """A finished (or stopped) run: where the adapter is, the in-memory peft model, the losses."""

    out_dir: Path
    model: Any
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    total_steps: int = 0
    finished: bool = False

    def to_dataframe(self):  # -> pd.DataFrame

        return pd.DataFrame(self.history)


# --------------------------------------------------------------------------- data


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
    """

    dtype = next(model.hf_model.parameters()).dtype
    base = AutoModelForCausalLM.from_pretrained(hf_weights_dir(model), dtype=dtype)
    names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
    targets = [t for t in config.target_modules if t in names]
    if not targets:
        raise InnerprobeError(
            f"none of the LoRA targets {list(config.target_modules)} exist in {model.name}"
        )
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


def trainable_state(model: Any) -> dict[str, Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


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
    raise InnerprobeError(f"cannot record a base for {fp.short}: load it by name or directory first")


# --------------------------------------------------------------------------- checkpoints


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_tensors() -> dict[str, Tensor]:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def save_checkpoint(
    ckpt_dir: Path, model: Any, opt: torch.optim.Optimizer, step: int, history: list[dict[str, float]], meta: dict[str, Any]
) -> Path:
    """Write a resumable checkpoint atomically (a temp dir renamed into place)."""
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=ckpt_dir.name + ".tmp-", dir=ckpt_dir.parent))
    try:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        tensors, opt_meta = _optimizer_tensors(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_file(_rng_tensors(), str(tmp / "rng.safetensors"))
        write_json(tmp / "state.json", {"step": step, "optimizer": opt_meta, "history": history, **meta})
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        os.replace(tmp, ckpt_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in ckpt_dir.parent.glob("step-*"):
        if old != ckpt_dir and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)  # keep only the latest checkpoint
    return ckpt_dir


def latest_checkpoint(out_dir: Path) -> Path | None:
    root = out_dir / "checkpoints"
    if not root.exists():
        return None
    ckpts = sorted(
        (p for p in root.iterdir() if p.name.startswith("step-") and (p / "state.json").exists()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    return ckpts[-1] if ckpts else None


def load_checkpoint(ckpt: Path, model: Any, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore trainable tensors, AdamW state and RNG; return the JSON state (step, history...)."""
    state = json.loads((ckpt / "state.json").read_text())
    device = next(model.parameters()).device
    weights = {k: v.to(device) for k, v in load_file(str(ckpt / "trainable.safetensors")).items()}
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise DataError(f"{ckpt}: checkpoint lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[0]}")
    model.load_state_dict(weights, strict=False)
    opt_tensors = {k: v.to(device) if not k.endswith(".step") else v for k, v in load_file(str(ckpt / "optimizer.safetensors")).items()}
    _restore_optimizer(opt, opt_tensors, state["optimizer"])
    rng = load_file(str(ckpt / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return state


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


def loss_figure(history: list[dict[str, float]], title: str = "LoRA training loss"):  # -> go.Figure
    """Plotly figure of the per-step loss (answer tokens only) and its running mean."""

    steps = [h["step"] for h in history]
    losses = np.array([h["loss"] for h in history])
    k = max(1, len(losses) // 20)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid") if len(losses) else losses
    fig = go.Figure()
    fig.add_scatter(x=steps, y=losses, mode="lines", name="loss", opacity=0.4)
    fig.add_scatter(x=steps[k - 1 :], y=smooth, mode="lines", name=f"mean of {k}")
    fig.update_layout(title=title, xaxis_title="optimiser step", yaxis_title="cross-entropy (answer tokens)")
    return fig


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
    return FinetuneResult(out_dir, peft_model, history, step, total, finished)


def merged_copy(peft_model: Any) -> Any:
    """The in-memory adapter merged into a copy of its base (what ``load_model(dir)`` builds)."""
    return copy.deepcopy(peft_model).merge_and_unload()


def steps_for(n_rows: int, config: FinetuneConfig) -> int:
    """Optimiser steps a run over ``n_rows`` takes."""
    per_epoch = math.ceil(n_rows / config.batch_size)
    total = per_epoch * config.epochs
    return min(total, config.max_steps) if config.max_steps is not None else total
