"""``innerprobe report SWEEP_DIR``: the sweep's cells side by side in one self-contained page.

For each experiment, each of its headline metrics (:data:`HEADLINE`, else every metric) becomes a
heatmap of (model · property) rows × task columns (mean over seeds and modes), with its control
beside it where the stage has one (``self_accuracy`` beside ``mode_baseline``,
``transfer_accuracy`` beside ``transfer_majority``). Below: the wide table of every cell's
headline numbers with their intervals, the failed cells with their errors, and the whole table
as the page's JSON block (:func:`innerprobe.core.html.read_json_block` reads it back). The page
is written with :class:`~innerprobe.core.html.HtmlPage` (plotly.js inline, no network needed).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from innerprobe.core.html import HtmlPage
from innerprobe.study.results_store import ResultsStore
from innerprobe.study.sweep import SweepResult, metric_heatmap, sweep_result

REPORT = "report.html"
HEADLINE: dict[str, tuple[str, ...]] = {
    "behave": ("self_accuracy", "mode_baseline", "self_minus_baseline", "self_compliance"),
    "probes": ("transfer_accuracy", "transfer_majority", "transfer_layer", "object_accuracy"),
}
"""The metrics drawn per stage kind, effect first, its control next."""


def _with_ci(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows[["experiment", "model", "task", "property", "mode", "seed", "metric", "estimate", "ci_low",
                "ci_high", "n"]].copy()
    out["mode"] = out["mode"].fillna("–")
    return out.sort_values(["experiment", "metric", "model", "property", "task"]).reset_index(drop=True)


def sweep_page(result: SweepResult, title: str) -> HtmlPage:
    """The report page of ``result`` (see the module docstring)."""
    s, table = result.summary, result.table
    page = HtmlPage(title)
    page.text(f"{s.n_cells} cells: {s.n_done} done, {s.n_failed} failed, {s.n_pending} pending. "
              "Heatmaps show the mean estimate over seeds and modes; the tables give every cell with "
              "its 95% interval and n.", css_class="note")
    for experiment in sorted(set(table["experiment"])):
        rows = table[table["experiment"] == experiment]
        kind = str(rows["kind"].iloc[0])
        page.heading(f"{experiment} ({kind})")
        present = list(dict.fromkeys(rows["metric"]))
        metrics = [m for m in HEADLINE.get(kind, ()) if m in present] or present
        for metric in metrics:
            page.figure(metric_heatmap(rows, metric, experiment))
        page.table(_with_ci(rows[rows["metric"].isin(metrics)]), caption=f"{experiment}: every cell")
    if len(result.errors):
        page.heading("Failed cells")
        page.table(result.errors)
    page.json_block({"summary": s.to_dict(), "table": table.to_dict(orient="records"),
                     "errors": result.errors.to_dict(orient="records")})
    return page


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the sweep in ``sweep_dir`` (default ``<sweep_dir>/report.html``)."""
    store = ResultsStore(sweep_dir)
    result = sweep_result(store)
    out = Path(out) if out is not None else Path(sweep_dir) / REPORT
    return sweep_page(result, f"Sweep report: {Path(sweep_dir).name}").write(out)


__all__ = ["write_sweep_report", "sweep_page", "HEADLINE", "REPORT"]
