"""Self-contained HTML pages: plotly figures inline (plotly.js embedded once, no CDN), tables,
text and a machine-readable JSON block, written atomically.

A report must open years later on a machine with no network, so the page carries everything it
needs: the plotly.js bundle is written once into the head, every figure is a ``<div>`` plus the
call that draws it, and the numbers behind the page sit in a ``<script type="application/json">``
block that :func:`read_json_block` reads back (a report round-trips from its own file).

Usage::

    page = HtmlPage("Battery: smollm2 / animals / second_character")
    page.heading("Verdict")
    page.table(df)
    page.figure(fig, caption="Probe accuracy by layer")
    page.json_block(numbers)
    page.write("report.html")
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from innerprobe.core.errors import DataError
from innerprobe.core.io import _jsonable, atomic_path

JSON_BLOCK_ID = "innerprobe-data"
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


@dataclass
class HtmlPage:
    """An HTML page built in order: headings, paragraphs, tables, figures, preformatted text."""

    title: str
    parts: list[str] = field(default_factory=list)
    n_figures: int = 0
    _data: Any = None

    def heading(self, text: str, level: int = 2) -> HtmlPage:
        if level not in (1, 2, 3, 4):
            raise DataError(f"heading level must be 1-4, got {level}")
        self.parts.append(f'<h{level} id="{_slug(text)}">{html.escape(text)}</h{level}>')
        return self

    def text(self, text: str, *, css_class: str | None = None) -> HtmlPage:
        cls = f' class="{css_class}"' if css_class else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def preformatted(self, text: str) -> HtmlPage:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def table(self, df: pd.DataFrame, *, caption: str | None = None, float_format: str = "{:.3g}") -> HtmlPage:
        """A DataFrame as an HTML table (floats to 3 significant digits unless told)."""
        fmt = {c: float_format.format for c in df.columns if pd.api.types.is_float_dtype(df[c])}
        body = df.to_html(index=False, escape=True, formatters=fmt, na_rep="—", border=0)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f"<figure>{body}{cap}</figure>")
        return self

    def figure(self, fig: go.Figure, *, caption: str | None = None) -> HtmlPage:
        """A plotly figure drawn from the plotly.js embedded in the page's head."""
        self.n_figures += 1
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{self.n_figures}")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure class="plot">{div}{cap}</figure>')
        return self

    def json_block(self, data: Any) -> HtmlPage:
        """Embed ``data`` (JSON-able) once; :func:`read_json_block` returns it from the file."""
        if self._data is not None:
            raise DataError("a page holds one JSON block; merge the data into one object")
        self._data = data
        return self

    def render(self) -> str:
        head = (
            f'<meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{_STYLE}</style>"
        )
        if self.n_figures:
            head += f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        data = ""
        if self._data is not None:
            payload = json.dumps(self._data, sort_keys=True, default=_jsonable).replace("</", "<\\/")
            data = f'<script type="application/json" id="{JSON_BLOCK_ID}">{payload}</script>'
        body = f"<h1>{html.escape(self.title)}</h1>" + "\n".join(self.parts)
        return f"<!DOCTYPE html>\n<html><head>{head}</head><body>{body}{data}</body></html>\n"

    def write(self, path: str | Path) -> Path:
        """Write the page atomically (a reader never sees half a report)."""
        with atomic_path(path) as tmp:
            tmp.write_text(self.render(), encoding="utf-8")
        return Path(path)


def read_json_block(path: str | Path) -> Any:
    """The JSON block embedded by :meth:`HtmlPage.json_block`; ``DataError`` if the page has none."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(rf'<script type="application/json" id="{JSON_BLOCK_ID}">(.*?)</script>', text, re.S)
    if m is None:
        raise DataError(f"{path}: no innerprobe JSON block (id={JSON_BLOCK_ID!r}); not an innerprobe report?")
    return json.loads(m.group(1).replace("<\\/", "</"))
