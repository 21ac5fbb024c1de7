"""``write_zoo_report``: the zoo study as one self-contained HTML page, with its JSON beside it.

The confusion table (planted mechanism × verdict) first, then the per-row grid and its figure,
each model's route check and verdict with the reason, the match rates with their Wilson
intervals, and the config; every number sits in the page's JSON block and in ``zoo_study.json``'s
sibling ``zoo_report.json`` (:func:`load_zoo_report` reads either back).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from innerprobe.core.html import HtmlPage, read_json_block
from innerprobe.core.io import read_json, write_json
from innerprobe.core.result import decode, encode
from innerprobe.study.zoo_result import ZooStudyResult, frame

REPORT_JSON = "zoo_report.json"


def report_data(result: ZooStudyResult) -> dict:
    """Every number of the report, JSON-safe: the table's records and the encoded summary."""
    return {"table": encode(result.table.to_dict(orient="records")), "summary": encode(result.summary)}


def write_zoo_report(result: ZooStudyResult, path: str | Path) -> Path:
    """Write ``path`` (HTML, atomic) and ``zoo_report.json`` beside it; return the HTML path."""
    path = Path(path)
    s = result.summary
    page = HtmlPage("innerprobe zoo: the battery on models with planted self-report mechanisms")
    page.heading("Planted mechanism × verdict")
    page.table(result.confusion().reset_index())
    page.text(f"Verdicts matched: {s.verdict_match} (all models); {s.verdict_match_held_out} on held-out seeds "
              f"{s.held_out_seeds}; {s.verdict_match_verified} on models whose route check passed.")
    page.heading("Each scored row: expected vs the battery's reading")
    page.figure(result.figure(), caption="green: the battery's reading matches the planted mechanism")
    page.table(result.table, caption="effect with its 95% CI beside its control, n, and why")
    page.heading("Per-row match rates (Wilson 95% CI over models)")
    page.table(pd.DataFrame([{"row": k, "match": str(v)} for k, v in s.row_match.items()]))
    page.heading("Models: route check, verdict, wall times")
    page.table(pd.DataFrame([asdict(o) for o in s.outcomes]))
    page.heading("Config")
    page.preformatted("\n".join(f"{k} = {v}" for k, v in s.config.items()))
    data = report_data(result)
    page.json_block(data)
    write_json(path.with_name(REPORT_JSON), data)
    return page.write(path)


def load_zoo_report(path: str | Path) -> ZooStudyResult:
    """The :class:`ZooStudyResult` of a report: from its HTML's JSON block or its ``zoo_report.json``."""
    path = Path(path)
    data = read_json(path) if path.suffix == ".json" else read_json_block(path)
    return ZooStudyResult(frame(decode(data["table"])), decode(data["summary"]))


__all__ = ["REPORT_JSON", "load_zoo_report", "report_data", "write_zoo_report"]
