"""Benchmark: the cost of an active intervention, and tuned-lens training throughput.

One run, SmolLM2-135M-Instruct on CPU:

* ``generation``: greedy decoding (16 tokens) of object-level animals prompts, plain vs inside
  ``intervene(AddVector(v) at one layer, every position)``; the runs alternate (plain,
  intervened, plain, ...) and each setting keeps its fastest repeat, so drift hits both alike.
* ``capture``: the same for :func:`innerprobe.activations.capture.capture` into a fresh store.
* ``tuned_lens``: training tokens per second of :func:`train_tuned_lens` (steps ×
  tokens_per_step / seconds) on self-distilled rows.

Usage: python benchmarks/bench_interventions.py [OUT.json] [--repeats 3] [--n 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from innerprobe.activations.capture import capture
from innerprobe.behavior.inference import generate
from innerprobe.interventions.edits import AddVector
from innerprobe.interventions.hooks import Intervention, intervene
from innerprobe.interventions.lens import TunedLensConfig, self_distilled_rows, train_tuned_lens
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import object_prompt
from innerprobe.protocol.tasks import load_items

log = logging.getLogger("bench_interventions")


def _timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _alternating(plain, steered, repeats: int) -> dict[str, float]:  # noqa: ANN001
    a, b = [], []
    for _ in range(repeats):
        a.append(_timed(plain))
        b.append(_timed(steered))
    return {"plain_s": round(min(a), 3), "intervened_s": round(min(b), 3), "ratio": round(min(b) / min(a), 3),
            "plain_all_s": [round(x, 3) for x in a], "intervened_all_s": [round(x, 3) for x in b]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=16, help="prompts / items per timed run")
    ap.add_argument("--lens-steps", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    model = load_model("smollm2-135m-instruct", device="cpu")
    items = load_items("animals", n=args.n, split="test", seed=0)
    prompts = [object_prompt(model.tokenizer, q) for q in items["question"]]
    rows = [p.input_ids for p in prompts]
    v = torch.randn(model.d_model) * 0.1
    iv = Intervention(AddVector(v), layers=(12,), name="bench")
    report: dict = {"model": model.fingerprint.short, "threads": torch.get_num_threads(), "n": args.n,
                    "intervention": f"AddVector(norm {float(v.norm()):.2f}) at blocks.12.hook_resid_pre, every position"}

    def gen() -> None:
        generate(model.hf_model, model.tokenizer, rows, max_new_tokens=16, batch_size=16)

    def gen_steered() -> None:
        with intervene(model, iv, prompts=prompts):
            gen()

    report["generation"] = _alternating(gen, gen_steered, args.repeats)
    log.info("generation: %s", report["generation"])
    tmp = Path(tempfile.mkdtemp())
    runs = iter(range(10**6))

    def cap() -> None:
        capture(model, items, "second_character", out=tmp / f"c{next(runs)}", layers=[6, 12, 18])

    def cap_steered() -> None:
        with intervene(model, iv, prompts=prompts):
            cap()

    report["capture"] = _alternating(cap, cap_steered, args.repeats)
    log.info("capture: %s", report["capture"])
    lens_rows = self_distilled_rows(model, rows, max_new_tokens=32, seed=0)
    cfg = TunedLensConfig(steps=args.lens_steps, tokens_per_step=256, max_tokens=2048)
    secs = _timed(lambda: train_tuned_lens(model, lens_rows, cfg))
    report["tuned_lens"] = {"steps": cfg.steps, "tokens_per_step": cfg.tokens_per_step, "seconds": round(secs, 2),
                            "train_tokens_per_s": round(cfg.steps * cfg.tokens_per_step / secs, 1),
                            "note": "includes the one-off residual and final-distribution pass"}
    log.info("tuned lens: %s", report["tuned_lens"])
    text = json.dumps(report, indent=2)
    log.info(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
