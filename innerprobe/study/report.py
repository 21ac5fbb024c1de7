"""``write_report``: one self-contained HTML page of a battery, with every number as JSON beside it.

The verdict table comes first, then one section per experiment (its rows, a figure of effects
beside controls, and each row's one-line reading), then the config, model and library versions.
Every number is embedded (``HtmlPage.json_block``) and written beside the page as
``report.json``; :func:`load_report` rebuilds the :class:`BatteryResult` from either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from innerprobe.core.html import HtmlPage, read_json_block
from innerprobe.core.io import read_json, write_json
from innerprobe.core.result import decode, encode
from innerprobe.study.battery_result import BatteryResult


def report_data(result: BatteryResult) -> dict[str, Any]:
    """Every number of the report, JSON-safe (round-trips through :func:`result_from_data`)."""
    return {"battery": encode(result)}


def result_from_data(data: dict[str, Any]) -> BatteryResult:
    return decode(data["battery"])


def write_report(result: BatteryResult, path: str | Path) -> Path:
    """Write ``path`` (HTML, atomic) and ``report.json`` beside it; return the HTML path."""
    path = Path(path)
    cfg = result.config
    page = HtmlPage(f"innerprobe battery: {cfg.get('model')} / {cfg.get('task')} / {cfg.get('property')}")
    page.heading("Verdict")
    page.table(pd.DataFrame([{"model": v.model, "hypothesis": v.hypothesis, "why": v.why,
                              "findings": "; ".join(v.findings) or "—"} for v in result.summary.verdicts]))
    page.table(result.table, caption="Every row: effect with its 95% CI beside its control, n, and what it supports")
    page.figure(result.figure(), caption="Effects (95% CI) beside their controls")
    for exp, rows in result.table.groupby("experiment", sort=False):
        page.heading(f"{exp}", level=3)
        page.table(rows.drop(columns=["experiment"]))
        if rows["effect"].notna().any():
            page.figure(result.figure(str(exp)), caption=f"{exp}: effects (95% CI) beside their controls")
        for r in rows.itertuples():
            page.text(f"{r.model} {r.sub}: {r.supports} — {r.why}", css_class="note")
    page.heading("Stage wall times (s)")
    page.table(pd.DataFrame([{"stage": k, "seconds": v} for k, v in result.summary.stage_seconds.items()]))
    page.heading("Config, model and versions")
    page.preformatted("\n".join(f"{k} = {v}" for k, v in cfg.items()))
    page.preformatted("\n".join(f"{k}: {v}" for k, v in result.provenance.items()))
    data = report_data(result)
    page.json_block(data)
    write_json(path.with_name("report.json"), data)
    return page.write(path)


def load_report(path: str | Path) -> BatteryResult:
    """The :class:`BatteryResult` of a report: from its HTML's JSON block or its ``report.json``."""
    path = Path(path)
    data = read_json(path) if path.suffix == ".json" else read_json_block(path)
    return result_from_data(data)


__all__ = ["load_report", "write_report"]
