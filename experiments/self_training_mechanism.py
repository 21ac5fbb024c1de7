"""Does the mechanism change over self-training rounds? The battery's E3 on every round's model.

For each finished round r of each self-training run (``experiments/self_training_rounds.py``),
M_r (round 0: the base model) is loaded from its saved adapter and the battery's E3 step
(:func:`innerprobe.study.steps_probes.e3_probe_transfer`) runs on it: a probe trained on M_r's
object-prompt residuals to predict its own forced-choice answer, tested on the hypothetical
prompt's residuals (O→H transfer), on items where the answer is not the last animal of P,
beside the shuffled-label control and a surface-feature (last animal) probe. The best layer is
selected on one half of the items and estimated on the other. A transfer that rises or falls
over rounds says whether self-training moved the hypothetical pass towards or away from
recomputing the object answer.

Resumable: each (run, round) writes ``<run>/<policy>/round_<r>/mechanism/e3.json`` atomically and
is skipped when present. Round 0 of runs on the same task and property is computed once.

    OMP_NUM_THREADS=1 python experiments/self_training_mechanism.py \
        --runs runs/selftrain,runs/selftrain_fc --md experiments/results/self_training_mechanism.md
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import torch

from innerprobe.core.io import atomic_dir, read_json, write_json
from innerprobe.core.result import decode, encode
from innerprobe.models.load import load_model
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.decision import read_rows
from innerprobe.study.evidence import Evidence
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_probes import e3_probe_transfer
from innerprobe.training.rounds import CONFIG_FILE, round_dir

log = logging.getLogger("self_training_mechanism")
FILE = "e3.json"


def _rounds(run: Path) -> list[int]:
    config = read_json(run / CONFIG_FILE)["config"]
    return [r for r in range(config["rounds"] + 1) if (round_dir(run, r) / "round.json").exists()]


def _e3(run: Path, r: int, base, done_base: dict[tuple[str, str], Path]) -> list[Evidence]:
    """E3 rows of round ``r`` of ``run`` (computed, or read back when saved)."""
    config = read_json(run / CONFIG_FILE)["config"]
    task, prop = config["tasks"][0], config["properties"][0]
    folder = round_dir(run, r) / "mechanism"
    if (folder / FILE).exists():
        return decode(read_json(folder / FILE)["rows"])
    if r == 0 and (task, prop) in done_base:  # M_0 on the same task and property: computed once
        with atomic_dir(folder) as tmp:
            shutil.copy(done_base[(task, prop)] / FILE, tmp / FILE)
        return decode(read_json(folder / FILE)["rows"])
    model = base if r == 0 else load_model(round_dir(run, r) / "adapter", device="cpu")
    cfg = BatteryConfig(model=str(config.get("model", "smollm2-135m-instruct")), task=task, property=prop, n_boot=1000)
    work = folder.with_name("mechanism_work")
    ctx = StepContext(cfg, cfg.n_items, f"{run.name}/M_{r}", work_dir=work, _model=model)
    t0 = time.perf_counter()
    rows = read_rows(e3_probe_transfer(ctx), cfg.decision)
    with atomic_dir(folder) as tmp:
        write_json(tmp / FILE, {"rows": encode(rows), "seconds": time.perf_counter() - t0})
    shutil.rmtree(work, ignore_errors=True)  # activations: large, and reproducible from the adapter
    if r == 0:
        done_base[(task, prop)] = folder
    log.info("%s round %d: %.0f s", run, r, time.perf_counter() - t0)
    return rows


def _cell(ev: Evidence) -> str:
    if ev.effect is None:
        return f"not run ({ev.why})"
    e, c = ev.effect, ev.control
    ctrl = "" if c is None else f" vs {c.value:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]"
    return f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]{ctrl}"


def markdown(table: list[tuple[str, int, list[Evidence]]]) -> list[str]:
    subs = ["O->H transfer, answer != last animal of P", "O->H transfer, all items", "surface-feature probe O->H"]
    lines = ["| run | round | " + " | ".join(subs) + " | n (primary) | reading (primary) |",
             "|---|---|" + "---|" * (len(subs) + 2)]
    for run, r, rows in table:
        by: dict[str, Evidence] = {}
        for ev in rows:  # a sub's first row is its accuracy vs its control; a selectivity row may follow
            by.setdefault(ev.sub, ev)
        prim = by.get(subs[0])
        cells = [_cell(by[s]) if s in by else "–" for s in subs]
        reading = "–" if prim is None else prim.why.split(":")[0]
        lines.append(f"| {run} | M_{r} | " + " | ".join(cells) + f" | {0 if prim is None else prim.n} | {reading} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated self-training output folders")
    ap.add_argument("--md", type=Path, default=Path("experiments/results/self_training_mechanism.md"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    base = load_model("smollm2-135m-instruct", device="cpu")
    done_base: dict[tuple[str, str], Path] = {}
    table = []
    for top in args.runs.split(","):
        for run in sorted(p.parent for p in Path(top).glob(f"*/{CONFIG_FILE}")):
            for r in _rounds(run):
                table.append((f"{Path(top).name}/{run.name}", r, _e3(run, r, base, done_base)))
    lines = ["# Does the mechanism change over self-training rounds? E3 per round", "",
             "Each cell: probe-transfer accuracy (95% CI) vs its shuffled-label / majority control; the best layer",
             "is selected on one half of the items and estimated on the other (the battery's E3).", "",
             f"Command: `python experiments/self_training_mechanism.py --runs {args.runs}`", "", *markdown(table), ""]
    args.md.parent.mkdir(parents=True, exist_ok=True)
    if args.md.exists() and "## Reading" in args.md.read_text():
        lines += ["## Reading", "", args.md.read_text().split("## Reading", 1)[1].strip(), ""]
    args.md.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
