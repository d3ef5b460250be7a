"""How a flight looks in Jupyter: the HTML behind ``RemoteTable._repr_html_``, built from metadata alone.

Every name and value in it comes from the server or from whoever uploaded the data (column names and SQL text can
hold any characters), so each one goes through :func:`html.escape` on its way into the page.
"""

from __future__ import annotations

import html
import json

from ._info import TableInfo, format_bytes

__all__ = ["MAX_PARAMS_CHARS", "MAX_SCHEMA_ROWS", "describe_lineage", "describe_state", "table_html"]

#: Columns listed in the schema part; wider tables end with a "… N more columns" row.
MAX_SCHEMA_ROWS = 50
#: Characters of an operation's parameters shown (a ``take`` may carry a million indices).
MAX_PARAMS_CHARS = 160

_STATES = {"memory": "in memory", "spilled": "on disk (spilled)"}
_CELL = 'style="text-align:left;vertical-align:top"'


def describe_state(state: str | None) -> str:
    """``"memory"`` → ``"in memory"``, ``"spilled"`` → ``"on disk (spilled)"``; other words as they are."""
    if state is None:
        return "unknown"
    return _STATES.get(state, state)


def describe_lineage(info: TableInfo) -> str:
    """``"filter ← f7 {"predicate": "x > 1"}"``: the op, its inputs and its parameters (cut short when long)."""
    text = info.op or "unknown"
    if info.inputs:
        text += " ← " + ", ".join(f"f{i}" for i in info.inputs)
    params = info.lineage.get("params")
    if params:
        shown = json.dumps(params, ensure_ascii=False, sort_keys=True)
        if len(shown) > MAX_PARAMS_CHARS:
            shown = shown[: MAX_PARAMS_CHARS - 1] + "…"
        text += " " + shown
    return text


def _row(label: str, value_html: str) -> str:
    return f"<tr><th {_CELL}>{html.escape(label)}</th><td {_CELL}>{value_html}</td></tr>"


def _schema_html(info: TableInfo) -> str:
    fields = list(info.schema)
    rows = "".join(
        f"<tr><td {_CELL}>{html.escape(f.name)}</td><td {_CELL}><code>{html.escape(str(f.type))}</code></td></tr>"
        for f in fields[:MAX_SCHEMA_ROWS]
    )
    if len(fields) > MAX_SCHEMA_ROWS:
        rows += f"<tr><td colspan=2 {_CELL}>… {len(fields) - MAX_SCHEMA_ROWS} more columns</td></tr>"
    return f"<table><tr><th {_CELL}>column</th><th {_CELL}>type</th></tr>{rows}</table>"


def table_html(info: TableInfo) -> str:
    """A compact two-column table: flight id, names, rows, size, state, lineage, creation time and schema."""
    names = ", ".join(info.names) if len(info.names) > 1 else (info.qualified_name or "(unnamed)")
    rows = [
        _row("flight", f"<code>f{info.id}</code>"),
        _row("name", html.escape(names)),
        _row("rows", f"{info.num_rows:,}"),
        _row("columns", f"{len(info.schema):,}"),
        _row("bytes", html.escape(format_bytes(info.nbytes))),
        _row("state", html.escape(describe_state(info.state) + (", pinned" if info.pinned else ""))),
        _row("lineage", html.escape(describe_lineage(info))),
        _row("created", html.escape(info.created_at or "unknown")),
        _row("schema", _schema_html(info)),
    ]
    return f'<div class="flightbay-remote-table"><b>flightbay.RemoteTable</b><table>{"".join(rows)}</table></div>'
