"""Render a `Report` as one self-contained HTML file: inline CSS, PNG figures as base64 data URIs,
no scripts and no network references, so it opens anywhere (mail, CI artifacts, offline)."""
from __future__ import annotations

import base64
import html
import re

from .document import Block, Figure, Report, Table

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; } td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { text-align: left; } th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
"""

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline(text: str) -> str:
    """Escape text, then turn Markdown `code` and **bold** spans into HTML."""
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def png_data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so the image travels inside the HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_table(table: Table) -> str:
    """A <table> with a header row; cells are formatted like the Markdown table."""
    head = "".join(f"<th>{html.escape(table.header(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n"
                   for row in table.cells())
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def html_block(block: Block, figures: dict[str, bytes]) -> str:
    """One paragraph, table or figure; a figure without a PNG becomes a note, not a broken image."""
    if isinstance(block, Table):
        return html_table(block)
    if isinstance(block, Figure):
        png = figures.get(block.key)
        if not png:
            return f"<p><em>Figure '{html.escape(block.key)}' not available: {inline(block.caption)}</em></p>"
        return (f'<figure id="fig-{html.escape(block.key)}"><img alt="{html.escape(block.caption)}" '
                f'src="{png_data_uri(png)}"><figcaption>{inline(block.caption)}</figcaption></figure>')
    return f"<p>{inline(block)}</p>"


def render_html(report: Report, figures: dict[str, bytes]) -> str:
    """The full report as a standalone HTML document; `figures` maps figure keys to PNG bytes."""
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>"]
    parts += [html_block(b, figures) for b in report.preamble]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [html_block(b, figures) for b in section.blocks]
    parts.append("</body></html>\n")
    return "\n".join(parts)
