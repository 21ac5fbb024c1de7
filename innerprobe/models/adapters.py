"""LoRA adapter directories as models: detect them and merge them into their base for hooking.

An adapter directory written by :mod:`innerprobe.training.finetune` holds peft's ``adapter_config.json``
and ``adapter_model.safetensors`` plus ``innerprobe_adapter.json`` naming the base model (an
embedded name, a directory or a hub id). Hooks need plain modules, so the adapter is merged into
a copy of the base once and cached under the adapter's weight hash.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from innerprobe.core.errors import DataError
from innerprobe.core.io import save_model_dir
from innerprobe.core.paths import cache_dir
from innerprobe.models.embedded import EMBEDDED, embedded_model_dir
from innerprobe.models.fingerprint import hash_weight_files

ADAPTER_META = "innerprobe_adapter.json"


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the one FutureWarning peft triggers on every wrap, and nothing else.

    peft reads ``model.is_gradient_checkpointing``, a property transformers 5 deprecated in favour
    of ``is_activation_checkpointing``; innerprobe never enables gradient checkpointing.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").exists()


def adapter_base(path: Path) -> str:
    """The base model spec recorded with an adapter (innerprobe's file, else peft's config)."""
    meta = path / ADAPTER_META
    if meta.exists():
        return str(json.loads(meta.read_text())["base_model"])
    cfg = json.loads((path / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise DataError(f"{path}: adapter without a base model ({ADAPTER_META} missing)")
    return str(base)


def _resolve_base_dir(base: str) -> str:

    if base in EMBEDDED:
        return str(embedded_model_dir(base))
    return base


def merged_model_dir(path: Path) -> Path:
    """Merge the adapter at ``path`` into its base; cached by the adapter weights' hash."""


    digest = hash_weight_files(path)
    out = cache_dir("merged") / f"{path.name}-{digest[:12]}"
    if (out / "config.json").exists():
        return out
    base_dir = _resolve_base_dir(adapter_base(path))
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with quiet_peft():
        merged = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    tok = AutoTokenizer.from_pretrained(base_dir)
    return save_model_dir(out, merged, tok)
