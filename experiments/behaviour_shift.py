"""Behaviour-shift test (Binder et al. 2024, §3.4) on a self-trained SmolLM2 (M1).

If self-prediction reads privileged access to the model's *current* policy, then changing the
policy at the object level alone should carry the self-predictions along: after M1 is finetuned
on another model's object-level answers (never on a hypothetical), on items where its object
behaviour changed, it should predict its *new* behaviour more often than its old one.

1. old behaviour: M1's greedy object-level property on held-in test items;
2. M1 + LoRA trained on the teacher's object answers (O(P) → teacher answer) for train items;
3. the shifted model's new behaviour and its forced-choice self-predictions on the test items;
4. on the items whose property changed: P(predicts new), P(predicts old), their paired
   difference with a bootstrap CI, beside the shifted model's mode baseline on those items and
   the control that decides the reading: how often the *unshifted* M1's predictions already
   matched the new behaviour (the teacher's answers may be guessable from the input).

Usage::

    python experiments/behaviour_shift.py --model runs/self_vs_cross/m1 --out runs/behaviour_shift

Writes ``<out>/results.json``, ``<out>/table.parquet`` and ``experiments/results/behaviour_shift.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from innerprobe.behavior import BehaviorConfig
from innerprobe.core import stats
from innerprobe.core.io import atomic_path, provenance, write_json, write_parquet
from innerprobe.models.load import load_model
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.training.finetune import FinetuneConfig
from innerprobe.training.shift import behaviour_shift

log = logging.getLogger("behaviour_shift")


def markdown(r: dict) -> str:
    s = r["shift"]
    lines = [
        "# Behaviour shift: does a self-trained model predict its new or its old behaviour?",
        "",
        f"Model {r['model']} (M1) finetuned on {r['teacher']}'s object-level answers "
        f"({r['n_train_rows']} rows of {r['task']}, {r['epochs']} epoch(s), rank {r['rank']}); "
        f"evaluated on {s['n_items']} test items, property {r['property']}. Wall time {r['wall_s'] / 60:.1f} min.",
        "",
        f"Items whose object-level {r['property']} changed: {s['n_changed']} of {s['n_items']}.",
        "",
    ]
    if s["n_changed"]:
        lines += [
            "Proportions: Wilson score intervals; paired differences: paired bootstrap CI and exact McNemar p.",
            "",
            "| on changed items | value |",
            "|---|---|",
            f"| predicts the new behaviour | {s['predicts_new']} |",
            f"| predicts the old behaviour | {s['predicts_old']} |",
            f"| new − old (paired bootstrap) | {s['new_minus_old']} (p = {s['p_value']:.3f}, exact McNemar p = {s.get('mcnemar_p') or float('nan'):.3g}) |",
            f"| control: the unshifted M1's predictions scored against the new behaviour | {s['before_predicts_new']} |",
            f"| shifted − unshifted, predicting the new behaviour (paired) | {s['after_minus_before']} (p = {s['after_minus_before_p']:.3f}, exact McNemar p = {s.get('after_minus_before_mcnemar_p') or float('nan'):.3g}) |",
            f"| mode baseline of the new behaviour on these items | {r['mode_new']} |",
            "",
        ]
    else:
        lines += ["No item changed: the test says nothing about this model.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/self_vs_cross/m1", help="the self-trained model (adapter dir)")
    ap.add_argument("--teacher", default="gemma-3-270m", help="whose object answers shift the behaviour")
    ap.add_argument("--task", default="colors")
    ap.add_argument("--property", default="first_character")
    ap.add_argument("--n-train", type=int, default=240)
    ap.add_argument("--n-test", type=int, default=120)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/behaviour_shift"))
    ap.add_argument("--summary", type=Path, default=Path("experiments/results/behaviour_shift.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    prop = get_property(args.property)
    m1 = load_model(args.model, device="cpu")
    teacher = load_model(args.teacher, device="cpu")
    train = load_items(args.task, n=args.n_train, split="train", seed=args.seed)
    test = load_items(args.task, n=args.n_test, split="test", seed=args.seed)
    fcfg = FinetuneConfig(rank=args.rank, alpha=2 * args.rank, lr=args.lr, epochs=args.epochs, seed=args.seed)
    bcfg = BehaviorConfig(mode="forced", seed=args.seed)
    res = behaviour_shift(m1, teacher, train, test, prop, args.out / "shifted", fcfg, bcfg)
    changed = res.table[res.table["changed"]] if res.table is not None else None
    mode_new = stats.mode_baseline(list(changed["new_value"])).estimate if changed is not None and len(changed) else None
    results = {
        "model": args.model, "teacher": args.teacher, "task": args.task, "property": prop.name,
        "epochs": args.epochs, "rank": args.rank,
        "n_train_rows": res.n_train_rows,
        "shift": {k: (str(v) if isinstance(v, stats.Estimate) else v) for k, v in res.to_dict().items()},
        "mode_new": str(mode_new) if mode_new is not None else None,
        "wall_s": time.time() - t0,
        "provenance": provenance(m1.fingerprint, seed=args.seed, teacher=teacher.fingerprint.to_dict(),
                                 finetune=fcfg.to_dict()),
    }
    write_json(args.out / "results.json", results)
    if res.table is not None:
        write_parquet(args.out / "table.parquet", res.table)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.summary) as tmp:
        tmp.write_text(markdown(results))
    log.info("wrote %s and %s (%.1f min)", args.out / "results.json", args.summary, results["wall_s"] / 60)


if __name__ == "__main__":
    main()
