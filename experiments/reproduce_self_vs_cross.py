"""Self- vs cross-prediction after finetuning (Binder et al. 2024, §3.1) on small open models.

Design (the paper's, scaled down):

1. M = SmolLM2-135M-Instruct answers the object prompts of the *training* tasks (colors,
   countries, numbers) greedily; its property values become hypothetical → answer rows.
2. M1 = M + LoRA trained on those rows (self-training).
3. M1's object behaviour on the same training items is collected *after* training, and
   M2 = gemma-3-270m + LoRA is trained on it (cross-training; same prompts, same sizes).
4. On the *held-out* tasks (animals, english_words; test split) M1 predicts itself and M2
   predicts M1. Reported per (task, property): self, cross, self − cross (paired bootstrap CI),
   the mode baseline, a text-only logistic regression trained on M1's behaviour on the train split
   of the held-out task, and the calibration MAD (forced-choice distribution vs K sampled object
   answers) for the untrained M, M1 (self-trained) and M2 (cross-trained).

Every number of a cell (self, cross, self − cross, mode, text-only, M1/M2 calibration) is on the
same items: M1's *scored* test items (object-compliant, object value a label); the pooled
self − cross pools those rows only, and ``n`` is reported beside each. Proportions carry Wilson
intervals; self − cross a paired-bootstrap CI and an exact McNemar p-value. The untrained model
has its own behaviour, so its self accuracy is on its own scored items (``n_untrained``).

Usage::

    python experiments/reproduce_self_vs_cross.py --out runs/self_vs_cross            # full
    python experiments/reproduce_self_vs_cross.py --scale 0.1 --epochs 1 --out runs/svc_smoke

Writes ``<out>/results.json`` (with provenance) and a markdown summary to ``--summary``
(default ``experiments/results/self_vs_cross[_smoke].md``). Large outputs (adapters, data,
tables) stay under ``--out`` (git-ignored ``runs/``).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from innerprobe.behavior import BehaviorConfig, behave, compare_self_cross, pooled_from_tables
from innerprobe.core import stats
from innerprobe.core.io import provenance, write_json, write_parquet
from innerprobe.models.load import load_model
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.training.data import (
    HELDOUT_TASKS,
    TRAIN_TASKS,
    build_training_data,
    load_training_data,
    save_training_data,
)
from innerprobe.training.finetune import FinetuneConfig, finetune

log = logging.getLogger("reproduce_self_vs_cross")

PROPERTIES = ("first_character", "second_character", "third_character", "is_even")
EVAL_PROPERTIES = ("first_character", "second_character")


def cross_mad(table, labels: list[str]) -> float | None:
    """Calibration MAD of the cross-predictor on the table's scored items (as the self MAD)."""
    if "object_distribution_sampled" not in table or "cross_distribution" not in table:
        return None
    obj, hyp = [], []
    for o, h, ok in zip(table["object_distribution_sampled"], table["cross_distribution"], table["scored"]):
        od = ast.literal_eval(o)
        if ok and od:
            obj.append(od)
            hyp.append(dict(zip(labels, map(float, h))))
    return stats.calibration_from_distributions(obj, hyp, top_k=1) if obj else None


def cached_training_data(source, path: Path, n_combo: int, seed: int):
    """Training rows of ``source`` from ``path`` when an earlier run of the same settings wrote them
    (same model weights, item count and seed), else ``None``: a rerun resumes after this stage."""
    prov_path = path.with_suffix(path.suffix + ".provenance.json")
    if not path.exists() or not prov_path.exists():
        return None
    prov = json.loads(prov_path.read_text())
    same = (
        prov.get("model", {}).get("weights_sha256") == source.fingerprint.weights_sha256
        and prov.get("n_per_combo") == n_combo
        and prov.get("seed") == seed
    )
    if not same:
        log.info("%s was written with other settings: rebuilding", path)
        return None
    data = load_training_data(path)
    log.info("resumed %d training rows from %s", len(data), path)
    return data


def training_data(source, path: Path, n_combo: int, seed: int):
    """Build (or resume) ``source``'s training rows on the training tasks."""
    data = cached_training_data(source, path, n_combo, seed)
    if data is None:
        data = build_training_data(source, TRAIN_TASKS, PROPERTIES, n_combo, seed=seed)
        save_training_data(data, path, source, n_per_combo=n_combo, seed=seed)
    return data


ROW_VERSION = 2
"""Bumped when a row's statistics change meaning (2: all on scored items, Wilson, McNemar), so
cells written by an older version are recomputed instead of resumed."""


def eval_cell(out: Path, task: str, pname: str, compute) -> tuple[dict[str, Any], Any]:
    """One held-out (task, property) cell: ``(row, table)``, computed once and resumed after.

    The table goes to ``eval_<task>_<property>.parquet`` and the row to the matching ``.json``
    (written last, so a cell counts as done only when both exist, with this ``ROW_VERSION``).
    """
    table_path = out / f"eval_{task}_{pname}.parquet"
    row_path = out / f"eval_{task}_{pname}.json"
    if table_path.exists() and row_path.exists():
        saved = json.loads(row_path.read_text())
        if saved.get("row_version") == ROW_VERSION:
            log.info("resumed %s × %s from %s", task, pname, row_path)
            return saved["row"], pd.read_parquet(table_path)
        log.info("%s was written by an older row version: recomputing", row_path)
    row, table = compute()
    write_parquet(table_path, table)
    write_json(row_path, {"row": row, "row_version": ROW_VERSION})
    return row, table


def full_run_minutes(wall_s: float, scale: float) -> float:
    """Extrapolate a scaled run's wall time to scale 1 (same epochs, same machine load)."""
    return wall_s / scale / 60


def markdown(results: dict[str, Any]) -> str:
    r = results
    lines = [
        f"# Self- vs cross-prediction ({'smoke run' if r['scale'] < 1 else 'full run'})",
        "",
        f"M/M1 = {r['m']}, M2 = {r['m2']}; training tasks {r['train_tasks']}, held-out {r['heldout_tasks']}; "
        f"{r['n_train_m1']} M1 rows, {r['n_train_m2']} M2 rows, {r['epochs']} epoch(s), scale {r['scale']}.",
        f"Wall time {r['wall_s'] / 60:.1f} min; mean step {r['step_seconds']:.2f} s.",
        "",
        "## Held-out self vs cross (pooled)",
        "",
        f"self − cross = {r['pooled']['diff']} over n = {r['pooled']['n']} scored items "
        f"(paired bootstrap p = {r['pooled']['p_value']:.3f}, exact McNemar p = {r['pooled']['mcnemar_p']:.3g}); "
        f"self {r['pooled']['a']}, cross {r['pooled']['b']} (Wilson)",
        "",
        "## Per task × property",
        "",
        "All columns of a row are on the same n scored items (untrained self: on its own n_untrained).",
        "",
        "| task | property | n | n untrained | untrained self | M1 self [Wilson] | M2 cross [Wilson] | self − cross [95% CI] | McNemar p | mode | text-only | MAD untrained | MAD M1 | MAD M2 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["table"]:
        f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        ci = lambda v, c: f"{v:.3f} [{c[0]:.3f}, {c[1]:.3f}]"  # noqa: E731
        lines.append(
            f"| {row['task']} | {row['property']} | {row['n']} | {row.get('n_untrained', '–')} | {f(row['untrained_self'])} | "
            f"{ci(row['self'], row['self_ci'])} | {ci(row['cross'], row['cross_ci'])} | "
            f"{row['self_minus_cross']:+.3f} [{row['diff_ci'][0]:+.3f}, {row['diff_ci'][1]:+.3f}] | {f(row.get('mcnemar_p'))} | "
            f"{f(row['mode'])} | {f(row['text'])} | {f(row['mad_untrained'])} | {f(row['calibration_mad'])} | {f(row['mad_cross'])} |"
        )
    lines += ["", "MAD in percentage points (forced-choice distribution vs sampled object answers, top-1).", ""]
    if r["scale"] < 1:
        lines += [
            f"Smoke run only (numbers on {r['n_test_per_task']} items per task mean nothing); the full run "
            f"(scale 1, same epochs) is extrapolated at {r['full_estimate_min']:.0f} min at this run's machine load.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", default="smollm2-135m-instruct")
    ap.add_argument("--m2", default="gemma-3-270m")
    ap.add_argument("--n-per-combo", type=int, default=180, help="items per (task, property) at scale 1 (180 gives >= 1000 rows for M1 and M2)")
    ap.add_argument("--n-test", type=int, default=100, help="held-out test items per task at scale 1")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies --n-per-combo and --n-test")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--calibration-samples", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 avoids thrashing on a shared box)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/self_vs_cross"))
    ap.add_argument("--summary", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    n_combo = max(4, round(args.n_per_combo * args.scale))
    n_test = max(4, round(args.n_test * args.scale))
    fcfg = FinetuneConfig(rank=args.rank, alpha=2 * args.rank, lr=args.lr, epochs=args.epochs,
                          batch_size=args.batch_size, seed=args.seed, save_every=50)
    bcfg = BehaviorConfig(mode="forced", calibration_samples=args.calibration_samples, seed=args.seed)
    timings: dict[str, float] = {}

    def tick(name: str, since: float) -> float:
        timings[name] = time.time() - since
        log.info("%s took %.1f s", name, timings[name])
        return time.time()

    t = time.time()
    m = load_model(args.m, device="cpu")
    data1 = training_data(m, args.out / "m1_train.jsonl", n_combo, args.seed)
    t = tick("m1_data", t)
    run1 = finetune(m, data1, args.out / "m1", fcfg, resume=True)
    t = tick("m1_train", t)
    m1 = load_model(args.out / "m1", device="cpu")
    data2 = training_data(m1, args.out / "m2_train.jsonl", n_combo, args.seed)
    t = tick("m2_data", t)
    m2_base = load_model(args.m2, device="cpu")
    run2 = finetune(m2_base, data2, args.out / "m2", fcfg, resume=True)
    t = tick("m2_train", t)
    m2 = load_model(args.out / "m2", device="cpu")
    del m2_base
    rows, tables = [], []
    for task in HELDOUT_TASKS:
        test = load_items(task, n=n_test, split="test", seed=args.seed)
        train = load_items(task, n=n_combo, split="train", seed=args.seed)
        for pname in EVAL_PROPERTIES:
            prop = get_property(pname)

            def compute(test=test, train=train, prop=prop):
                untrained = behave(m, test, prop, bcfg)
                comp = compare_self_cross(m1, m2, test, prop, bcfg, text_train_items=train)
                row = comp.row()
                row.update(
                    untrained_self=untrained.self_accuracy.value,
                    n_untrained=untrained.self_accuracy.n,
                    mad_untrained=untrained.summary.calibration_mad,
                    mad_cross=cross_mad(comp.table, untrained.summary.labels),
                )
                return row, comp.table

            row, table = eval_cell(args.out, task, pname, compute)
            rows.append(row)
            tables.append(table)
    t = tick("eval", t)
    pooled = pooled_from_tables(tables, seed=args.seed)
    wall = time.time() - t0
    steps = run1.history + run2.history
    step_s = float(np.mean(np.diff([0.0] + [h["seconds"] for h in run1.history]))) if run1.history else 0.0
    # Generation and evaluation scale with the item count, training with the row count (same
    # epochs); model loading does not scale, so this is an upper bound for the same machine load.
    full_estimate = full_run_minutes(wall, args.scale)
    results = {
        "scale": args.scale, "m": args.m, "m2": args.m2, "epochs": args.epochs,
        "train_tasks": list(TRAIN_TASKS), "heldout_tasks": list(HELDOUT_TASKS),
        "n_train_m1": len(data1), "n_train_m2": len(data2), "n_test_per_task": n_test,
        "pooled": {"a": str(pooled.a), "b": str(pooled.b), "diff": str(pooled.diff), "p_value": pooled.p_value,
                   "mcnemar_p": pooled.mcnemar_p, "n": pooled.n, "rows": "scored rows only",
                   "estimates": {"self": pooled.a, "cross": pooled.b, "diff": pooled.diff}},
        "table": rows, "timings_s": timings, "wall_s": wall, "step_seconds": step_s,
        "n_steps": len(steps), "full_estimate_min": full_estimate,
        "final_loss": {"m1": run1.history[-1]["loss"], "m2": run2.history[-1]["loss"]},
        "provenance": provenance(m.fingerprint, seed=args.seed, m1=str(args.out / "m1"), m2=str(args.out / "m2"),
                                 m2_base=args.m2, finetune=fcfg.to_dict(), behavior={"calibration_samples": args.calibration_samples}),
    }
    write_json(args.out / "results.json", results)
    write_parquet(args.out / "table.parquet", pd.DataFrame(rows).astype({"self_ci": str, "cross_ci": str, "diff_ci": str, "mode_ci": str, "text_ci": str}))
    summary = args.summary or Path("experiments/results") / ("self_vs_cross.md" if args.scale >= 1 else "self_vs_cross_smoke.md")
    summary.parent.mkdir(parents=True, exist_ok=True)
    from innerprobe.core.io import atomic_path

    with atomic_path(summary) as tmp:
        tmp.write_text(markdown(results))
    log.info("wrote %s and %s (%.1f min; full run estimate %.0f min)", args.out / "results.json", summary, wall / 60, full_estimate)


if __name__ == "__main__":
    main()
