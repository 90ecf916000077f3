"""A small report document rendered to Markdown and to standalone HTML.

Reports are built from blocks (headings, paragraphs, tables, figures, code) so
the same content renders in both formats without a Markdown dependency.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Sequence


def format_value(value: Any, digits: int = 4) -> str:
    """Short human-readable rendering of a table cell."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0.0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, digits) for v in value) + "]"
    return str(value)


@dataclass
class Document:
    """An ordered list of blocks with Markdown and HTML renderers."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> "Document":
        self.blocks.append(("heading", (level, text)))
        return self

    def paragraph(self, text: str) -> "Document":
        self.blocks.append(("paragraph", text))
        return self

    def bullets(self, items: Sequence[str]) -> "Document":
        self.blocks.append(("bullets", list(items)))
        return self

    def table(self, rows: Sequence[dict], columns: Sequence[str] | None = None,
              digits: int = 4) -> "Document":
        rows = list(rows)
        if columns is None:
            columns = list(rows[0].keys()) if rows else []
        cells = [[format_value(row.get(c), digits) for c in columns] for row in rows]
        self.blocks.append(("table", (list(columns), cells)))
        return self

    def figure(self, path: str, caption: str) -> "Document":
        self.blocks.append(("figure", (path, caption)))
        return self

    def code(self, text: str) -> "Document":
        self.blocks.append(("code", text))
        return self

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, content in self.blocks:
            if kind == "heading":
                level, text = content
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [content, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in content] + [""]
            elif kind == "table":
                columns, cells = content
                out.append("| " + " | ".join(columns) + " |")
                out.append("|" + "|".join("---" for _ in columns) + "|")
                out += ["| " + " | ".join(row) + " |" for row in cells]
                out.append("")
            elif kind == "figure":
                path, caption = content
                out += [f"![{caption}]({path})", "", f"*{caption}*", ""]
            elif kind == "code":
                out += ["```", content.rstrip("\n"), "```", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        esc = html.escape
        body = [f"<h1>{esc(self.title)}</h1>"]
        for kind, content in self.blocks:
            if kind == "heading":
                level, text = content
                body.append(f"<h{level}>{esc(text)}</h{level}>")
            elif kind == "paragraph":
                body.append(f"<p>{esc(content)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in content) + "</ul>")
            elif kind == "table":
                columns, cells = content
                head = "".join(f"<th>{esc(c)}</th>" for c in columns)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in cells
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "figure":
                path, caption = content
                body.append(
                    f'<figure><img src="{esc(path)}" alt="{esc(caption)}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
            elif kind == "code":
                body.append(f"<pre><code>{esc(content)}</code></pre>")
        style = (
            "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
            "padding:0 1rem;line-height:1.45}table{border-collapse:collapse;margin:1rem 0}"
            "td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}"
            "th{background:#f3f3f3}img{max-width:100%}figcaption{font-style:italic;"
            "color:#444}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}"
        )
        return (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{esc(self.title)}</title><style>{style}</style></head>"
            f"<body>{''.join(body)}</body></html>\n"
        )
