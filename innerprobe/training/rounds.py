"""Self-training rounds: a model learns from its own (introspective) data, round after round.

**The loop.** Round 0 measures the base model M_0. Round r = 1 … R then takes M_{r-1} and

1. **data**: M_{r-1} answers the round's *fresh* train items (disjoint across rounds, seeded:
   :meth:`~innerprobe.training.rounds_config.SelfTrainConfig.round_slice`) and the data policy
   (:mod:`innerprobe.training.policies`) turns its answers into rows; a seeded share of the items
   is held out for the early-stopping loss;
2. **adapter**: a LoRA adapter on M_{r-1} is trained on them, stopping when the held-out loss
   stops improving (:func:`~innerprobe.training.early_stop.finetune_early_stop`); the adapter is
   M_r, loadable by ``load_model(out_dir/round_r/adapter)`` (merged into M_{r-1}, itself merged
   into M_{r-2} …);
3. **cross**: (``cross = "trained"``) a peer, by default M_0, is finetuned on M_r's own
   behaviour on other fresh items: round r's cross-predictor
   (:mod:`innerprobe.training.rounds_cross`);
4. **measured**: M_r is measured on the same held-out test items and ground-truth questions as
   every round (:mod:`innerprobe.training.rounds_measure`), its self-prediction beside the
   cross-predictor's prediction of it.

**Resumable per step.** Each step's output is written atomically under ``out_dir/round_r/``
(``data/``, ``adapter/`` with ``trained.json`` last, ``cross/``, ``measure/``) and a finished round writes
``round.json`` (provenance, rows, epochs, wall seconds per phase). A rerun into the same
``out_dir`` with the same config skips finished rounds and resumes a killed one at its first
unfinished step; a killed training resumes from its last checkpoint (same adapter as an
uninterrupted run). Another config in the same ``out_dir`` is refused.

**Where the time goes, and what is reused.** The model that produced a round's data is kept
loaded for the next step; M_0 is loaded once and measured once (round 0's table is every
round's drift reference); one greedy decode per item serves every policy and property
(``model.greedy_cache``), and M_r's answers to round r + 1's items serve both its
cross-predictor's data and round r + 1's data. The phases' wall seconds are in ``.rounds``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset

from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_dir, provenance, read_json, write_json, write_parquet
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.tasks import load_items
from innerprobe.training.data import data_hash, load_training_data, save_training_data
from innerprobe.training.early_stop import finetune_early_stop
from innerprobe.training.policies import behaviour_config, policy_data
from innerprobe.training.rounds_config import SelfTrainConfig
from innerprobe.training.rounds_cross import (
    CROSS_DIR,
    cross_done,
    cross_record,
    train_cross,
)
from innerprobe.training.rounds_measure import measure_model
from innerprobe.training.rounds_result import SelfTrainResult

log = logging.getLogger(__name__)

Progress = Callable[[str, int], Callable[[int], None]]
CONFIG_FILE = "selftrain_config.json"


def round_dir(out_dir: Path, r: int) -> Path:
    return out_dir / f"round_{r}"


def round_items(config: SelfTrainConfig, r: int) -> list[Dataset]:
    """Round r's fresh train items, one Dataset per task (slice r-1 of one seeded draw)."""
    return [load_items(t, n=config.draw_size, split="train", seed=config.seed).select(config.round_slice(r - 1))
            for t in config.tasks]


def eval_items(config: SelfTrainConfig) -> list[Dataset]:
    """The test items every round is measured on (the same each round)."""
    return [load_items(t, n=config.n_eval, split="test", seed=config.seed) for t in config.tasks]


def split_heldout(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Hold out a seeded share of the *items* (all rows of an item go to one side)."""
    ids = sorted(set(data["item_id"]))
    rng = random.Random(seed)
    held = set(rng.sample(ids, max(1, round(fraction * len(ids))))) if len(ids) > 1 else set()
    col = data["item_id"]
    return (data.select([i for i, x in enumerate(col) if x not in held]),
            data.select([i for i, x in enumerate(col) if x in held]))


def _notify(progress: Progress | None, stage: str) -> None:
    if progress is not None:
        progress(stage, 1)(1)


def _check_config(out_dir: Path, config: SelfTrainConfig, base: LoadedModel) -> None:
    path = out_dir / CONFIG_FILE
    record = {"config": config.to_dict(), "base": base.fingerprint.to_dict()}
    if path.exists():
        old = read_json(path)
        if old["config"] != record["config"] or old["base"].get("weights_hash") != record["base"].get("weights_hash"):
            raise DataError(f"{out_dir} holds a self-training run with another config or base model; use another --out")
        return
    write_json(path, {**record, "provenance": provenance(base.fingerprint, seed=config.seed)})


class _Models:
    """The loaded models of the loop: M_0 always, the latest M_r (so no model loads twice), the peer."""

    def __init__(self, base: LoadedModel, out_dir: Path, cross_model: str | None = None) -> None:
        self.base, self.out_dir, self.latest = base, out_dir, (0, base)
        self.cross_model, self._peer = cross_model, None
        self.load_seconds = 0.0
        self.cross_cache: dict = {}

    def _timed_load(self, path: str | Path) -> LoadedModel:
        t0 = time.perf_counter()
        model = load_model(path, device=str(self.base.device))
        self.load_seconds += time.perf_counter() - t0
        return model

    def peer(self) -> LoadedModel:
        """The cross-predictor's model before training: ``cross_model``, or M_0."""
        if self.cross_model is None:
            return self.base
        if self._peer is None:
            self._peer = self._timed_load(self.cross_model)
        return self._peer

    def cross(self, r: int, config: SelfTrainConfig) -> LoadedModel | None:
        """Round r's cross-predictor: None for M_0, the trained peer, or the untrained one."""
        if r == 0:
            return None
        if config.cross == "trained":
            return self._timed_load(round_dir(self.out_dir, r) / CROSS_DIR / "adapter")
        return self.peer()

    def at(self, r: int) -> LoadedModel:
        if r == 0:
            return self.base
        if self.latest[0] != r:
            self.latest = (r, self._timed_load(round_dir(self.out_dir, r) / "adapter"))
        return self.latest[1]


def _measure(models: _Models, r: int, config: SelfTrainConfig, evals: list[Dataset], base_items: pd.DataFrame | None) -> dict:
    """Measure M_r into ``round_r/measure`` (atomically); returns its wall seconds."""
    d = round_dir(models.out_dir, r) / "measure"
    t0 = time.perf_counter()
    model = models.at(r)
    bcfg = behaviour_config(config.batch_size, config.seed)
    bcfg = dataclasses.replace(bcfg, calibration_samples=config.calibration_samples)
    measures, items, gt = measure_model(
        model, models.cross(r, config), evals, config.properties, bcfg, r, base_items,
        ground_truth=config.ground_truth, n_ground_truth=config.n_ground_truth, cross_cache=models.cross_cache,
    )
    seconds = time.perf_counter() - t0
    with atomic_dir(d) as tmp:
        write_parquet(tmp / "measures.parquet", measures)
        write_parquet(tmp / "items.parquet", items)
        write_parquet(tmp / "ground_truth.parquet", gt)
        write_json(tmp / "measured.json", {"seconds": seconds, "provenance": provenance(model.fingerprint, seed=config.seed)})
    return {"seconds": seconds}


def _build_data(models: _Models, r: int, config: SelfTrainConfig) -> None:
    """Round r's training rows from M_{r-1} into ``round_r/data`` (train + held-out, atomically)."""
    t0 = time.perf_counter()
    source = models.at(r - 1)
    items = round_items(config, r)
    data = policy_data(config.policy, source, items, config.properties, r, batch_size=config.batch_size, seed=config.seed)
    train, held = (split_heldout(data, config.heldout_fraction, config.seed + r) if config.patience is not None
                   else (data, data.select([])))
    seconds = time.perf_counter() - t0
    with atomic_dir(round_dir(models.out_dir, r) / "data") as tmp:
        extra = {"policy": config.policy, "round": r, "items": [len(i) for i in items]}
        save_training_data(train, tmp / "train.parquet", source, **extra)
        if len(held):
            save_training_data(held, tmp / "heldout.parquet", source, **extra)
        write_json(tmp / "built.json", {"seconds": seconds, "n_items": sum(len(i) for i in items),
                                        "n_rows": len(data), "n_items_kept": len(set(data["item_id"]))})


def _train(models: _Models, r: int, config: SelfTrainConfig, progress: Progress | None) -> None:
    d = round_dir(models.out_dir, r)
    train = load_training_data(d / "data" / "train.parquet")
    held_path = d / "data" / "heldout.parquet"
    held = load_training_data(held_path) if held_path.exists() else None
    t0 = time.perf_counter()
    cfg = config.round_finetune(r - 1)
    bar = progress(f"round {r} · training", cfg.epochs * -(-len(train) // cfg.batch_size)) if progress else None
    record = finetune_early_stop(models.at(r - 1), train, held, d / "adapter", cfg, patience=config.patience,
                                 progress=(lambda step, loss: bar(1)) if bar else None)
    write_json(d / "adapter" / "trained.json", {**record, "seconds": time.perf_counter() - t0, "data_hash": data_hash(train)})


def _cross(models: _Models, r: int, config: SelfTrainConfig, progress: Progress | None) -> None:
    """Train round r's cross-predictor on M_r's behaviour into ``round_r/cross`` (resumable)."""
    folder = round_dir(models.out_dir, r) / CROSS_DIR
    cfg = config.round_finetune(r - 1)
    bar = progress(f"round {r} · cross-predictor", cfg.epochs * -(-config.n_items * len(config.tasks) // cfg.batch_size)) \
        if progress else None
    train_cross(models.at(r), models.peer(), config, r, folder, split_heldout,
                progress=(lambda step, loss: bar(1)) if bar else None)


def _cross_columns(d: Path) -> dict[str, Any]:
    if not cross_done(d / CROSS_DIR):
        return {}
    rec = cross_record(d / CROSS_DIR)
    return {"n_cross_rows": rec["n_train_rows"], "cross_heldout_best": min(rec["epochs"]) if rec["epochs"] else None,
            "seconds_cross": rec["seconds"] + rec["seconds_data"]}


def _round_row(out_dir: Path, r: int) -> dict[str, Any]:
    d = round_dir(out_dir, r)
    row: dict[str, Any] = {"round": r, "seconds_measure": read_json(d / "measure" / "measured.json")["seconds"]}
    if r > 0:
        built, trained = read_json(d / "data" / "built.json"), read_json(d / "adapter" / "trained.json")
        train = load_training_data(d / "data" / "train.parquet")
        row.update(
            n_items=built["n_items"], n_items_kept=built["n_items_kept"], n_rows=built["n_rows"], n_train_rows=len(train),
            n_object_rows=sum(x == "object" for x in train["level"]),
            n_hypothetical_rows=sum(x == "hypothetical" for x in train["level"]),
            epochs_run=len(trained["epochs"]) or None, best_epoch=trained["best_epoch"],
            stopped_early=trained["stopped_early"], heldout_first=trained["epochs"][0] if trained["epochs"] else None,
            heldout_best=min(trained["epochs"]) if trained["epochs"] else None, steps=trained["steps"],
            seconds_data=built["seconds"], seconds_train=trained["seconds"], **_cross_columns(d),
        )
    row["seconds_load"] = read_json(d / "round.json").get("seconds_load", 0.0) if (d / "round.json").exists() else 0.0
    row["seconds_total"] = sum(v for k, v in row.items() if k.startswith("seconds_") and v)
    return row


def load_result(out_dir: str | Path) -> SelfTrainResult:
    """The result of the finished rounds under ``out_dir`` (what :func:`run_self_training` returns)."""
    out_dir = Path(out_dir)
    config = read_json(out_dir / CONFIG_FILE)["config"]
    done = [r for r in range(config["rounds"] + 1) if (round_dir(out_dir, r) / "round.json").exists()]
    table = pd.concat([pd.read_parquet(round_dir(out_dir, r) / "measure" / "measures.parquet") for r in done], ignore_index=True)
    rounds = pd.DataFrame([_round_row(out_dir, r) for r in done])
    return SelfTrainResult(table, rounds, config["policy"], config["rounds"], out_dir, config)


def run_self_training(
    base_model: LoadedModel,
    config: SelfTrainConfig,
    out_dir: str | Path,
    *,
    progress: Progress | None = None,
) -> SelfTrainResult:
    """Run (or resume) ``config.rounds`` self-training rounds from ``base_model``; see the module docstring.

    ``progress(stage, total)`` returns an ``advance`` callback (a progress bar); it is also told
    ``"round r · <step> saved"`` after each saved step. Writes ``out_dir/report.html`` at the end.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_config(out_dir, config, base_model)
    models = _Models(base_model, out_dir, config.cross_model)
    evals = eval_items(config)
    base_items = None
    for r in range(config.rounds + 1):
        d = round_dir(out_dir, r)
        if (d / "round.json").exists():
            log.info("round %d: done, skipped", r)
        else:
            models.load_seconds = 0.0
            if r > 0 and not (d / "data" / "built.json").exists():
                _build_data(models, r, config)
                _notify(progress, f"round {r} · data saved")
            if r > 0 and not (d / "adapter" / "trained.json").exists():
                _train(models, r, config, progress)
                _notify(progress, f"round {r} · adapter saved")
            if r > 0 and config.cross == "trained" and not cross_done(d / CROSS_DIR):
                _cross(models, r, config, progress)
                _notify(progress, f"round {r} · cross saved")
            if not (d / "measure" / "measured.json").exists():
                _measure(models, r, config, evals, base_items)
                _notify(progress, f"round {r} · measured")
            write_json(d / "round.json", {"round": r, "policy": config.policy, "seconds_load": models.load_seconds,
                                           "cross": config.cross, "cross_model": config.cross_model,
                                           "provenance": provenance(models.at(r).fingerprint, seed=config.seed, round=r)})
        if r == 0:
            base_items = pd.read_parquet(d / "measure" / "items.parquet")
    result = load_result(out_dir)
    result.save(out_dir / "result")
    result.write_report(out_dir / "report.html")
    return result


__all__ = ["CONFIG_FILE", "eval_items", "load_result", "round_dir", "round_items", "run_self_training", "split_heldout"]
