"""The trained cross-predictor of a self-training round: Binder et al.'s M2, rebuilt every round.

**Why it is needed.** After round r, M_r predicts its own behaviour. Beating the mode baseline
is not evidence of self-knowledge: any model shown enough of M_r's answers could learn the
same regularities ("it starts every list with 1"). The Looking Inward test is therefore *self
vs cross*: a second model, finetuned on the same facts about M_r's behaviour, predicts M_r on
the same held-out items; only a self-prediction above that cross-prediction suggests access
that M_r's outside observers lack. An untrained peer is a weak stand-in: it never saw M_r's
behaviour, so self-training would beat it even without any privileged access.

**The construction (round r >= 1).**

1. M_r answers fresh train items, slice r of the seeded draw
   (:meth:`~innerprobe.training.rounds_config.SelfTrainConfig.cross_slice`): the items round
   r + 1 trains on, so M_r decodes them once for both (``model.greedy_cache``). None of them is
   an eval item.
2. The ``self_prediction`` policy turns the answers into hypothetical rows: H(P, property) as
   the user turn, the property of *M_r's* answer as the target (the same prompts and composition
   as self-training; only whose behaviour the labels describe differs: here M_r's, as Binder
   trained M2 on the finetuned M1's behaviour).
3. The peer (``cross_model``, default the base M_0) gets a LoRA adapter with round r's finetune
   config, early-stopped on a seeded held-out share of the items, saved under
   ``round_r/cross/adapter``. Loaded, it is round r's cross-predictor.

The peer M_0 is M_r's ancestor: it shares M_r's pretraining, tokenizer and prompt format, which
makes it a *strong* cross-predictor (if M_r beats it, the advantage is not explained by family
resemblance). A model of another family can be named instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset

from innerprobe.core.io import atomic_dir, read_json, write_json
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.tasks import load_items
from innerprobe.training.data import data_hash, load_training_data, save_training_data
from innerprobe.training.early_stop import finetune_early_stop
from innerprobe.training.policies import policy_data
from innerprobe.training.rounds_config import SelfTrainConfig

CROSS_DIR = "cross"
DONE_FILE = "trained.json"


def cross_items(config: SelfTrainConfig, r: int) -> list[Dataset]:
    """The fresh items M_r's cross-predictor learns M_r's behaviour on, one Dataset per task."""
    return [load_items(t, n=config.draw_size, split="train", seed=config.seed).select(config.cross_slice(r))
            for t in config.tasks]


def build_cross_data(model_r: LoadedModel, config: SelfTrainConfig, r: int) -> Dataset:
    """Hypothetical rows whose targets are properties of M_r's own greedy answers (step 2)."""
    return policy_data("self_prediction", model_r, cross_items(config, r), config.properties, r,
                       batch_size=config.batch_size, seed=config.seed)


def train_cross(
    model_r: LoadedModel,
    peer: LoadedModel,
    config: SelfTrainConfig,
    r: int,
    folder: Path,
    split: Callable[[Dataset, float, int], tuple[Dataset, Dataset]],
    *,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Build round r's cross data (once, atomically) and train the peer on it; resumable.

    ``split(data, fraction, seed)`` holds out whole items for early stopping (the loop's own
    splitter, so self and cross stop by the same rule). Returns the record written to
    ``folder/adapter/trained.json``.
    """
    data_dir = folder / "data"
    t0 = time.perf_counter()
    if not (data_dir / "built.json").exists():
        data = build_cross_data(model_r, config, r)
        train, held = (split(data, config.heldout_fraction, config.seed + 1000 + r) if config.patience is not None
                       else (data, data.select([])))
        with atomic_dir(data_dir) as tmp:
            save_training_data(train, tmp / "train.parquet", model_r, policy="cross", round=r)
            if len(held):
                save_training_data(held, tmp / "heldout.parquet", model_r, policy="cross", round=r)
            write_json(tmp / "built.json", {"seconds": time.perf_counter() - t0, "n_rows": len(data),
                                            "n_items": len(set(data["item_id"]))})
    seconds_data = time.perf_counter() - t0
    train = load_training_data(data_dir / "train.parquet")
    held_path = data_dir / "heldout.parquet"
    held = load_training_data(held_path) if held_path.exists() else None
    t1 = time.perf_counter()
    record = finetune_early_stop(peer, train, held, folder / "adapter", config.round_finetune(r - 1),
                                 patience=config.patience, progress=progress)
    record = {**record, "seconds": time.perf_counter() - t1, "seconds_data": seconds_data, "data_hash": data_hash(train),
              "peer": peer.fingerprint.to_dict(), "n_train_rows": len(train)}
    write_json(folder / "adapter" / DONE_FILE, record)
    return record


def cross_done(folder: Path) -> bool:
    return (folder / "adapter" / DONE_FILE).exists()


def cross_record(folder: Path) -> dict[str, Any]:
    return read_json(folder / "adapter" / DONE_FILE)


__all__ = ["CROSS_DIR", "build_cross_data", "cross_done", "cross_items", "cross_record", "train_cross"]
