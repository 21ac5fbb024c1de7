"""Benchmark: batched torch logistic probes vs the scikit-learn (layer, fold) loop.

Synthetic activations shaped like SmolLM2-135M's residual stream (30 layers, d_model 576, a few
massive dimensions, ~8 classes, n items), 5 grouped-stratified folds, the same folds for both paths.
Reports wall time of each path, their ratio, and the largest per-layer |accuracy difference|.

    python benchmarks/bench_probes.py [--n 500] [--layers 30] [--out bench_probes.json]

Both paths run single-threaded (torch and BLAS), so the ratio measures the method, not the
number of cores; pass ``--threads`` to change that.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from innerprobe import probes as P

log = logging.getLogger("bench_probes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path for the numbers (default: log only)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    signal = np.concatenate([np.linspace(0.1, 1.6, args.layers // 2), np.linspace(1.6, 0.8, args.layers - args.layers // 2)])
    x, y, _ = P.synthetic_activations(
        n=args.n, n_layers=args.layers, d=args.d, n_classes=args.classes, signal=signal, seed=args.seed
    )
    groups = [f"g{i // 2}" for i in range(args.n)]  # duplicate pairs must not straddle folds
    lab = P.encode_labels(y, folds=args.folds)
    fold = P.make_folds(lab.ids, groups, args.folds, args.seed)
    w = P.fold_weights(fold, args.folds)[:-1]  # the k CV folds only, as the sklearn loop fits
    xl = x.permute(1, 0, 2).contiguous()

    with threadpool_limits(args.threads):
        P.fit_logistic(xl[:1], torch.as_tensor(lab.ids), w, len(lab.classes), C=args.C, max_iter=3)  # warm-up
        t0 = time.perf_counter()
        fitted = P.fit_logistic(xl, torch.as_tensor(lab.ids), w, len(lab.classes), C=args.C)
        oof, _ = P.heldout_predictions(fitted, xl, fold)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = P.sklearn_logistic_oof(x, lab.ids, fold, C=args.C, tol=1e-4)
        t_ref = time.perf_counter() - t0

    acc_fast = (oof.numpy() == lab.ids).mean(1)
    acc_ref = (ref == lab.ids).mean(1)
    result = {
        "shape": {"n": args.n, "layers": args.layers, "d": args.d, "classes": args.classes, "folds": args.folds},
        "C": args.C,
        "threads": args.threads,
        "seconds_batched_torch": round(t_fast, 3),
        "seconds_sklearn_loop": round(t_ref, 3),
        "speedup": round(t_ref / t_fast, 2),
        "max_abs_acc_diff": float(np.abs(acc_fast - acc_ref).max()),
        "mean_acc_batched": float(acc_fast.mean()),
        "mean_acc_sklearn": float(acc_ref.mean()),
        "prediction_agreement": float((oof.numpy() == ref).mean()),
        "torch": torch.__version__,
    }
    log.info(json.dumps(result, indent=2))
    if args.out:
        from innerprobe.artifacts import write_json

        write_json(args.out, result)


if __name__ == "__main__":
    main()
