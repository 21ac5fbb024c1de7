"""Self-training rounds on SmolLM2: three data policies, several rounds, every round measured.

For each policy (``self_prediction``, ``self_filtered``, ``object_only``) the base model M_0
(SmolLM2-135M-Instruct) is self-trained for ``--rounds`` rounds by
:func:`innerprobe.training.rounds.run_self_training`: round r trains M_r (LoRA on M_{r-1}, early
stopped on held-out loss) on M_{r-1}'s answers to fresh items, trains M_r's cross-predictor (M_0
finetuned on M_r's answers to other fresh items), then measures M_r on the same test items
(self-prediction vs mode baseline, vs the cross-predictor, vs text-only; calibration MAD vs its
noise floor; drift from M_0; ground-truth accuracy on addition and parity questions).

Usage (a reduced item count; every policy resumes where it stopped)::

    OMP_NUM_THREADS=1 nice -n 19 python experiments/self_training_rounds.py \
        --policies self_prediction --rounds 3 --n 48 --n-eval 48 --out runs/selftrain

Writes ``<out>/<policy>/`` (rounds, adapters, report.html) and
``experiments/results/self_training_rounds.md`` (the numbers of the policies that finished; the
hand-written reading is added to that file by a person).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from innerprobe.models.load import load_model
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.rounds import CONFIG_FILE, load_result, run_self_training
from innerprobe.training.rounds_config import POLICIES, SelfTrainConfig

log = logging.getLogger("self_training_rounds")
KEY = ("self_accuracy", "mode_baseline", "cross_accuracy", "text_only", "self_minus_cross", "calibration_mad", "calibration_floor",
       "changed_share", "answer_entropy", "distinct_answers", "object_compliance", "gt_accuracy")


def _cell(r: pd.Series) -> str:
    if pd.isna(r["value"]):
        return "–"
    p = f", p={r['p_value']:.2g}" if pd.notna(r.get("p_value")) else ""
    return f"{r['value']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]{p}"


def policy_markdown(out: Path, policy: str) -> list[str]:
    res = load_result(out / policy)
    t = res.table
    t = t.assign(what=t["measure"] + t["task"].where(t["measure"] == "gt_accuracy", "").map(lambda s: f" ({s})" if s else ""))
    wide = t.pivot_table(index="what", columns="round", values="value", aggfunc="first")
    lines = [f"### {policy} ({res.summary.rounds_done}/{res.n_rounds} rounds)", "", "| measure | " +
             " | ".join(f"M_{c}" for c in wide.columns) + " |", "|---|" + "---|" * len(wide.columns)]
    order = {m: i for i, m in enumerate(KEY)}
    for what in sorted(wide.index, key=lambda w: (order.get(w.split(" ")[0], 99), w)):
        cells = [_cell(t[(t["what"] == what) & (t["round"] == c)].iloc[0]) if ((t["what"] == what) & (t["round"] == c)).any()
                 else "–" for c in wide.columns]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    cols = [c for c in ("round", "n_items", "n_items_kept", "n_train_rows", "n_object_rows", "n_hypothetical_rows", "epochs_run",
                        "best_epoch", "stopped_early", "heldout_first", "heldout_best", "n_cross_rows", "cross_heldout_best",
                        "seconds_data", "seconds_train", "seconds_cross", "seconds_load", "seconds_measure", "seconds_total") if c in res.rounds]
    r = res.rounds[cols]
    lines += ["", "Rounds (rows trained, early stopping, wall seconds per phase):", "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in r.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--task", default="animals")
    ap.add_argument("--property", default="second_character")
    ap.add_argument("--n", type=int, default=48, help="fresh train items per round")
    ap.add_argument("--n-eval", type=int, default=48)
    ap.add_argument("--n-ground-truth", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--calibration-samples", type=int, default=10)
    ap.add_argument("--cross", default="trained", help="trained | untrained")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/selftrain"))
    ap.add_argument("--md", type=Path, default=Path("experiments/results/self_training_rounds.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    for policy in args.policies.split(","):
        cfg = SelfTrainConfig(
            rounds=args.rounds, policy=policy, tasks=(args.task,), properties=(args.property,), n_items=args.n,
            finetune=FinetuneConfig(rank=args.rank, alpha=2 * args.rank, lr=args.lr, epochs=args.epochs, batch_size=8),
            patience=1, n_eval=args.n_eval, n_ground_truth=args.n_ground_truth,
            calibration_samples=args.calibration_samples, cross=args.cross, batch_size=16,
        )
        t0 = time.perf_counter()

        def progress(stage: str, total: int, _t0=t0):
            if "saved" in stage or "measured" in stage:
                log.info("%s (%.0f s)", stage, time.perf_counter() - _t0)
            return lambda n: None

        run_self_training(model, cfg, args.out / policy, progress=progress)
        log.info("%s: %.1f min", policy, (time.perf_counter() - t0) / 60)
    done = [p for p in POLICIES if (args.out / p / CONFIG_FILE).exists() and (args.out / p / "result").exists()]
    lines = [
        "# Self-training rounds on SmolLM2-135M-Instruct", "",
        f"Task {args.task} × {args.property}; {args.n} fresh train items per round, {args.n_eval} test items measured "
        f"every round, {args.n_ground_truth} questions per ground-truth task; LoRA rank {args.rank}, lr {args.lr}, "
        f"≤ {args.epochs} epochs early-stopped on held-out loss (patience 1). M_0 = base model; cross-predictor = "
        f"{'M_0 finetuned on M_r' + chr(39) + 's answers to other fresh items (same LoRA config, early stopping)' if args.cross == 'trained' else 'the untrained M_0'}; "
        f"calibration: {args.calibration_samples} T=1 samples per eval item, MAD beside its noise floor. Proportions: Wilson; self − cross: paired bootstrap + exact McNemar p; "
        "entropy / distinct answers: jackknife.", "",
        "Command: `OMP_NUM_THREADS=1 nice -n 19 python experiments/self_training_rounds.py --policies "
        f"{args.policies} --rounds {args.rounds} --n {args.n} --n-eval {args.n_eval} --n-ground-truth {args.n_ground_truth} "
        f"--epochs {args.epochs} --lr {args.lr} --rank {args.rank} --calibration-samples {args.calibration_samples} "
        f"--property {args.property} --out {args.out}`", "",
    ]
    for p in done:
        lines += policy_markdown(args.out, p)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    if args.md.exists() and "## Reading" in args.md.read_text():
        lines += ["## Reading", "", args.md.read_text().split("## Reading", 1)[1].strip(), ""]
    args.md.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
