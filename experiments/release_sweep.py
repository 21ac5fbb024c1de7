"""Run `behave` on every release file of the paper's sample data and check the summaries.

For each file in ../shared/data/looking_inward/{train,test}/, runs the behavioural measurement
(forced choice by default) on the embedded model and recomputes self-prediction accuracy and
the mode baseline by hand from the Parquet table; the two must agree exactly. Accuracy, mode
baseline and compliance carry Wilson 95% intervals over exactly the scored items.

    python experiments/release_sweep.py --out runs/release_sweep [--mode free] [--n 50]

Writes ``<out>/sweep-<mode>.json`` and a markdown table to ``--summary`` (default
``experiments/results/release_sweep_<mode>.md``).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import typer

from innerprobe.behavior import BehaviorResult
from innerprobe.core.io import write_json
from innerprobe.core.stats import Estimate

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


def _ci(est: Estimate) -> str:
    return f"{est.value:.3f} [{est.ci_low:.3f}, {est.ci_high:.3f}]"


def markdown(rows: list[dict], mode: str, model: str) -> str:
    """The sweep as a markdown table (one row per release file)."""
    lines = [
        f"# Release sweep ({mode} choice, {model})",
        "",
        "Every 50-row sample file of the paper's release (`../shared/data/looking_inward`), run with "
        "`behave --release FILE` and its per-task defaults; accuracy and mode baseline recomputed "
        "from the Parquet table (column *agrees*). Intervals: Wilson 95% over the scored items.",
        "",
        "| file | property | items | object compliance | scored | self-prediction | mode baseline | "
        "hypothetical compliance | agrees |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['file']} | error: {r['error'][:80]} | | | | | | | |")
            continue
        lines.append(
            f"| {r['file']} | {r['property']} | {r['n_items']} | {_ci(r['object_compliance'])} | "
            f"{r['n_scored']} | {_ci(r['self'])} | {r['mode']!r} {_ci(r['mode_baseline'])} | "
            f"{_ci(r['hypothetical_compliance']) if r['hypothetical_compliance'] else 'n/a'} | "
            f"{'yes' if r['agrees'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(
    out: Path = Path("runs/release_sweep"),
    model: str = "smollm2-135m-instruct",
    mode: str = "forced",
    n: int = 50,
    summary_md: Path | None = typer.Option(None, "--summary", help="Markdown table path."),
) -> None:
    from typer.testing import CliRunner

    from innerprobe.cli.app import app

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
        result = BehaviorResult.load(run_dir)
        acc, base = recompute(pd.read_parquet(run_dir / "behavior.parquet"))
        s = result.summary
        row = {
            "file": f"{f.parent.name}/{f.name}",
            "property": s.property,
            "n_items": s.n_items,
            "n_scored": s.n_scored,
            "object_compliance": s.object_compliance,
            "self": s.self.accuracy,
            "hypothetical_compliance": s.self.compliance,
            "mode": s.mode_baseline.mode,
            "mode_baseline": s.mode_baseline.estimate,
            "recomputed_accuracy": acc,
            "recomputed_baseline": base,
            "agrees": abs(acc - s.self.accuracy.value) < 1e-12
            and abs(base - s.mode_baseline.estimate.value) < 1e-12,
        }
        rows.append(row)
        log.info("%s", row)
    write_json(out / f"sweep-{mode}.json", rows)
    target = summary_md or REPO / "experiments" / "results" / f"release_sweep_{mode}.md"
    target.write_text(markdown(rows, mode, model))
    log.info("wrote %s", target)


if __name__ == "__main__":
    typer.run(main)
