"""Benchmark: a SmolLM2 zoo training step above a cached trunk, against the same step at full depth.

On SmolLM2-135M-Instruct with the zoo's LoRA adapters on its top ``--n-trainable`` blocks (the
blocks below frozen), one stage-1 step of a simulation model (O → answer and H → answer, batch
``--batch-size``, the zoo's own memorised prompts):

(a) full depth: the peft model's own forward from the token ids through every block (autograd
    already stops at the first adapted block, so only the forward below it is extra);
(b) trunk: :class:`innerprobe.zoo.trunk.TopLayers` on residuals cached once at the cut.

Reports seconds per step (best of ``--repeats``), the ratio a/b, the one-off cost of caching the
trunk for the study's 144 items, and the largest difference of the two paths' losses (parity: they
are the same computation). Writes JSON to ``--out`` (or logs it).

    python benchmarks/bench_zoo_trunk.py --threads 1 --out runs/bench_zoo_trunk.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time

import torch

from innerprobe.core.io import write_json
from innerprobe.zoo.config import ZooConfig
from innerprobe.zoo.data import ZooEncoder, all_items, planted_answers
from innerprobe.zoo.pretrained import load_base, top_layers, with_adapters
from innerprobe.zoo.train import hypo_logits, object_loss

log = logging.getLogger("bench_zoo_trunk")


def step_loss(model, batch, pad_id: int) -> torch.Tensor:  # noqa: ANN001
    """Stage 1 of a simulation model: O → answer, H → the answer at ``h_last``."""
    logits, _ = hypo_logits(model, batch, pad_id)
    return object_loss(model, batch, pad_id) + torch.nn.functional.cross_entropy(
        logits, torch.tensor([e.answer_id for e in batch]))


def timed_step(model, batch, pad_id: int, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    """Best wall seconds of forward + backward (gradients zeroed between), and the loss."""
    best, loss = float("inf"), 0.0
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = step_loss(model, batch, pad_id)
        out.backward()
        best = min(best, time.perf_counter() - t0)
        loss = float(out.detach())
    return best, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-trainable", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)
    config = ZooConfig(base="smollm2-135m-instruct", task_kind="memorised", n_trainable=args.n_trainable)
    base, tok = load_base(config)
    enc = ZooEncoder(tok, config)
    items = all_items(config)
    encoded = [enc.encode(r["question"], a) for r, a in zip(items, planted_answers(config, items))]
    adapted = with_adapters(base, config)
    with torch.no_grad():  # non-zero adapters, so the two paths' gradients are not trivially equal
        for n, p in adapted.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.01)
    pad = tok.pad_token_id
    t0 = time.perf_counter()
    top = top_layers(adapted, config, encoded, encoded, pad)
    cache_s = time.perf_counter() - t0
    batch = random.Random(0).sample(encoded, args.batch_size)
    full_model = adapted.base_model.model
    full_model.train()
    top.train()
    full_s, full_loss = timed_step(full_model, batch, pad, args.repeats)
    trunk_s, trunk_loss = timed_step(top, batch, pad, args.repeats)
    report = {
        "model": config.base, "n_trainable": args.n_trainable, "batch_size": args.batch_size,
        "threads": args.threads, "items_cached": len(encoded), "cache_seconds": round(cache_s, 2),
        "full_depth_step_s": round(full_s, 3), "trunk_step_s": round(trunk_s, 3),
        "speedup_full_over_trunk": round(full_s / trunk_s, 2), "loss_abs_diff": abs(full_loss - trunk_loss),
    }
    if args.out:
        write_json(args.out, report)
    log.info("%s", json.dumps(report))


if __name__ == "__main__":
    main()
