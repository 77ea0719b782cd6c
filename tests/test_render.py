"""analysis.render: Markdown and self-contained HTML with PNG figures."""

from __future__ import annotations

import base64
import math

import matplotlib.pyplot as plt
import pytest

from analysis.render import Document, format_cell, inline_figures


def _doc() -> Document:
    doc = Document("Report <1>")
    doc.heading("Numbers")
    doc.paragraph("a & b")
    doc.bullets(["one", "two"])
    doc.table([{"k": 1, "acc": 0.123456, "run": "r|1", "url": "runs/r1"}, {"k": 2, "acc": math.nan, "run": "r2",
                                                                            "url": None}],
              columns=["k", "acc", "run"], links={"run": "url"})
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    doc.figure(fig, "curve", "a curve")
    return doc


def test_write_markdown_html_and_png(tmp_path):
    paths = _doc().write(tmp_path)
    md = paths.markdown.read_text()
    assert md.startswith("# Report <1>\n")
    assert "| k | acc | run |" in md
    assert "| 1 | 0.1235 | [r\\|1](runs/r1) |" in md
    assert "| 2 |  | r2 |" in md  # NaN is an empty cell, no link without a target
    assert "![a curve](curve.png)" in md
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and paths.figures == [tmp_path / "curve.png"]
    page = paths.html.read_text()
    assert "<h1>Report &lt;1&gt;</h1>" in page and "<p>a &amp; b</p>" in page
    assert base64.b64encode(png).decode() in page  # self-contained: the PNG is embedded
    assert '<a href="runs/r1">r|1</a>' in page


def test_inline_figures_embeds_each_png_and_keeps_the_rest(tmp_path):
    paths = _doc().write(tmp_path)
    png = (tmp_path / "curve.png").read_bytes()
    inlined = inline_figures(paths.markdown)
    assert "](curve.png)" not in inlined  # nothing a viewer elsewhere cannot load
    assert f"![a curve](data:image/png;base64,{base64.b64encode(png).decode()})" in inlined
    assert inlined.replace(f"data:image/png;base64,{base64.b64encode(png).decode()}", "curve.png") == \
        paths.markdown.read_text()


def test_bad_figure_names_rejected():
    doc = Document("x")
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="lowercase file stem"):
        doc.figure(fig, "Bad Name", "c")
    doc.figure(fig, "ok", "c")
    with pytest.raises(ValueError, match="two figures named 'ok'"):
        doc.figure(fig, "ok", "c")
    plt.close(fig)


def test_format_cell():
    assert format_cell(None) == "" and format_cell(float("nan")) == ""
    assert format_cell(2.0 / 3) == "0.6667" and format_cell(7) == "7" and format_cell("s") == "s"
