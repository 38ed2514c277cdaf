"""``index.html``: the report's index for a browser, from the same entries as ``index.md``.

Self-contained: figures by relative path, tables as HTML tables, the style inline,
nothing fetched from the network.
"""

import html
import re
from collections.abc import Sequence
from typing import Protocol

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.45; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
th { background: #f2f2f2; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.missing { color: #666; font-style: italic; } .files { font-size: 0.85rem; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


class Shown(Protocol):
    """What the index shows of a figure or a table (``build.Entry``)."""

    title: str
    shows: str
    files: list[str]
    skipped: str | None
    table: pd.DataFrame | None
    kind: str


def inline(text: str) -> str:
    """Escaped text with the index's Markdown code spans (`x`) as ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, escape=True, na_rep="–")


def _entry(n: int, entry: Shown) -> list[str]:
    out = [f"<section><h2>{n}. {html.escape(entry.title)}</h2>", f"<p>{inline(entry.shows)}</p>"]
    if entry.skipped:
        missing = "Not drawn" if entry.kind == "figure" else "Nothing to show"
        return [
            *out,
            f'<p class="missing">{missing}: {html.escape(entry.skipped)}.</p>',
            "</section>",
        ]
    if entry.table is not None:
        out.append(table(entry.table))
    for name in entry.files:
        if name.endswith(".png"):
            src = html.escape(name, quote=True)
            out.append(f'<p><img src="{src}" alt="{html.escape(entry.title, quote=True)}"></p>')
    links = " · ".join(
        f'<a href="{html.escape(n, quote=True)}">{html.escape(n)}</a>' for n in entry.files
    )
    return [*out, f'<p class="files">{links}</p>', "</section>"]


def page(title: str, paragraphs: Sequence[str], entries: Sequence[Shown]) -> str:
    """The whole page: a title, the summary paragraphs, then each entry numbered."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [f"<p>{inline(p)}</p>" for p in paragraphs if p]
    for n, entry in enumerate(entries, start=1):
        body += _entry(n, entry)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
