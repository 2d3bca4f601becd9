"""Render a `Report` as GitHub-flavoured Markdown (figures are only referenced: they live in report.html)."""
from __future__ import annotations

from .document import Block, Figure, Report, Table


def markdown_table(table: Table) -> str:
    """A pipe table; numbers are formatted per column (see `document.FORMATS`)."""
    head = "| " + " | ".join(table.header(c) for c in table.columns) + " |\n"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |\n"
    body = "".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n" for row in table.cells())
    return head + rule + body


def markdown_block(block: Block) -> str:
    """One paragraph, table or figure reference as Markdown."""
    if isinstance(block, Table):
        return markdown_table(block)
    if isinstance(block, Figure):
        return f"*Figure ({block.key}, in report.html): {block.caption}*\n"
    return f"{block}\n"


def render_markdown(report: Report) -> str:
    """The full report as Markdown text."""
    parts = [f"# {report.title}\n"] + [markdown_block(b) for b in report.preamble]
    for section in report.sections:
        parts.append(f"## {section.title}\n")
        parts += [markdown_block(b) for b in section.blocks]
    return "\n".join(parts)
