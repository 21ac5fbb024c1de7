"""M1 for the battery: the base model M after a short LoRA self-training, trained once and cached.

**Method** (Binder et al. 2024's M1 step). M answers ``m1_train_items`` object prompts of the
battery's task from the **train split**; the property of each own greedy answer becomes the
target of the hypothetical H(P) that asks for it
(:func:`~innerprobe.training.policies.self_prediction_data`). A LoRA adapter (rank
``m1_rank``, ``m1_steps`` AdamW steps at ``m1_lr``) is trained on these rows
(:func:`~innerprobe.training.finetune.finetune`) and merged into a copy of M. The battery then
runs every experiment on M1 exactly as on M, so "represented but not read out" (the answer is
decodable in H but self-prediction sits at its baseline) can be told apart from "read out after
training".

**Never the test items.** The battery measures test-split items; training items are drawn from
the train split, and any train item whose question also occurs among the test items any step
draws (``max(n_items, patch_items)`` of them) is dropped. ``innerprobe_m1.json`` records the
training items' digest, the questions dropped and the rows trained on.

**Cache.** The merged model is a plain HF directory under
``cache_dir("battery_m1") / "<m1 digest>-<base weights sha>"``: keyed by the settings training
reads (:meth:`~innerprobe.study.battery_config.BatteryConfig.m1_digest`) and the base model's
fingerprint, written atomically (``atomic_dir``: an interrupted training leaves no half
directory). A second battery finds it and loads it; it never retrains.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from datasets import Dataset

from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_dir, provenance, read_json, write_json
from innerprobe.core.paths import cache_dir
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.tasks import items_digest, load_items
from innerprobe.study.battery_config import M1_FIELDS, BatteryConfig
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.finetune import finetune, merged_copy
from innerprobe.training.policies import self_prediction_data

log = logging.getLogger(__name__)
M1_META = "innerprobe_m1.json"


def m1_dir(config: BatteryConfig, base: LoadedModel) -> Path:
    """Where M1 of ``config`` on ``base`` is cached (exists or not)."""
    return cache_dir("battery_m1") / f"{config.m1_digest()}-{base.fingerprint.weights_sha256[:12]}"


def measured_questions(config: BatteryConfig) -> set[str]:
    """Questions of every test item a battery step of ``config`` draws."""
    n = max(config.n_items, config.quick_n_items, config.patch_items)
    return set(load_items(config.task, n=n, split="test", seed=config.seed)["question"])


def train_items(config: BatteryConfig) -> tuple[Dataset, int]:
    """Train-split items for M1, with any question shared with the test items dropped.

    Returns the items and how many were dropped.
    """
    items = load_items(config.task, n=config.m1_train_items, split="train", seed=config.seed)
    test = measured_questions(config)
    keep = [i for i, q in enumerate(items["question"]) if q not in test]
    if not keep:
        raise DataError(f"M1: every one of {len(items)} train items of {config.task!r} is also a test item")
    return items.select(keep), len(items) - len(keep)


def m1_training_data(base: LoadedModel, config: BatteryConfig) -> tuple[Dataset, Dataset, int]:
    """``(rows, items, dropped)``: hypothetical → own-property rows on train items (see the module docstring)."""
    items, dropped = train_items(config)
    rows = self_prediction_data(base, [items], [config.property], 1, batch_size=config.batch_size, seed=config.seed)
    return rows, items, dropped


def finetune_config(config: BatteryConfig) -> FinetuneConfig:
    """M1's LoRA settings: ``m1_steps`` steps of 8 rows, as many epochs as that takes."""
    per_epoch = max(1, -(-config.m1_train_items // 8))
    epochs = max(1, -(-config.m1_steps // per_epoch))
    return FinetuneConfig(rank=config.m1_rank, alpha=2 * config.m1_rank, lr=config.m1_lr, epochs=epochs,
                          batch_size=8, max_steps=config.m1_steps, seed=config.seed)


def train_m1(base: LoadedModel, config: BatteryConfig, out: Path) -> Path:
    """Train M1 from ``base`` and write the merged model to ``out`` atomically; return ``out``."""
    t0 = time.perf_counter()
    rows, items, dropped = m1_training_data(base, config)
    fcfg = finetune_config(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".m1-adapter-", dir=out.parent) as adapter:
        res = finetune(base, rows, Path(adapter) / "adapter", fcfg)
        merged = merged_copy(res.model)
        meta = {
            "role": "M1",
            "settings": {k: getattr(config, k) for k in M1_FIELDS},
            "m1_digest": config.m1_digest(),
            "finetune": fcfg.to_dict(),
            "train_split": "train",
            "train_items_digest": items_digest(items),
            "n_train_items": len(items),
            "n_dropped_shared_with_test": dropped,
            "n_rows": len(rows),
            "steps": res.step,
            "first_loss": res.history[0]["loss"] if res.history else None,
            "final_loss": res.history[-1]["loss"] if res.history else None,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "provenance": provenance(base.fingerprint, seed=config.seed, data_hash=res.data_hash),
        }
        with atomic_dir(out) as tmp:
            merged.save_pretrained(tmp)
            base.tokenizer.save_pretrained(tmp)
            write_json(tmp / M1_META, meta)
    log.info("M1 trained in %.1f s (%d rows, loss %.3g -> %.3g), cached at %s", meta["train_seconds"],
             len(rows), meta["first_loss"] or float("nan"), meta["final_loss"] or float("nan"), out)
    return out


def m1_info(path: Path) -> dict:
    """The training record of a cached M1."""
    return read_json(path / M1_META)


def load_m1(config: BatteryConfig, base: LoadedModel | None = None) -> LoadedModel:
    """M1 of ``config``: loaded from the cache, trained (once) when it is not there."""
    base = base if base is not None else load_model(config.model)
    out = m1_dir(config, base)
    if not (out / M1_META).exists():
        log.info("M1 not cached at %s: training it (%d steps)", out, config.m1_steps)
        train_m1(base, config, out)
    return load_model(out, device=str(base.device))


__all__ = ["M1_META", "finetune_config", "load_m1", "m1_dir", "m1_info", "m1_training_data", "measured_questions",
           "train_items", "train_m1"]
