"""Reports as Markdown plus a self-contained HTML page, with PNG figures.

A report is built block by block (headings, paragraphs, tables, figures) and written once:

    doc = Document("RL effects: default-1a2b3c")
    doc.heading("Pass@K and Maj@K")
    doc.paragraph("Maj@16 rose by 3.2 points ...")
    doc.table(rows, columns=["K", "pass@K", "maj@K"])
    doc.figure(fig, "pass_maj_vs_k", "Pass@K and Maj@K vs K")
    paths = doc.write(out_dir)   # out_dir/report.md, out_dir/report.html, out_dir/pass_maj_vs_k.png

The Markdown links the PNG files beside it; the HTML embeds them (base64), so it can be mailed or
attached as one file. `inline_figures(paths.markdown)` is the Markdown with the PNGs embedded as
data URIs, for a viewer that cannot reach files beside it (a Prefect artifact in the UI).
Text is escaped for HTML; Markdown table cells have `|` escaped.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written by workers with no display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["Document", "ReportPaths", "format_cell", "inline_figures"]

_SLUG = re.compile(r"[a-z0-9][a-z0-9_\-]*")
_FIGURE_LINK = re.compile(r"^!\[(?P<caption>[^\]\n]*)\]\((?P<name>[a-z0-9][a-z0-9_\-]*)\.png\)$", re.MULTILINE)
_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0}figure img{max-width:100%}figcaption{color:#555;font-size:.9rem}"""


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    figures: list[Path]


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def inline_figures(markdown_path: Path) -> str:
    """The Markdown file `Document.write` wrote, with each figure's link to its PNG beside it replaced
    by the PNG itself (a data URI)."""
    markdown_path = Path(markdown_path)
    return _FIGURE_LINK.sub(
        lambda m: f"![{m['caption']}]({_data_uri((markdown_path.parent / (m['name'] + '.png')).read_bytes())})",
        markdown_path.read_text())


def format_cell(value: Any) -> str:
    """How a value prints in a table: floats to 4 significant digits, None/NaN as an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class Document:
    """An ordered list of blocks, rendered to Markdown and HTML by `write`."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        if not 2 <= level <= 4:
            raise ValueError(f"heading level must be 2..4 (the title is level 1), got {level}")
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(("code", (language, text)))

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              links: Mapping[str, str] | None = None) -> None:
        """A table of `rows` (dicts); `columns` picks and orders them (default: the first row's keys).
        `links` maps a column to another column holding a URL/path that cell should link to."""
        columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
        self.blocks.append(("table", (columns, [dict(r) for r in rows], dict(links or {}))))

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        """A matplotlib figure, saved as {name}.png; the figure is closed once written."""
        if not _SLUG.fullmatch(name):
            raise ValueError(f"figure name must be a lowercase file stem like 'pass_at_k', got {name!r}")
        if any(kind == "figure" and block[0] == name for kind, block in self.blocks):
            raise ValueError(f"two figures named {name!r}")
        self.blocks.append(("figure", (name, caption, fig)))

    def write(self, out_dir: Path, stem: str = "report") -> ReportPaths:
        """Write {stem}.md, {stem}.html and one PNG per figure into out_dir (created if missing)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pngs: dict[str, bytes] = {}
        for kind, block in self.blocks:
            if kind == "figure":
                name, _, fig = block
                path = out_dir / f"{name}.png"
                fig.savefig(path, dpi=110, bbox_inches="tight")
                plt.close(fig)
                pngs[name] = path.read_bytes()
        md_path, html_path = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        md_path.write_text(self._markdown())
        html_path.write_text(self._html(pngs))
        return ReportPaths(md_path, html_path, [out_dir / f"{n}.png" for n in pngs])

    def _markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, block in self.blocks:
            if kind == "heading":
                level, text = block
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [block, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in block] + [""]
            elif kind == "code":
                language, text = block
                out += [f"```{language}", text.rstrip("\n"), "```", ""]
            elif kind == "table":
                columns, rows, links = block
                out += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                for row in rows:
                    cells = []
                    for c in columns:
                        text = format_cell(row.get(c)).replace("|", "\\|")
                        target = row.get(links[c]) if c in links else None
                        cells.append(f"[{text}]({target})" if target else text)
                    out.append("| " + " | ".join(cells) + " |")
                out.append("")
            elif kind == "figure":
                name, caption, _ = block
                out += [f"![{caption}]({name}.png)", "", f"*{caption}*", ""]
        return "\n".join(out)

    def _html(self, pngs: Mapping[str, bytes]) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for kind, block in self.blocks:
            if kind == "heading":
                level, text = block
                body.append(f"<h{level}>{e(text)}</h{level}>")
            elif kind == "paragraph":
                body.append(f"<p>{e(block)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in block) + "</ul>")
            elif kind == "code":
                body.append(f"<pre><code>{e(block[1])}</code></pre>")
            elif kind == "table":
                columns, rows, links = block
                head = "".join(f"<th>{e(c)}</th>" for c in columns)
                lines = []
                for row in rows:
                    cells = []
                    for c in columns:
                        value = row.get(c)
                        text = e(format_cell(value))
                        target = row.get(links[c]) if c in links else None
                        if target:
                            text = f'<a href="{e(str(target))}">{text}</a>'
                        css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
                        cells.append(f"<td{css}>{text}</td>")
                    lines.append("<tr>" + "".join(cells) + "</tr>")
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>")
            elif kind == "figure":
                name, caption, _ = block
                body.append(f'<figure><img alt="{e(caption)}" src="{_data_uri(pngs[name])}">'
                            f"<figcaption>{e(caption)}</figcaption></figure>")
        return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{e(self.title)}</title>"
                f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
