"""Benchmark: suffix strategies on the CLI's word-cell grid of hypothetical prompts.

``innerprobe patch`` patches, per pair, the replaced word (~50 tokens before the end of H), the
last 8 tokens of P and the last 6 prompt positions. Cells far from the end must recompute most
of the prompt, cells at the end almost nothing, so where each batched staircase starts matters.
This times ``suffix="auto"`` (cost-planned grouping), ``"shared"`` (one start per length) and
``"per_position"`` (one start per cell) on the same pairs and checks that they agree.

Usage: python benchmarks/bench_patch_cells.py [OUT.json] [--n-pairs 6] [--layers 0:30:6]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch

from innerprobe.models.load import load_model
from innerprobe.patching.cells import cell_names, grid_cells
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.grid import patch_grid
from innerprobe.patching.rows import SUFFIX_STRATEGIES
from innerprobe.patching.search import build_pairs
from innerprobe.patching.study_config import parse_layers

log = logging.getLogger("bench_patch_cells")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=None)
    ap.add_argument("--n-pairs", type=int, default=6)
    ap.add_argument("--n-items", type=int, default=60)
    ap.add_argument("--layers", default="0:30:6")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m-instruct", device="cpu")
    stack = DecoderStack(model)
    layers = parse_layers(args.layers, stack.n_layers)
    ps = build_pairs(model, "animals", "second_character", n_pairs=args.n_pairs, n_items=args.n_items, n_controls=0)
    cells = [grid_cells(p.h_span, p.h_a.positions["quote_end"], len(p.h_a), 8, 6) for p in ps.pairs]
    pairs, toks = ps.h_inputs()
    names = cell_names(8, 6)
    for pr in pairs:  # trace once up front so every strategy times the patched runs only
        patch_grid(model, [pr], [toks[0]], layers=[0], positions=[-1], stack=stack, n_boot=10)
    report: dict = {"model": model.fingerprint.short, "threads": torch.get_num_threads(), "n_pairs": len(pairs),
                    "layers": layers, "cells": names, "h_lengths": [len(a) for a, _ in pairs],
                    "word_positions": [p.h_span[0] for p in ps.pairs]}
    results = {}
    for suffix in SUFFIX_STRATEGIES:
        t0 = time.perf_counter()
        results[suffix] = patch_grid(model, pairs, toks, layers=layers, cells=cells, cell_labels=names,
                                     suffix=suffix, stack=stack, n_boot=100)
        report[f"{suffix}_s"] = round(time.perf_counter() - t0, 3)
        log.info("%s: %.2f s", suffix, report[f"{suffix}_s"])
    ref = results["per_position"].patched
    report["max_abs_diff_vs_per_position"] = {k: float(np.abs(r.patched - ref).max()) for k, r in results.items()}
    report["auto_speedup_vs_shared"] = round(report["shared_s"] / report["auto_s"], 2)
    log.info("%s", report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
