"""The zoo's training data: the library's real prompts, the planted answers, and their tokens.

Every example is built with :mod:`innerprobe.protocol.prompts` exactly as the library's stages
build theirs (same chat template, same ``Answer:`` prefills, same hypothetical wording), so a
zoo model is measured by behave / capture / probes / patching / the battery on the very strings
it was trained on:

* object example: ``O(P)`` + ``" <answer>"`` + end of turn, loss on the answer and the end token;
* hypothetical example: ``H(P, property)``, loss at ``h_last`` over the property's forced-choice
  labels (a–z, 0–9, as the library's forced choice reads them) or, for the simulation model's
  first stage, over the whole vocabulary with the *answer* as target.

Planted answers (:func:`planted_answers`):

* ``text``: the last word of P. Any reader of P's text computes it (the library's text-only
  baseline and its "last item" heuristic both can).
* ``memorised``: ``random.Random(f"zoo:{seed}:{question}").choice(answer_words)`` (the task's
  vocabulary, or its first ``ZooConfig.answer_words`` words): a fixed,
  idiosyncratic association per item. Without the seed, a third party sees only P's words, which
  carry no information about it, so the text-only predictor sits at chance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from datasets import Dataset, concatenate_datasets
from jaxtyping import Int
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from innerprobe.core.errors import DataError
from innerprobe.protocol.prompts import PromptSpec, hypothetical_prompt, label_tokens, object_prompt
from innerprobe.protocol.properties import get_property, list_properties
from innerprobe.protocol.tasks import TASKS, get_task, item_meta
from innerprobe.zoo.config import ZOO_TASKS, ZooConfig

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1600
SPEC = PromptSpec()


def _corpus() -> list[str]:
    """Prompt wording, every property question, and each answer word after the prefill (often)."""
    lines = [TASKS[t].template for t in ZOO_TASKS]
    lines += ['Previously, you were asked the following question: "', "Answer:"]
    lines += [p.question for p in list_properties()]
    for t in ZOO_TASKS:
        lines += [f"Answer: {w}" for w in TASKS[t].vocabulary or ()] * 30
    lines += [f"Answer: {c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] * 30
    return lines


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (deterministic: no randomness in the trainer) with a ChatML template."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>", unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def zoo_items(config: ZooConfig) -> tuple[Dataset, Dataset]:
    """The train and test items a zoo model is built on (the battery's items for ``item_seed=0``)."""
    task = get_task(config.task)
    return (task.generate(config.n_train, split="train", seed=config.item_seed),
            task.generate(config.n_test, split="test", seed=config.item_seed))


def text_pool(config: ZooConfig) -> Dataset | None:
    """Extra train-split items for a text model's object circuit (None for memorised or size 0)."""
    if config.task_kind != "text" or not config.n_text_pool:
        return None
    return get_task(config.task).generate(config.n_text_pool, split="train", seed=config.item_seed + 1)


def item_words(row: dict) -> list[str]:
    return str(item_meta(row)["string"]).split()


def planted_answers(config: ZooConfig, items: Dataset) -> list[str]:
    """The answer word the zoo model is trained to give to each item's O(P) (module docstring)."""
    if config.task_kind == "text":
        return [item_words(r)[-1] for r in items]
    words = tuple(get_task(config.task).vocabulary or ())
    words = words[: config.answer_words] if config.answer_words else words
    return [random.Random(f"zoo:{config.seed}:{r['question']}").choice(words) for r in items]


@dataclass(frozen=True)
class Encoded:
    """Token ids of one item's O and H prompts and of its targets."""

    object_ids: list[int]  # O(P) + answer + end of turn
    object_prompt_len: int
    hypo_ids: list[int]  # H(P, property)
    after_quote: int  # first position after the quoted P (the answer subspace is removed from here on)
    answer_id: int  # first token of " <answer>" after the prefill
    label: int  # index of the property value among the label ids
    value: str  # the property value of the planted answer


class ZooEncoder:
    """Renders items into token ids with the library's prompts; one per (tokenizer, config)."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, config: ZooConfig) -> None:
        self.tok = tokenizer
        self.config = config
        self.prop = get_property(config.property)
        self.labels = self.prop.labels()
        probe = hypothetical_prompt(tokenizer, "x", self.prop, SPEC, task=config.task)
        self.label_ids = label_tokens(tokenizer, self.labels, probe.text, probe.prefill).first_ids

    def answer_tokens(self, question: str, answer: str) -> list[int]:
        o = object_prompt(self.tok, question, SPEC, task=self.config.task)
        return label_tokens(self.tok, [answer], o.text, o.prefill).token_ids[0]

    def encode(self, question: str, answer: str) -> Encoded:
        o = object_prompt(self.tok, question, SPEC, task=self.config.task)
        h = hypothetical_prompt(self.tok, question, self.prop, SPEC, task=self.config.task)
        ans = list(self.answer_tokens(question, answer))
        value = self.prop.extract(answer)
        if value not in self.labels:
            raise DataError(f"{self.config.property} of the answer {answer!r} is {value!r}, not a label")
        return Encoded(o.input_ids + ans + [self.tok.eos_token_id], len(o.input_ids), h.input_ids,
                       h.positions["quote_end"], ans[0], self.labels.index(value), value)


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[Int[Tensor, "b t"], Int[Tensor, "b t"], Int[Tensor, " b"]]:
    """Right-padded ids, attention mask and the index of each row's last real token."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask, mask.sum(1) - 1


def all_items(config: ZooConfig) -> Dataset:
    train, test = zoo_items(config)
    return concatenate_datasets([train, test])


__all__ = ["Encoded", "ZooEncoder", "all_items", "build_tokenizer", "pad_batch", "planted_answers", "text_pool", "zoo_items"]
