"""Benchmark: innerprobe batched patching vs TransformerLens ``get_act_patch_resid_pre``.

SmolLM2-135M-Instruct (``--model gemma-3-270m``: Gemma-3-270M, 18 layers), resid_pre, every
layer x the last 10 positions of object-level animals prompts; pairs replace the last sequence word by a same-token-length animal, metric = logit of
the original word minus logit of the replacement at the last position.

* 1 pair: the TL loop runs every cell (one bridge forward each; ``--tl-cells-1`` times a subset).
* 16 pairs: TL runs each group of equal-length pairs as one batch (TL needs unpadded equal
  lengths); it is timed on a subset of cells and extrapolated to the whole grid (reported as such).

Usage: python benchmarks/bench_patching.py [OUT.json] [--model NAME] [--tl-cells 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import defaultdict

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import pandas as pd
import torch
import transformer_lens.patching as tlp

from innerprobe.models.load import load_model
from innerprobe.patching.attribution import attribution_patch
from innerprobe.patching.candidates import word_replacements
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.grid import patch_grid
from innerprobe.protocol.tasks import TASKS, load_items

log = logging.getLogger("bench_patching")


def _pairs(model, n: int):
    items = load_items("animals", n=4 * n, split="test", seed=0)
    cands = word_replacements(model.tokenizer, items, list(TASKS["animals"].vocabulary), word_index=-1, per_item=1)[0][:n]
    tok = model.tokenizer
    pairs = [(c.o_a.input_ids, c.o_b.input_ids) for c in cands]
    # add_special_tokens=False: SmolLM2's tokenizer prepends <|im_start|>, whose id would be
    # both metric tokens (a metric identically 0, hence a NaN AtP correlation).
    first = lambda w: tok(" " + w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    metric = [(first(c.word_a), first(c.word_b)) for c in cands]
    return pairs, metric


def _tl(model, pairs, metric, layers, rel, cells):
    """TL loop on groups of equal-length pairs; returns (values [n, L, P] (NaN off-subset), seconds, n_cells_run)."""
    bridge = model.bridge
    out = np.full((len(pairs), len(layers), len(rel)), np.nan)
    groups = defaultdict(list)
    for k, (a, _) in enumerate(pairs):
        groups[len(a)].append(k)
    secs, ran = 0.0, 0
    for n, ks in groups.items():
        clean = torch.tensor([pairs[k][0] for k in ks])
        corrupt = torch.tensor([pairs[k][1] for k in ks])
        a = torch.tensor([metric[k][0] for k in ks])
        b = torch.tensor([metric[k][1] for k in ks])
        pos = [p + n for p in rel]
        grid = [(li, pi) for li in range(len(layers)) for pi in range(len(rel))][:cells]
        index_df = pd.DataFrame({"layer": [layers[li] for li, _ in grid], "pos": [pos[pi] for _, pi in grid]})
        rows = torch.arange(len(ks))
        t0 = time.perf_counter()
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(clean, names_filter=lambda s: s.endswith("hook_resid_pre"))
            res = tlp.get_act_patch_resid_pre(
                bridge, corrupt, cache, lambda lg, rows=rows, a=a, b=b: lg[rows, -1, a] - lg[rows, -1, b],
                index_axis_names=None, index_df=index_df, reduce="none",
            )
        secs += time.perf_counter() - t0
        ran += len(grid)
        vals = res.values.detach().cpu().numpy()  # [cells, batch]
        for c, (li, pi) in enumerate(grid):
            out[ks, li, pi] = vals[c]
    return out, secs, ran


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--tl-cells", type=int, default=20, help="cells timed for the 16-pair TL estimate")
    ap.add_argument("--tl-cells-1", type=int, default=300, help="cells timed for the 1-pair TL run (300: all)")
    ap.add_argument("--suffix", nargs="+", default=["auto", "shared", "per_position"], help="suffix strategies timed")
    ap.add_argument("--only", choices=["1_pair", "16_pairs"], help="run one of the two settings")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="an embedded model name or a directory")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    model = load_model(args.model, device="cpu")
    stack = DecoderStack(model)
    stack.cache_bytes = 0  # no trace memo: each strategy pays its own traces, as the TL loop does
    layers, rel = list(range(model.n_layers)), list(range(-10, 0))
    n_cells = len(layers) * len(rel)
    pairs, metric = _pairs(model, 16)
    report: dict = {"model": model.fingerprint.short, "model_type": stack.model_type, "threads": torch.get_num_threads(),
                    "grid": f"{len(layers)} layers x {len(rel)} positions (last 10)", "cells": n_cells,
                    "prompt_lengths": sorted({len(p[0]) for p in pairs})}

    for label, sub in (("1_pair", pairs[:1]), ("16_pairs", pairs)):
        if args.only and label != args.only:
            continue
        ms = metric[: len(sub)]
        best = None
        for suffix in args.suffix:
            t0 = time.perf_counter()
            res = patch_grid(model, sub, ms, layers=layers, positions=rel, suffix=suffix, n_boot=200, stack=stack)
            dt = time.perf_counter() - t0
            report[f"{label}_innerprobe_s_{suffix}"] = round(dt, 3)
            log.info("%s innerprobe (%s): %.2f s", label, suffix, dt)
            if best is None or dt < best[0]:
                best = (dt, res)
        cells = args.tl_cells_1 if label == "1_pair" else args.tl_cells
        tl_vals, tl_s, ran = _tl(model, sub, ms, layers, rel, cells)
        per_group = min(cells, n_cells)
        tl_full = tl_s * n_cells / per_group
        ok = np.isfinite(tl_vals)
        report[label] = {
            "innerprobe_s": round(best[0], 3),
            "tl_s_measured": round(tl_s, 3),
            "tl_length_groups": len({len(p[0]) for p in sub}),
            "tl_cells_timed_per_length_group": per_group,
            "tl_s_for_all_cells": round(tl_full, 3),
            "tl_extrapolated": per_group < n_cells,
            "speedup": round(tl_full / best[0], 2),
            "max_abs_diff": float(np.abs(best[1].patched[ok] - tl_vals[ok]).max()),
            "cells_compared": int(ok.sum()),
        }
        log.info("%s: %s", label, report[label])
        if label == "16_pairs":
            t0 = time.perf_counter()
            atp = attribution_patch(model, sub, ms, layers=layers, positions=rel, stack=stack)
            report["atp_s"] = round(time.perf_counter() - t0, 3)
            agree = atp.agreement(best[1])
            report["atp_pearson_r"] = round(agree.value, 4)
            report["atp_pearson_r_ci"] = [round(agree.ci_low, 4), round(agree.ci_high, 4)]
            report["atp_cells"] = agree.n
    text = json.dumps(report, indent=2)
    log.info(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
