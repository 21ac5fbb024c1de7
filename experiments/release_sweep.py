"""Run `behave` on every release file of the paper's sample data and check the summaries.

For each file in ../shared/data/looking_inward/{train,test}/, runs the behavioural measurement
(forced choice by default) on the embedded model and recomputes self-prediction accuracy and
the mode baseline by hand from the Parquet table; the two must agree exactly.

    python experiments/release_sweep.py --out runs/release_sweep [--mode free] [--n 50]
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import typer

from innerprobe.artifacts import write_json

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "looking_inward"
log = logging.getLogger("release_sweep")


def recompute(table: pd.DataFrame) -> tuple[float, float]:
    """Accuracy and mode baseline recomputed from the per-item table."""
    scored = table[table.scored]
    counts = Counter(scored.object_value)
    top = max(counts.values())
    mode = min(v for v, c in counts.items() if c == top)
    return float(scored.correct.mean()), float((scored.object_value == mode).mean())


def main(
    out: Path = Path("runs/release_sweep"),
    model: str = "smollm2-135m-instruct",
    mode: str = "forced",
    n: int = 50,
) -> None:
    from typer.testing import CliRunner

    from innerprobe.cli import app

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for f in sorted(DATA.glob("*/*.jsonl")):
        run_dir = out / f"{f.parent.name}-{f.stem}-{mode}"
        r = CliRunner().invoke(
            app, ["behave", "--model", model, "--release", str(f), "--n", str(n), "--mode", mode,
                  "--out", str(run_dir)],
        )
        if r.exit_code != 0:
            rows.append({"file": f"{f.parent.name}/{f.name}", "error": r.output.strip()[-300:]})
            log.info("%s: failed: %s", f.name, r.output.strip()[-300:])
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        acc, base = recompute(pd.read_parquet(run_dir / "behavior.parquet"))
        row = {
            "file": f"{f.parent.name}/{f.name}",
            "property": summary["property"],
            "n_scored": summary["n_scored"],
            "object_compliance": summary["object_compliance"]["value"],
            "self_accuracy": summary["self"]["accuracy"]["value"],
            "self_ci": [summary["self"]["accuracy"]["ci_low"], summary["self"]["accuracy"]["ci_high"]],
            "mode_baseline": summary["mode_baseline"]["estimate"]["value"],
            "recomputed_accuracy": acc,
            "recomputed_baseline": base,
            "agrees": abs(acc - summary["self"]["accuracy"]["value"]) < 1e-12
            and abs(base - summary["mode_baseline"]["estimate"]["value"]) < 1e-12,
        }
        rows.append(row)
        log.info("%s", row)
    write_json(out / f"sweep-{mode}.json", rows)


if __name__ == "__main__":
    typer.run(main)
