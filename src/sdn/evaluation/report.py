"""Self-contained HTML reports: tables and figures, the images embedded, nothing to fetch."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from sdn.utils import atomic_write_text


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def image(path: str | Path, caption: str = "") -> str:
    path = Path(path)
    data = base64.b64encode(path.read_bytes()).decode()
    kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/{kind};base64,{data}" alt="{html.escape(path.name)}">{cap}</figure>'


def write_report(path: str | Path, title: str, sections: list[tuple[str, str]], details: dict | None = None) -> Path:
    """sections: (heading, HTML body). `details` goes in at the end as pretty JSON."""
    parts = [f"<h2>{html.escape(h)}</h2>\n{body}" for h, body in sections]
    if details is not None:
        parts.append(f"<h2>All numbers and settings</h2><pre>{html.escape(json.dumps(details, indent=2, default=str))}</pre>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{background:#f3f3f3}} img{{max-width:100%}}
figure{{margin:1em 0}} figcaption{{font-size:90%;color:#555}} pre{{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:80%}}</style>
</head><body><h1>{html.escape(title)}</h1>
{chr(10).join(parts)}
</body></html>"""
    path = Path(path)
    atomic_write_text(path, page)
    return path
