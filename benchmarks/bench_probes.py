"""Benchmark: batched torch probes vs scikit-learn (layer, fold) loops, in one run.

Synthetic activations shaped like SmolLM2-135M's residual stream (30 layers, d_model 576, a few
massive dimensions, ~8 classes, n items), 5 grouped-stratified folds, the same folds for every path.
Reports, with wall times and ratios measured in this one run:

* ``ridge``: batched closed-form :func:`~innerprobe.probes.fit_ridge` vs a loop of
  ``StandardScaler`` + ``RidgeClassifier`` (same model: accuracies must agree exactly);
* ``ridge_vs_sklearn_logistic``: the batched ridge sweep vs a loop of ``StandardScaler`` +
  ``LogisticRegression`` (the usual probe sweep; a different estimator, so accuracy differences
  per layer are reported, not expected to be zero);
* ``ridge_all``: the same ridge with the scaler fitted on all items (``standardise="all"``,
  label-free), where every fold shares one kernel per layer, vs its own scikit-learn loop
  (``StandardScaler`` fitted once per layer) for parity, and vs the logistic loop for speed;
  ``ridge_all_float32`` is the same without float64 refinement (``ProbeConfig.ridge_refine``);
* ``logistic``: batched L-BFGS :func:`~innerprobe.probes.fit_logistic` vs the same logistic loop.

    python benchmarks/bench_probes.py [--n 500] [--layers 30] [--out bench_probes.json]

All paths run single-threaded (torch and BLAS), so ratios measure the method, not the number of
cores; pass ``--threads`` to change that. ``--skip-logistic-batched`` leaves out the slow L-BFGS
path.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from innerprobe import probes as P
from innerprobe.core.io import write_json

log = logging.getLogger("bench_probes")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _acc(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.asarray(pred) == y[None]).mean(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.1)
    ap.add_argument("--alpha", type=float, default=P.ProbeConfig().ridge_alpha, help="ridge alpha")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="device of the batched paths (cuda if you have one)")
    ap.add_argument("--skip-logistic-batched", action="store_true")
    ap.add_argument("--out", default=None, help="JSON path for the numbers (default: log only)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.set_num_threads(args.threads)
    half = args.layers // 2
    signal = np.concatenate([np.linspace(0.1, 1.6, half), np.linspace(1.6, 0.8, args.layers - half)])
    x, y, _ = P.synthetic_activations(
        n=args.n, n_layers=args.layers, d=args.d, n_classes=args.classes, signal=signal, seed=args.seed
    )
    groups = [f"g{i // 2}" for i in range(args.n)]  # duplicate pairs must not straddle folds
    lab = P.encode_labels(y, folds=args.folds)
    n_cls = len(lab.classes)
    fold = P.make_folds(lab.ids, groups, args.folds, args.seed)
    w = P.fold_weights(fold, args.folds)[:-1].to(args.device)  # the k CV folds, as the loops fit
    xl = x.permute(1, 0, 2).contiguous().to(args.device)
    y_t = torch.as_tensor(lab.ids, device=args.device)

    def ridge_batched() -> np.ndarray:
        oof, _ = P.heldout_predictions(P.fit_ridge(xl, y_t, w, n_cls, alpha=args.alpha), xl, fold)
        return oof.cpu().numpy()

    def ridge_all_batched(refine: bool = True) -> np.ndarray:
        fit = P.fit_ridge(xl, y_t, w, n_cls, alpha=args.alpha, standardise="all", refine_answers=refine)
        return P.heldout_predictions(fit, xl, fold)[0].cpu().numpy()

    def logistic_batched() -> np.ndarray:
        oof, _ = P.heldout_predictions(P.fit_logistic(xl, y_t, w, n_cls, C=args.C), xl, fold)
        return oof.cpu().numpy()

    with threadpool_limits(args.threads):
        P.fit_ridge(xl[:1], y_t, w, n_cls, alpha=args.alpha)  # warm-up (kernels, allocator)
        P.fit_ridge(xl[:1], y_t, w, n_cls, alpha=args.alpha, standardise="all")
        P.fit_logistic(xl[:1], y_t, w, n_cls, C=args.C, max_iter=3)
        ridge, t_ridge = _timed(ridge_batched)
        ridge_all, t_ridge_all = _timed(ridge_all_batched)
        ridge_f32, t_ridge_f32 = _timed(lambda: ridge_all_batched(refine=False))
        sk_all, t_sk_all = _timed(lambda: P.sklearn_ridge_oof(x, lab.ids, fold, alpha=args.alpha, standardise="all")[0])
        sk_ridge, t_sk_ridge = _timed(lambda: P.sklearn_ridge_oof(x, lab.ids, fold, alpha=args.alpha)[0])
        sk_lr, t_sk_lr = _timed(lambda: P.sklearn_logistic_oof(x, lab.ids, fold, C=args.C, tol=1e-4))
        lr, t_lr = (None, None) if args.skip_logistic_batched else _timed(logistic_batched)

    acc = {"ridge_batched": _acc(ridge, lab.ids), "sklearn_ridge": _acc(sk_ridge, lab.ids),
           "sklearn_logistic": _acc(sk_lr, lab.ids), "ridge_all": _acc(ridge_all, lab.ids)}
    diff_lr = acc["ridge_batched"] - acc["sklearn_logistic"]
    diff_all = acc["ridge_all"] - acc["sklearn_logistic"]
    result: dict[str, Any] = {
        "shape": {"n": args.n, "layers": args.layers, "d": args.d, "classes": n_cls, "folds": args.folds},
        "C": args.C,
        "ridge_alpha": args.alpha,
        "threads": args.threads,
        "device": args.device,
        "seconds": {
            "ridge_batched": round(t_ridge, 3), "sklearn_ridge_loop": round(t_sk_ridge, 3),
            "ridge_all_batched": round(t_ridge_all, 3), "ridge_all_float32": round(t_ridge_f32, 3),
            "sklearn_ridge_all_loop": round(t_sk_all, 3),
            "sklearn_logistic_loop": round(t_sk_lr, 3),
            "logistic_batched": None if t_lr is None else round(t_lr, 3),
        },
        "ridge": {
            "speedup_vs_sklearn_ridge": round(t_sk_ridge / t_ridge, 2),
            "max_abs_acc_diff": float(np.abs(acc["ridge_batched"] - acc["sklearn_ridge"]).max()),
            "prediction_agreement": float((ridge == sk_ridge).mean()),
        },
        "ridge_all": {
            "speedup_vs_sklearn_logistic": round(t_sk_lr / t_ridge_all, 2),
            "speedup_vs_sklearn_ridge_all": round(t_sk_all / t_ridge_all, 2),
            "prediction_agreement_with_sklearn_ridge_all": float((ridge_all == sk_all).mean()),
            "mean_acc": float(acc["ridge_all"].mean()),
            "mean_acc_diff_vs_sklearn_logistic": float(diff_all.mean()),
            "max_abs_acc_diff_vs_sklearn_logistic": float(np.abs(diff_all).max()),
            "min_acc_diff_vs_sklearn_logistic": float(diff_all.min()),
            "mean_acc_diff_vs_fold_standardised_ridge": float((acc["ridge_all"] - acc["ridge_batched"]).mean()),
        },
        "ridge_all_float32": {
            "speedup_vs_sklearn_logistic": round(t_sk_lr / t_ridge_f32, 2),
            "prediction_agreement_with_sklearn_ridge_all": float((ridge_f32 == sk_all).mean()),
            "mean_acc_diff_vs_sklearn_logistic": float((_acc(ridge_f32, lab.ids) - acc["sklearn_logistic"]).mean()),
            "min_acc_diff_vs_sklearn_logistic": float((_acc(ridge_f32, lab.ids) - acc["sklearn_logistic"]).min()),
        },
        "ridge_vs_sklearn_logistic": {
            "speedup": round(t_sk_lr / t_ridge, 2),
            "acc_diff_per_layer": [round(float(v), 3) for v in diff_lr],
            "max_abs_acc_diff": float(np.abs(diff_lr).max()),
            "mean_acc_diff": float(diff_lr.mean()),
            "mean_acc_ridge": float(acc["ridge_batched"].mean()),
            "mean_acc_sklearn_logistic": float(acc["sklearn_logistic"].mean()),
        },
        "torch": torch.__version__,
    }
    if lr is not None:
        acc_lr = _acc(lr, lab.ids)
        result["logistic"] = {
            "speedup_vs_sklearn_logistic": round(t_sk_lr / t_lr, 2),
            "max_abs_acc_diff": float(np.abs(acc_lr - acc["sklearn_logistic"]).max()),
            "prediction_agreement": float((lr == sk_lr).mean()),
        }
    log.info(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
