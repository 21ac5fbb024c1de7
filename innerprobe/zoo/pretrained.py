"""The SmolLM2 zoo's model: LoRA adapters on a pretrained base's top blocks, the trunk below frozen.

The second scale of the zoo (the first is a tiny Llama from scratch): the embedded
SmolLM2-135M-Instruct, loaded from its cached safetensors copy, gets peft LoRA adapters of rank
``ZooConfig.lora_rank`` (alpha = 2 × rank, no dropout) on every linear projection of its top
``ZooConfig.n_trainable`` blocks. Only the adapters train (and, for simulation's readout, the
last block's norm and the final norm, see :meth:`innerprobe.zoo.trunk.TopLayers.readout_parameters`),
so the residual entering the first adapted block is a function of the ids alone and is cached once
(:class:`innerprobe.zoo.trunk.TrunkCache`). After training the adapters are merged into the
base (:func:`merged`), so the saved directory is a plain HF Llama that every stage loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, LlamaForCausalLM

from innerprobe.core.errors import DataError
from innerprobe.models.adapters import quiet_peft
from innerprobe.models.embedded import embedded_model_dir
from innerprobe.training.config import LORA_TARGETS
from innerprobe.zoo.config import ZooConfig
from innerprobe.zoo.data import Encoded
from innerprobe.zoo.trunk import TopLayers, TrunkCache

#: Every linear projection of a Llama block (the library's LoRA defaults).
ADAPTED = LORA_TARGETS


def load_base(config: ZooConfig) -> tuple[LlamaForCausalLM, Any]:
    """The pretrained base (float32, eval mode, no gradients anywhere) and its tokenizer."""
    path = embedded_model_dir(config.base)
    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def cut_of(model: LlamaForCausalLM, config: ZooConfig) -> int:
    """The first adapted block: ``n_layers - n_trainable`` (a clear error when that is not a block)."""
    n = model.config.num_hidden_layers
    if not 1 <= config.n_trainable < n:
        raise DataError(f"ZooConfig.n_trainable must be in [1, {n - 1}] for {config.base} ({n} blocks), "
                        f"got {config.n_trainable}")
    return n - config.n_trainable


def with_adapters(model: LlamaForCausalLM, config: ZooConfig) -> Any:
    """The peft model: seeded LoRA on :data:`ADAPTED` of the top ``n_trainable`` blocks (in place)."""
    cut = cut_of(model, config)
    torch.manual_seed(config.seed)
    lcfg = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0,
                      target_modules=list(ADAPTED), layers_to_transform=list(range(cut, model.config.num_hidden_layers)),
                      bias="none")
    with quiet_peft():
        return get_peft_model(model, lcfg)


def top_layers(peft_model: Any, config: ZooConfig, objects: Sequence[Encoded], hypos: Sequence[Encoded],
               pad_id: int) -> TopLayers:
    """The trainable model above the cut, its trunk cached for every O row (and its prompt) and H row."""
    llama = peft_model.base_model.model
    cache = TrunkCache(llama, cut_of(llama, config))
    cache.add(llama, [e.object_ids for e in objects], pad_id, [e.object_prompt_len for e in objects])
    cache.add(llama, [e.hypo_ids for e in hypos], pad_id)
    return TopLayers(llama, cache)


def merged(peft_model: Any) -> LlamaForCausalLM:
    """The adapters folded into the base weights: a plain HF Llama (eval mode)."""
    with quiet_peft():
        model = peft_model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


__all__ = ["ADAPTED", "cut_of", "load_base", "merged", "top_layers", "with_adapters"]
