"""Benchmark: the cost of capturing activations, against a plain forward.

On SmolLM2-135M-Instruct and the same length-sorted, left-padded batches of hypothetical
prompts (default 64 animal items, batch 16):

(a) plain HF forward (no hooks, full logits), and (a1) the same unembedding only the last
position (``logits_to_keep=1``) — the fair floor;
(b) innerprobe capture: resid_post at all 30 layers, 3 H positions (h_last, quote_last,
    quote_mean) gathered inside the hooks;
(c) TransformerLens ``run_with_cache`` with a ``names_filter`` for resid_post (full caches).

Reports seconds (best of ``--repeats``) and the ratios b/a and c/a (goal b/a ≤ 1.10), plus, with
``--rss-n N``, a full ``capture()`` of N items into a store with the process RSS after every
shard (goal: peak ≤ model + 1.5 GB, flat in N). Writes JSON to ``--out`` (or logs it); the RSS
trace so far is also written to ``<out>.partial.json`` every 20 shards.

    python benchmarks/bench_capture.py --n 64 --batch-size 16 --out runs/bench_capture.json
    python benchmarks/bench_capture.py --rss-only --rss-n 20000 --threads 2 --out runs/rss20k.json
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
import time
from pathlib import Path

import torch

from innerprobe.activations.capture import capture, capture_prompts
from innerprobe.behavior.elicitation import build_hypotheticals
from innerprobe.behavior.inference import batches, left_pad
from innerprobe.core.io import write_json
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

log = logging.getLogger("bench_capture")
POSITIONS = ["h_last", "quote_last", "quote_mean"]


def _batches(prompts, batch_size):
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [[prompts[i].input_ids for i in order[sl]] for sl in batches(len(order), batch_size)]


@torch.inference_mode()
def plain_forward(model, rows_batches, last_logits_only: bool = False) -> None:
    """HF forward; ``last_logits_only`` unembeds only the last position (``logits_to_keep=1``),
    the fair floor for a capture that never needs the 49k-way unembedding of every position."""
    extra = {"logits_to_keep": 1} if last_logits_only else {}
    for rows in rows_batches:
        ids, mask, pos = left_pad(rows, model.tokenizer.pad_token_id, model.device)
        model.hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, **extra)


@torch.inference_mode()
def tl_run_with_cache(model, rows_batches) -> None:
    for rows in rows_batches:
        ids, mask, _ = left_pad(rows, model.tokenizer.pad_token_id, model.device)
        model.bridge.run_with_cache(
            ids, attention_mask=mask, names_filter=lambda n: n.endswith("hook_resid_post")
        )


def innerprobe_capture(model, prompts, batch_size) -> None:
    capture_prompts(model, prompts, POSITIONS, ["resid_post"], list(range(model.n_layers)), batch_size=batch_size)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size now (Linux ``/proc/self/status`` VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status (Linux only)")


def rss_capture(model, prop, n_items: int, batch_size: int, partial: Path | None = None) -> dict:
    """A full ``capture()`` of ``n_items`` into a temporary store, with the RSS after every shard.

    The trace (items committed, RSS now, peak so far, seconds) is what shows memory flat in the
    number of items: a store that held activations in memory would grow with every shard.
    Every 20 shards the trace so far is written atomically to ``partial`` (if given), so a run
    stopped early still leaves its measurements.
    """
    big = load_items("animals", n=n_items, split="train", seed=1)
    before, start = peak_rss_mb(), time.perf_counter()
    trace: list[dict] = []
    done = 0

    def on_shard(shard_items: int) -> None:
        nonlocal done
        done += shard_items
        trace.append({"items": done, "rss_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb(),
                      "seconds": time.perf_counter() - start})
        if len(trace) % 20 == 0:
            if partial is not None:
                write_json(partial, {"n_items": n_items, "peak_rss_mb_before": before, "trace": trace})
            log.info("%d/%d items, RSS %.0f MiB, %.0f s", done, n_items, trace[-1]["rss_mb"], trace[-1]["seconds"])

    with tempfile.TemporaryDirectory() as d:
        store = capture(model, big, prop, out=Path(d) / "s", batch_size=batch_size, shard_size=64, progress=on_shard)
        stored = sum(p.stat().st_size for p in Path(d, "s").glob("shard-*")) / 2**20
        tensors = len(store.keys())
    tenth = trace[max(0, len(trace) // 10 - 1)]
    return {
        "n_items": n_items,
        "capture_seconds": time.perf_counter() - start,
        "peak_rss_mb_before": before,
        "peak_rss_mb_after": peak_rss_mb(),
        "rss_mb_at_10pct_items": tenth["rss_mb"],
        "rss_mb_at_end": trace[-1]["rss_mb"],
        "store_mb": stored,
        "tensors": tensors,
        "trace": trace,
    }


def timings(model, prop, n: int, batch_size: int, repeats: int) -> dict:
    """Seconds of (a), (a1), (b), (c) on ``n`` hypothetical prompts, best of ``repeats``."""
    items = load_items("animals", n=n, split="train", seed=0)
    prompts = build_hypotheticals(model, items, prop, PromptSpec())
    rows_batches = _batches(prompts, batch_size)
    plain_forward(model, rows_batches[:1])  # warm-up

    t_a = best_of(lambda: plain_forward(model, rows_batches), repeats)
    t_a1 = best_of(lambda: plain_forward(model, rows_batches, last_logits_only=True), repeats)
    t_b = best_of(lambda: innerprobe_capture(model, prompts, batch_size), repeats)
    t_c = best_of(lambda: tl_run_with_cache(model, rows_batches), repeats)
    return {
        "n_items": n,
        "batch_size": batch_size,
        "mean_tokens": sum(map(len, prompts)) / len(prompts),
        "seconds": {
            "a_plain_hf_forward": t_a,
            "a1_plain_hf_forward_last_logits": t_a1,
            "b_innerprobe_capture": t_b,
            "c_tl_run_with_cache": t_c,
        },
        "ratio_b_over_a": t_b / t_a,
        "ratio_b_over_a1": t_b / t_a1,
        "ratio_c_over_a": t_c / t_a,
        "goal_b_over_a1_le_1.10": t_b / t_a1 <= 1.10,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-n", type=int, default=0, help="items of the full capture() for peak RSS (0: skip)")
    ap.add_argument("--rss-only", action="store_true", help="skip the timings; only the --rss-n capture")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model, device="cpu")
    prop = get_property("second_character")
    result: dict = {"model": model.fingerprint.short, "torch_threads": torch.get_num_threads()}
    if not args.rss_only:
        result.update(timings(model, prop, args.n, args.batch_size, args.repeats))
    if args.rss_n:
        partial = None if args.out is None else args.out.with_suffix(".partial.json")
        result["rss"] = rss_capture(model, prop, args.rss_n, args.batch_size, partial)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    log.info("%s", text)


if __name__ == "__main__":
    main()
