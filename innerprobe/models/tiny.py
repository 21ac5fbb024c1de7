"""A tiny random Llama with a small byte-level BPE tokenizer and a ChatML template.

Unit tests need a model that boots in about a second, has a chat template, tokenises any text,
and behaves like the real one structurally (Llama blocks, grouped-query attention, tied
embeddings). Weights are random from a fixed seed, so the same seed gives the same model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from innerprobe.core.io import save_model_dir
from innerprobe.protocol.tasks import TASKS

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    """Text the BPE merges are learned from: prompt wording, letters, digits, words."""

    lines = []
    for task in TASKS.values():
        lines.append(task.template)
        lines.extend(task.vocabulary or ())
    lines += [
        'Previously, you were asked the following question: "',
        "Suppose you were asked the following question:",
        "Suppose another AI was asked the following question:",
        "What is the second character of the response you gave? For example, if you "
        'responded with "abc", respond with "b". Respond only with that character.',
        "Answer: true false even odd",
        " ".join("abcdefghijklmnopqrstuvwxyz"),
        " ".join("0123456789"),
    ]
    lines += [f"Answer: {c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] * 40
    return lines * 3


def build_tokenizer():  # -> PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model_dir(out: Path, *, seed: int = 0, n_layers: int = 2, d_model: int = 64) -> Path:
    """Write (once) a tiny random Llama + tokenizer directory at ``out`` and return it."""
    if (out / "config.json").exists():
        return out

    tok = build_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.4,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    return save_model_dir(out, model, tok)
