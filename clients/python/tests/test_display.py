"""``RemoteTable._repr_html_``, Jupyter's view of a flight: exact content, escaping, and no rows fetched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pyarrow as pa

import flightbay
from flightbay._display import MAX_PARAMS_CHARS

from .conftest import Server

HOSTILE = "<script>alert('x')</script>"


@dataclass
class View:
    """The page read back: the outer table's ``label -> text`` and the schema table's ``(column, type)`` rows."""

    fields: dict[str, str] = field(default_factory=dict)
    columns: list[tuple[str, str]] = field(default_factory=list)


class _Reader(HTMLParser):
    """Collects the text of each table cell by nesting depth; entities are decoded, as a browser shows them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.rows: list[tuple[int, list[str]]] = []
        self._row: list[list[str]] = []
        self._cell: list[list[str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.depth += 1
        elif tag == "tr":
            self._row.append([])
        elif tag in ("th", "td"):
            self._cell.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.depth -= 1
        elif tag == "tr":
            self.rows.append((self.depth, self._row.pop()))
        elif tag in ("th", "td"):
            self._row[-1].append("".join(self._cell.pop()).strip())

    def handle_data(self, data: str) -> None:
        if self._cell:
            self._cell[-1].append(data)


def read(page: str) -> View:
    reader = _Reader()
    reader.feed(page)
    reader.close()
    assert reader.scripts == 0 and reader.depth == 0
    view = View()
    for depth, cells in reader.rows:
        if depth == 1:
            label, value = cells
            view.fields[label] = value
        elif cells != ["column", "type"]:
            view.columns.append((cells[0], cells[1] if len(cells) > 1 else ""))
    return view


def test_html_shows_the_flight_exactly(client: flightbay.Client, name: str) -> None:
    t = client.upload(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "label": ["a", "b", "c"]}), name)
    assert t.nbytes < 1024  # shown in bytes, unscaled
    view = read(t._repr_html_())
    assert view.fields == {
        "flight": f"f{t.id}",
        "name": f"default.{name}",
        "rows": "3",
        "columns": "2",
        "bytes": f"{t.nbytes} B",
        "state": "in memory",
        "lineage": 'upload {"mode": "error"}',
        "created": t.info.created_at,
        "schema": "",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", view.fields["created"])
    assert view.columns == [("id", "int64"), ("label", "string")]

    derived = t.filter("label <> 'b'")
    view = read(derived._repr_html_())
    assert view.fields["flight"] == f"f{derived.id}" and derived.id != t.id
    assert view.fields["name"] == "(unnamed)"
    assert view.fields["rows"] == "2"
    assert view.fields["lineage"] == f'filter ← f{t.id} {{"predicate": "label <> \'b\'"}}'


def test_html_escapes_names_and_sql(client: flightbay.Client, name: str) -> None:
    t = client.upload(pa.table({HOSTILE: [1, 2], "label": ["</td>", "&amp;"]}), name)
    derived = t.filter("label = '</td><b>&'")
    for handle in (t, derived):
        page = handle._repr_html_()
        assert "<script" not in page and "</td><b>" not in page
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    # Read back the way a browser decodes it, the names and the SQL are intact.
    assert read(t._repr_html_()).columns == [(HOSTILE, "int64"), ("label", "string")]
    lineage = read(derived._repr_html_()).fields["lineage"]
    assert lineage == f'filter ← f{t.id} {{"predicate": "label = \'</td><b>&\'"}}'
    assert "&lt;/td&gt;&lt;b&gt;&amp;" in derived._repr_html_()


def test_html_cuts_long_parameters_and_wide_schemas(client: flightbay.Client, name: str) -> None:
    wide = client.upload(pa.table({f"c{i}": [i] for i in range(60)}), name)
    view = read(wide._repr_html_())
    assert view.fields["columns"] == "60"
    assert view.columns == [(f"c{i}", "int64") for i in range(50)] + [("… 10 more columns", "")]

    taken = wide.take([0] * 1000)
    lineage = read(taken._repr_html_()).fields["lineage"]
    prefix = f'take ← f{wide.id} {{"indices": [0, 0, 0, '
    assert lineage.startswith(prefix) and lineage.endswith("…")
    assert len(lineage) == len(f"take ← f{wide.id} ") + MAX_PARAMS_CHARS


def test_html_shows_spilled_state_and_every_name(fresh_client: flightbay.Client) -> None:
    t = fresh_client.upload(pa.table({"x": pa.array(range(100_000), pa.int64())}), "readings")
    fresh_client.do_action("rename", id=t.id, name="latest", namespace="sensors")
    assert fresh_client.do_action("spill", id=t.id) == {"id": t.id, "state": "spilled"}
    assert read(t._repr_html_()).fields["state"] == "in memory"  # as of when the handle was made
    view = read(t.refresh()._repr_html_())
    assert view.fields["state"] == "on disk (spilled)"
    assert view.fields["name"] == "default.readings, sensors.latest"
    assert view.fields["bytes"] == "781.2 KiB" and t.nbytes == 800_000
    fresh_client.do_action("pin", id=t.id)
    pinned = t.refresh()
    assert pinned.info.pinned
    assert read(pinned._repr_html_()).fields["state"] == "in memory, pinned"


def test_views_never_ask_the_server(server: Server, fresh_client: flightbay.Client) -> None:
    t = fresh_client.upload(pa.table({"x": [1.5, 2.5]}), "gone")
    fresh_client.do_action("shutdown")
    assert server.proc.wait(timeout=20) == 0
    text = repr(t)
    assert text.startswith(f"<flightbay.RemoteTable f{t.id} 'default.gone': 2 rows x 1 columns, ")
    assert text.endswith("memory>\nx: double")
    assert read(t._repr_html_()).fields["rows"] == "2"
