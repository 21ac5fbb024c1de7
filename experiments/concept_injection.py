"""Concept injection (E8) on SmolLM2-135M-Instruct: detection beside every control, per timing,
and the LoRA-trained detector as the positive control.

1. concept vectors for 10 words at one layer (mean carrier residual minus a 20-word baseline);
2. for each timing (``trial``: from the token before "Trial k", Lindsey's; ``generation``: the
   answer prefill only; ``prompt``: from the start), the full protocol: detection (log P(yes) −
   log P(no) after "Answer:"), identification among the 10 words, localisation among 4
   sentences, with no-injection trials, norm-matched random vectors, the impossible-question
   yes-bias control (and the correlation of detection shift with yes-shift), the input twin;
3. optionally (``--detector-steps N``), a LoRA detector trained on 7 concepts' vectors and tested
   on the 3 held out, beside the untrained model and the yes-bias control.

Usage::

    python experiments/concept_injection.py --layer 15 --scales 4,8 --out runs/concept_injection

Writes ``<out>/<timing>/`` (an ``InjectionResult``), ``<out>/detector/`` and
``experiments/results/concept_injection.md`` (with ``--timings ''``: the detector alone, into
``concept_injection_detector.md``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from innerprobe.core.io import write_json
from innerprobe.interventions.concepts import CONCEPT_WORDS, concept_vectors
from innerprobe.interventions.injection import run_injection
from innerprobe.interventions.injection_config import InjectionConfig
from innerprobe.interventions.injection_result import InjectionResult
from innerprobe.models.load import load_model
from innerprobe.training.detector import DetectorConfig, DetectorResult, train_detector

log = logging.getLogger("concept_injection")
RESULTS = Path(__file__).resolve().parent / "results" / "concept_injection.md"


def _fmt(e: object) -> str:
    return "–" if e is None else f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}] (n={e.n})"  # type: ignore[attr-defined]


def _diff(d: object) -> str:
    if d is None:
        return "–"
    p = d.mcnemar_p if d.mcnemar_p is not None else d.p_value  # type: ignore[attr-defined]
    test = "McNemar" if d.mcnemar_p is not None else "bootstrap"  # type: ignore[attr-defined]
    return f"{_fmt(d.diff)}, {test} p={p:.3g}"  # type: ignore[attr-defined]


def timing_section(r: InjectionResult) -> list[str]:
    s = r.summary
    rows = [
        ("P(yes) detection · concept injected", _fmt(s.detect_yes_concept)),
        ("P(yes) detection · norm-matched random", _fmt(s.detect_yes_random)),
        ("P(yes) detection · no injection (false positives)", _fmt(s.detect_yes_none)),
        ("P(yes) impossible question · concept injected", _fmt(s.impossible_yes_concept)),
        ("P(yes) impossible question · no injection", _fmt(s.impossible_yes_none)),
        ("P(yes) detection · input twin (word in prompt)", _fmt(s.twin_yes)),
        ("detection shift (LD − LD no-injection) · concept", _fmt(s.detection_shift_concept)),
        ("detection shift · random", _fmt(s.detection_shift_random)),
        ("yes-shift on the impossible question · concept", _fmt(s.yes_shift_concept)),
        ("detection shift · input twin", _fmt(s.twin_shift)),
        ("r(detection shift, yes-shift) over vectors × scales", _fmt(s.shift_correlation)),
        ("detection yes: concept − no injection", _diff(s.concept_vs_none)),
        ("detection yes: concept − random", _diff(s.concept_vs_random)),
        ("yes: detection − impossible question (same injection)", _diff(s.detect_vs_impossible)),
        ("detection shift − yes-shift (same injection, paired)", _diff(s.detection_beyond_yes_shift)),
        (f"identification · concept (chance {s.identification_chance:.2f})", _fmt(s.identification_concept)),
        ("leak control: 'say one word' picks the injected concept", _fmt(s.identification_leak)),
        ("identification − leak (paired)", _diff(s.identification_vs_leak)),
        ("identification · input twin", _fmt(s.identification_twin)),
        (f"localisation · concept (chance {s.localisation_chance:.2f})", _fmt(s.localisation_concept)),
        ("localisation · random", _fmt(s.localisation_random)),
        ("localisation · no injection", _fmt(s.localisation_none)),
        ("localisation: concept − random", _diff(s.localisation_concept_vs_random)),
    ]
    pos = ", ".join(f"{k}: {v[0]}..{v[-1]} ({len(v)} tokens)" for k, v in s.injected_positions.items())
    return [f"### timing `{s.timing}` ({s.n_trials} trials, {r.seconds:.0f} s)", "",
            f"Injected positions (first trial of each kind, real-token indices): {pos}.", "",
            "| measure | estimate [95% CI] |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], ""]


def detector_section(d: DetectorResult) -> list[str]:
    s = d.summary
    rows = [
        ("P(yes) detection · held-out concept injected", _fmt(s.base_detect_yes), _fmt(s.trained_detect_yes)),
        ("P(yes) detection · no injection", _fmt(s.base_false_positive), _fmt(s.trained_false_positive)),
        ("P(yes) impossible question · held-out injected", _fmt(s.base_impossible_yes), _fmt(s.trained_impossible_yes)),
        ("yes: detection − impossible (paired)", _diff(s.base_detect_vs_impossible), _diff(s.trained_detect_vs_impossible)),
    ]
    return ["## Positive control: a LoRA-trained detector", "",
            f"Trained on the vectors of {', '.join(s.train_words)} ({s.steps} steps, loss {s.loss_first:.2f} → "
            f"{s.loss_last:.2f}); tested on held-out {', '.join(s.test_words)}. Beats the yes-bias control: "
            f"**{s.beats_yes_bias}**. Wall time {d.seconds:.0f} s.", "",
            "| measure | untrained | trained detector |", "|---|---|---|",
            *[f"| {a} | {b} | {c} |" for a, b, c in rows], ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--scales", default="4,8")
    ap.add_argument("--timings", default="trial,generation,prompt")
    ap.add_argument("--n-trials", type=int, default=4)
    ap.add_argument("--detector-steps", type=int, default=0)
    ap.add_argument("--detector-scale", type=float, default=8.0)
    ap.add_argument("--detector-trials", type=int, default=4)
    ap.add_argument("--detector-lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/concept_injection"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model, device="cpu")
    t_load = time.perf_counter() - t0
    concepts = concept_vectors(model, CONCEPT_WORDS, args.layer)
    t_vec = time.perf_counter() - t0 - t_load
    what = (f"scales {args.scales}, {args.n_trials} trial variants per condition" if args.timings else
            f"detector: scale {args.detector_scale}, {args.detector_trials} evaluation trial variants per condition")
    lines = ["# Concept injection (E8) on " + model.name, "",
             f"Layer {args.layer} (`resid_pre`), {what}, "
             f"10 concepts ({', '.join(CONCEPT_WORDS)}), vector norms "
             f"{min(concepts.norms):.1f}–{max(concepts.norms):.1f} (baseline mean residual norm "
             f"{concepts.provenance['baseline_norm']:.1f}). Load {t_load:.0f} s, vectors {t_vec:.0f} s, 2 shared CPU cores.",
             "", "Proportions: Wilson 95% intervals; mean shifts: percentile bootstrap over trials; r: bootstrap over "
             "conditions; paired rows: paired bootstrap CI of the difference and exact McNemar p.", ""]
    summary: dict[str, object] = {"model": model.name, "layer": args.layer}
    for timing in filter(None, args.timings.split(",")):
        cfg = InjectionConfig(scales=tuple(float(s) for s in args.scales.split(",")), timing=timing,
                              n_trials=args.n_trials)
        r = run_injection(model, concepts, cfg)
        r.save(args.out / timing)
        lines += timing_section(r)
        summary[timing] = r.summary.to_dict()
    if args.detector_steps:
        dcfg = DetectorConfig(train_words=CONCEPT_WORDS[:7], test_words=CONCEPT_WORDS[7:], steps=args.detector_steps,
                              scale=args.detector_scale, lr=args.detector_lr, eval_trials=args.detector_trials)
        d = train_detector(model, concepts, dcfg)
        d.save(args.out / "detector")
        lines += detector_section(d)
    wall = time.perf_counter() - t0
    lines += [f"Total wall time {wall / 60:.1f} min."]
    target = RESULTS if args.timings else RESULTS.with_name("concept_injection_detector.md")
    target.write_text("\n".join(lines) + "\n")
    write_json(args.out / "summary.json", {**summary, "wall_s": wall})
    log.info("wrote %s (%.1f min)", target, wall / 60)


if __name__ == "__main__":
    main()
