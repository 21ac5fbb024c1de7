"""core.html: self-contained pages (plotly.js inline, no CDN) that round-trip their JSON block."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from innerprobe.core.errors import DataError
from innerprobe.core.html import HtmlPage, read_json_block


def _page() -> HtmlPage:
    page = HtmlPage("A <report>")
    page.heading("Verdict").table(pd.DataFrame({"experiment": ["E1"], "effect": [0.123456]}))
    page.figure(go.Figure(go.Bar(x=["a"], y=[1])), caption="bars")
    page.figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])))
    page.json_block({"numbers": [1.5, 2], "text": "</script> inside"})
    return page


def test_page_is_self_contained_and_round_trips(tmp_path):
    path = _page().write(tmp_path / "r.html")
    text = path.read_text()
    assert "<script src" not in text and "<link" not in text  # nothing fetched from a network
    assert text.count("Plotly.newPlot") == 2  # both figures drawn
    assert "&lt;report&gt;" in text  # the title is escaped
    assert "0.123" in text and "0.123456" not in text
    assert read_json_block(path) == {"numbers": [1.5, 2], "text": "</script> inside"}


def test_plotly_js_embedded_once(tmp_path):
    text = _page().write(tmp_path / "r.html").read_text()
    assert len(text) > 1_000_000  # the bundle itself
    assert text.count('<script type="text/javascript">') == 1


def test_page_without_json_block_is_refused(tmp_path):
    path = HtmlPage("x").text("hi").write(tmp_path / "x.html")
    with pytest.raises(DataError, match="no innerprobe JSON block"):
        read_json_block(path)


def test_bad_heading_level_and_second_block():
    page = HtmlPage("x")
    with pytest.raises(DataError, match="heading level"):
        page.heading("h", level=7)
    page.json_block({})
    with pytest.raises(DataError, match="one JSON block"):
        page.json_block({})
