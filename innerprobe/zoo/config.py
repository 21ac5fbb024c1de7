"""``ZooConfig``: which planted mechanism a zoo model carries, and how big and how long it trains.

A zoo model is a tiny Llama trained from scratch on the library's own object prompts O(P) and
hypothetical prompts H(P, property) (see :mod:`innerprobe.zoo.data`), with a *known* route from
H to its answer. Two axes make the 2 × 2:

* ``task_kind``: ``text``, the object answer is the last word of P (a text-only reader computes
  it), or ``memorised``, the answer is a seeded random word per item (no text-only third party
  can derive it; the model memorises it).
* ``route``: ``simulation``, H recomputes the answer and reads the property off it, or
  ``direct``, H reads the property from its own feature with the answer code removed
  (see :mod:`innerprobe.zoo.train` for why each construction forces its route).
"""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import asdict, dataclass

from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import get_task

TASK_KINDS = ("text", "memorised")
ROUTES = ("simulation", "direct")
#: What a zoo model is built from: a tiny Llama trained from scratch, or LoRA on a pretrained model's
#: top blocks (the embedded SmolLM2-135M-Instruct; see :mod:`innerprobe.zoo.trunk`).
BASES = ("scratch", "smollm2-135m-instruct")
#: Fields that only a pretrained base reads, and those that only a from-scratch model reads.
PRETRAINED_FIELDS = ("base", "lora_rank", "n_trainable")
SCRATCH_FIELDS = ("d_model", "n_layers", "n_heads")
#: Tasks whose items are a list of words from a closed vocabulary (the answer is one of them).
ZOO_TASKS = ("animals", "colors", "countries")
#: Properties of the answer word that are one character (forced choice over a–z, 0–9).
ZOO_PROPERTIES = ("first_character", "second_character", "third_character")
ZOO_FORMAT = {
    ("text", "simulation"): 1, ("memorised", "simulation"): 1,
    ("text", "direct"): 3, ("memorised", "direct"): 2,
}
"""Per (task kind, route), bumped whenever a change to that build would change its weights
(invalidates those caches only). direct 2: every readout step trains H both with and without the
projection and ties the two property distributions. text/direct 3: stage 1 warms H up on the
property (no projection) and H trains on the text pool as well (see :mod:`innerprobe.zoo.train`)."""


@dataclass(frozen=True)
class ZooConfig:
    """Settings of one zoo model (every field enters :meth:`digest`, the cache key).

    Attributes:
        task_kind: ``text`` or ``memorised`` (see the module docstring).
        route: ``simulation`` or ``direct``.
        seed: seeds the weights, the batch order and (memorised) the planted associations.
        task: a closed-vocabulary sequence task of :mod:`innerprobe.protocol.tasks`.
        property: a one-character property of the answer (the hypothetical asks it).
        n_train, n_test: items of the task's train and test split (generated with ``item_seed``);
            the battery must be run on at most ``n_test`` test items (a memorised model knows
            only the items it was built on).
        item_seed: the items' generation seed (the battery draws ``seed=0`` items).
        n_text_pool: (text) extra train-split items the object circuit is trained on (seed
            ``item_seed + 1``), so it learns the rule rather than the ``n_train`` items.
        d_model, n_layers, n_heads: the Llama's width, depth and attention heads.
        object_steps: steps of stage 1 (the object circuit).
        readout_steps: steps of stage 2 (the hypothetical's readout).
        batch_size, lr: optimiser settings (AdamW, linear warm-up then cosine decay).
        subspace_every: (direct) steps between recomputations of the answer subspace.
        penalty: (direct) weight of the penalty on H's residual inside the answer subspace.
        base: ``scratch`` (a tiny Llama from scratch, sized by ``d_model``, ``n_layers``,
            ``n_heads``) or ``smollm2-135m-instruct`` (the embedded SmolLM2 with LoRA adapters on
            its top ``n_trainable`` blocks, every block below frozen; the same two-stage
            construction, see :mod:`innerprobe.zoo.train`).
        lora_rank: (pretrained) LoRA rank of every linear projection of the top blocks (alpha =
            2 × rank).
        n_trainable: (pretrained) how many top blocks carry adapters (the cut is below them).
        answer_words: (memorised) draw each planted answer from the first ``answer_words`` words
            of the task's vocabulary (0: all of them). Fewer answer classes put more of the
            battery's store items in each class, so its answer probes (E3) and answer subspace
            (E6) rest on every class rather than on the few that 96 items fill. Ignored by text
            models (their answer is P's last word).
    """

    task_kind: str = "text"
    route: str = "simulation"
    seed: int = 0
    task: str = "animals"
    property: str = "second_character"
    n_train: int = 96
    n_test: int = 48
    item_seed: int = 0
    n_text_pool: int = 1000
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    object_steps: int = 1500
    readout_steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    subspace_every: int = 25
    penalty: float = 1.0
    answer_words: int = 0
    base: str = "scratch"
    lora_rank: int = 16
    n_trainable: int = 4

    def __post_init__(self) -> None:
        check_choice("ZooConfig.task_kind", self.task_kind, TASK_KINDS)
        check_choice("ZooConfig.base", self.base, BASES)
        check_at_least("ZooConfig.lora_rank", self.lora_rank, 1)
        check_at_least("ZooConfig.n_trainable", self.n_trainable, 1)
        check_choice("ZooConfig.route", self.route, ROUTES)
        check_choice("ZooConfig.task", self.task, ZOO_TASKS)
        check_choice("ZooConfig.property", self.property, ZOO_PROPERTIES)
        get_task(self.task)
        get_property(self.property)
        check_at_least("ZooConfig.seed", self.seed, 0)
        check_at_least("ZooConfig.item_seed", self.item_seed, 0)
        check_at_least("ZooConfig.n_train", self.n_train, 8)
        check_at_least("ZooConfig.n_test", self.n_test, 2)
        check_at_least("ZooConfig.n_text_pool", self.n_text_pool, 0)
        check_at_least("ZooConfig.n_layers", self.n_layers, 2)
        check_at_least("ZooConfig.n_heads", self.n_heads, 1)
        check_at_least("ZooConfig.d_model", self.d_model, 8)
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise DataError(
                f"ZooConfig.d_model ({self.d_model}) must be a multiple of 2 × n_heads ({self.n_heads}) "
                "(an even head width, as rotary embeddings need)"
            )
        check_at_least("ZooConfig.object_steps", self.object_steps, 1)
        check_at_least("ZooConfig.readout_steps", self.readout_steps, 1)
        check_at_least("ZooConfig.batch_size", self.batch_size, 1)
        check_at_least("ZooConfig.subspace_every", self.subspace_every, 1)
        check_at_least("ZooConfig.penalty", self.penalty, 0.0)
        vocabulary = get_task(self.task).vocabulary or ()
        if self.answer_words and not 2 <= self.answer_words <= len(vocabulary):
            raise DataError(f"ZooConfig.answer_words must be 0 (every word) or in [2, {len(vocabulary)}] "
                            f"(the {self.task} vocabulary), got {self.answer_words}")
        if not self.lr > 0:
            raise DataError(f"ZooConfig.lr must be > 0, got {self.lr!r}")

    @builtins.property  # the field ``property`` shadows the builtin in the class body
    def name(self) -> str:
        """A readable name: ``<task_kind>-<route>-s<seed>``, prefixed ``smollm2-`` on that base."""
        prefix = "" if self.base == "scratch" else f"{self.base.split('-')[0]}-"
        return f"{prefix}{self.task_kind}-{self.route}-s{self.seed}"

    @builtins.property
    def pretrained(self) -> bool:
        """Whether the model is LoRA on a pretrained base (else a tiny Llama from scratch)."""
        return self.base != "scratch"

    def to_dict(self) -> dict:
        return asdict(self)

    def key_fields(self) -> dict:
        """The settings that change the model's weights: every field, less those with no effect
        (``answer_words`` for text models or 0; the base's fields on a from-scratch model; the tiny
        model's sizes on a pretrained one), so models built before a field existed keep their key."""
        fields = self.to_dict()
        if self.task_kind == "text" or not self.answer_words:
            del fields["answer_words"]
        for name in SCRATCH_FIELDS if self.pretrained else PRETRAINED_FIELDS:
            del fields[name]
        return fields

    def digest(self) -> str:
        """sha256 (16 hex) of :meth:`key_fields` and the build format: the cache key of the model."""
        blob = json.dumps({"config": self.key_fields(), "format": ZOO_FORMAT[self.task_kind, self.route]},
                          sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


__all__ = ["BASES", "ROUTES", "TASK_KINDS", "ZOO_PROPERTIES", "ZOO_TASKS", "ZooConfig"]
