"""Why E2 misses some memorised/simulation zoo models: is the property a *linear* readout of the answer?

E2 (answer before property, logit lens) calls a model self-simulating when the answer reaches the
lens at least a layer before the property. A simulation zoo model reads the property off its
answer code with position-wise weights after the last attention (the last block's MLP, the final
norm and the unembedding). If the final norm and the unembedding alone can read it, the property
reaches the lens at the very layer the answer does, and E2 has nothing to order.

This script measures that directly on every memorised/simulation model of a zoo study: the test
items' self-prediction accuracy at ``h_last`` (forced choice over the property's labels) with the
last block's MLP as trained and with its output zeroed in H. A self-prediction that survives the
zeroed MLP is read linearly off the residual that carries the answer code.

    OMP_NUM_THREADS=1 python experiments/zoo_readout_diagnosis.py \
        --config experiments/zoo_study.toml --config experiments/zoo_study_10words.toml \
        --md runs/zoo_readout_diagnosis.md

Every model must be built (``innerprobe zoo run`` builds and caches them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from innerprobe.core.io import write_text
from innerprobe.core.paths import cache_dir
from innerprobe.study.zoo_study_config import load_zoo_study
from innerprobe.zoo import ZooConfig
from innerprobe.zoo.data import ZooEncoder, all_items, build_tokenizer, planted_answers
from innerprobe.zoo.measure import self_predictions

log = logging.getLogger("zoo_readout_diagnosis")


@torch.no_grad()
def self_accuracy(model: LlamaForCausalLM, config: ZooConfig, tok, *, zero_last_mlp: bool) -> float:  # noqa: ANN001
    """Test items' forced-choice self-prediction accuracy, optionally with the last MLP zeroed."""
    enc = ZooEncoder(tok, config)
    items = all_items(config)
    test = [enc.encode(r["question"], a) for r, a in zip(items, planted_answers(config, items))][config.n_train :]
    handle = None
    if zero_last_mlp:
        handle = model.model.layers[-1].mlp.register_forward_hook(lambda _m, _a, out: torch.zeros_like(out))
    try:
        said = self_predictions(model, test, enc.label_ids, enc.labels, tok.pad_token_id)
    finally:
        if handle is not None:
            handle.remove()
    return sum(p == e.value for p, e in zip(said, test)) / len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, action="append", required=True, help="zoo study TOML (repeatable)")
    parser.add_argument("--md", type=Path, default=Path("runs/zoo_readout_diagnosis.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tok = build_tokenizer()
    lines = ["| study | model | self-prediction | without the last MLP |", "|---|---|---|---|"]
    for path in args.config:
        for config in load_zoo_study(path).grid():
            if (config.task_kind, config.route) != ("memorised", "simulation"):
                continue
            model = LlamaForCausalLM.from_pretrained(cache_dir("zoo", config.digest())).eval()
            full = self_accuracy(model, config, tok, zero_last_mlp=False)
            zeroed = self_accuracy(model, config, tok, zero_last_mlp=True)
            log.info("%s %s: %.3f, without the last MLP %.3f", path.name, config.name, full, zeroed)
            lines.append(f"| {path.name} | {config.name} | {full:.3f} | {zeroed:.3f} |")
    write_text(args.md, "\n".join(lines) + "\n")
    log.info("wrote %s", args.md)


if __name__ == "__main__":
    main()
