"""Resumable, pickle-free training checkpoints: tensors in safetensors, the rest in JSON.

A checkpoint directory ``checkpoints/step-<n>`` holds

* ``trainable.safetensors``: the trainable (LoRA) tensors,
* ``optimizer.safetensors``: AdamW's moment tensors, keyed ``state.<param index>.<name>``,
* ``rng.safetensors``: torch's (and every CUDA device's) RNG state,
* ``state.json``: the step, param groups and scalar optimizer state, the loss history and the
  run's config and data hash (so a resume with other settings is refused).

It is written into a temporary directory renamed into place, and only the latest is kept, so a
resumed run replays the same batches with the same state and ends with the same adapter as an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from innerprobe.core.errors import DataError
from innerprobe.core.io import write_json


def trainable_state(model: Any) -> dict[str, Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}



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


__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint", "trainable_state"]
