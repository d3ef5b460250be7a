"""The dashboard at ``/`` of the HTTP listener, in a real headless Chromium driven by Playwright, against the real
binary: the page loads without errors, shows the uploaded flights and the numbers the ``stats`` action reports,
links a derived flight to its input, and with auth on shows nothing without a token and only readable flights with
one.

Needs Debian's ``chromium`` at ``/usr/bin/chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it);
the test fails when it is missing. Set ``FLIGHTBAY_SCREENSHOT=path.png`` to also save the main screenshot there
(that is how ``docs/dashboard.png`` is made).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flightbay_server import flightbay_bin

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "dashboard-test-secret-0123456789"
# The flights-table columns the first test compares.
COLUMNS = ["name", "namespace", "rows", "state", "pinned", "hits", "op"]
# Long enough for a few refreshes (the page polls every 2 s).
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Page:
    """A fresh browser page that records every JS error, console error and request it makes."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console error: {m.text}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str, state: str) -> None:
        self.page.goto(url)
        self.wait_state(state)

    def wait_state(self, state: str) -> None:
        self.page.wait_for_selector(f"body[data-state='{state}']", timeout=TIMEOUT_MS)

    def wait_refresh(self) -> None:
        """Waits for one more successful refresh than the page has had so far."""
        # Selectors, not wait_for_function: the page's Content-Security-Policy forbids evaluating strings.
        done = self.page.get_attribute("body", "data-refreshes")
        self.page.wait_for_selector(f"body:not([data-refreshes='{done}'])", timeout=TIMEOUT_MS)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()

    def cell(self, flight_id: int, column: str) -> str:
        """The text of one cell of the flights table."""
        return self.text(f"#flight-{flight_id} td[data-col='{column}']")

    def attr(self, selector: str, name: str) -> str | None:
        return self.page.locator(selector).get_attribute(name)

    def row_ids(self) -> list[int]:
        ids = self.page.locator("#flights tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
        return sorted(int(i) for i in ids)

    def close(self) -> None:
        self.context.close()


def upload(client: flight.FlightClient, path: list[str], data: pa.Table, options=None) -> dict:
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(*path), data.schema, options)
    writer.write_table(data)
    writer.done_writing()
    meta = reader.read()
    writer.close()
    return json.loads(meta.to_pybytes())


def derive(client: flight.FlightClient, command: str, options=None) -> dict:
    """The FlightInfo metadata of a SQL query or op, with the info's ``total_bytes``."""
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), options)
    return {**json.loads(info.app_metadata), "total_bytes": info.total_bytes}


def action(client: flight.FlightClient, kind: str, body: dict, options=None) -> dict:
    results = client.do_action(flight.Action(kind, json.dumps(body).encode()), options)
    return json.loads(next(iter(results)).body.to_pybytes())


def table(rows: int) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()), "x": [i * 0.5 for i in range(rows)]})


def screenshot(page: Page, path: Path) -> None:
    page.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, "an empty screenshot"


def test_the_dashboard_shows_flights_the_stats_numbers_and_lineage(start_server, browser, tmp_path: Path) -> None:
    server = start_server(memory_limit="2GiB", http=True)
    client = flight.connect(server.uri)
    trips = upload(client, ["trips"], table(1000))
    orders = upload(client, ["sales", "orders"], table(40))
    query = "SELECT id, x FROM trips WHERE id < 10"
    first, second = derive(client, query), derive(client, query)
    assert (first["cache"], second["cache"], second["id"]) == ("miss", "hit", first["id"])
    taken = derive(client, json.dumps({"op": "take", "source": "trips", "indices": [3, 1, 2]}))
    action(client, "spill", {"name": "orders", "namespace": "sales"})
    action(client, "pin", {"name": "trips"})
    stats = action(client, "stats", {})
    store, cache = stats["store"], stats["engine"]["cache"]
    assert store["flights"] == 4 and cache["hits"] == 1

    page = Page(browser)
    try:
        page.open(server.http, "ok")

        # The flights table: every flight, with what the server knows of it.
        assert page.row_ids() == sorted([trips["id"], orders["id"], first["id"], taken["id"]])
        # The COLUMNS as shown, and the exact bytes behind the bytes column.
        expected = {
            trips["id"]: (("trips", "default", "1,000", "memory", "pinned", "0", "upload"), trips["num_bytes"]),
            orders["id"]: (("orders", "sales", "40", "disk", "", "0", "upload"), orders["num_bytes"]),
            first["id"]: (("–", "–", "10", "memory", "", "1", "sql"), first["total_bytes"]),
            taken["id"]: (("–", "–", "3", "memory", "", "0", "take"), taken["total_bytes"]),
        }
        for flight_id, (cells, num_bytes) in expected.items():
            assert tuple(page.cell(flight_id, column) for column in COLUMNS) == cells, flight_id
            assert page.attr(f"#flight-{flight_id} td[data-col='bytes']", "data-value") == str(num_bytes)
            assert page.cell(flight_id, "age").endswith((" s", " min"))

        # The numbers the stats action reported.
        assert page.text("#stat-flights") == f"{store['flights']:,}"
        assert page.text("#stat-flights-in-memory") == f"{store['flights_in_memory']:,}"
        assert page.text("#stat-flights-spilled") == f"{store['flights_spilled']:,}" == "1"
        assert page.text("#stat-flights-pinned") == f"{store['flights_pinned']:,}" == "1"
        assert page.text("#stat-spills") == f"{store['spills']:,}"
        assert page.text("#memory-gauge .gauge-bytes").startswith(
            f"{store['resident_bytes']:,} of {store['memory_limit']:,} bytes")
        assert store["memory_limit"] == 2 << 30
        assert page.text("#disk-gauge .gauge-bytes") == f"{store['spilled_bytes']:,} bytes"
        assert page.text("#disk-gauge .gauge-text").endswith("(no limit)")
        hit_rate = 100 * cache["hits"] / (cache["hits"] + cache["misses"])
        assert page.text("#hit-rate") == f"{hit_rate:.1f}%"
        assert page.text("#cache-counts").startswith(f"hits {cache['hits']:,} · misses {cache['misses']:,} · ")

        # Recent requests, newest first: the stats action was the last call.
        recent = page.page.locator("#recent tbody tr")
        methods = recent.evaluate_all("rs => rs.map(r => [r.cells[1].textContent, r.cells[2].textContent])")
        assert methods == [["DoAction", "OK"]] * 3 + [["GetFlightInfo", "OK"]] * 3 + [["DoPut", "OK"]] * 2
        assert recent.nth(0).locator("td").nth(3).inner_text().endswith(" ms")

        # Lineage: the SQL result links to its input, the input back to what was made from it.
        sql_card = f"#lineage-{first['id']}"
        parent = page.page.locator(f"{sql_card} a.parent")
        assert parent.count() == 1
        assert parent.inner_text() == f"#{trips['id']} default.trips"
        assert parent.get_attribute("href") == f"#lineage-{trips['id']}"
        assert page.text(f"{sql_card} .op").splitlines() == ["sql", query]
        assert page.text(f"{sql_card} .node.child") == f"#{first['id']}"
        used_by = page.page.locator(f"#lineage-{trips['id']} a.used")
        assert sorted(used_by.evaluate_all("as => as.map(a => a.getAttribute('href'))")) == sorted(
            [f"#lineage-{first['id']}", f"#lineage-{taken['id']}"])
        assert page.page.locator(f"#lineage-{trips['id']} a.parent").count() == 0
        parent.click()
        page.page.wait_for_url(f"{server.http}/#lineage-{trips['id']}", timeout=TIMEOUT_MS)
        page.wait_refresh()
        assert "selected" in page.attr(f"#lineage-{trips['id']}", "class").split()

        # It keeps refreshing: a new upload appears without reloading the page.
        later = upload(client, ["later"], table(7))
        page.page.wait_for_selector(f"#flight-{later['id']}", timeout=TIMEOUT_MS)
        assert page.cell(later["id"], "rows") == "7"

        screenshot(page, tmp_path / "dashboard.png")
        if os.environ.get("FLIGHTBAY_SCREENSHOT"):
            screenshot(page, Path(os.environ["FLIGHTBAY_SCREENSHOT"]))
        assert page.errors == []
    finally:
        page.close()
        client.close()


def token(*grants: str) -> str:
    args = [flightbay_bin(), "token", "--secret", SECRET, "--user", "viewer"]
    for g in grants:
        args += ["--grant", g]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def test_with_auth_the_dashboard_shows_nothing_without_a_token(start_server, browser, tmp_path: Path) -> None:
    s = start_server(jwt_secret=SECRET, memory_limit="1GiB", http=True)
    client = flight.connect(s.uri)
    admin_token = token("*:admin")
    admin = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {admin_token}".encode())])
    page = Page(browser)
    try:
        trips = upload(client, ["sales", "trips"], table(25), admin)
        secret = upload(client, ["beta", "secret_plans"], table(5), admin)

        # Without a token the API answers 401 and the page shows no flight, and does not even ask for them.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{s.http}/api/dashboard", timeout=10)
        assert refused.value.code == 401
        assert "trips" not in refused.value.read().decode()
        page.open(s.http, "token-required")
        assert page.page.locator("#content").is_hidden()
        assert page.page.locator("#flights tbody tr").count() == 0
        body = page.page.locator("body").inner_text()
        assert "trips" not in body and "secret_plans" not in body
        assert "requires a bearer token" in page.text("#status")
        assert not any("/api/dashboard" in url for url in page.requests), page.requests

        # A sales reader sees the sales upload only, and no server-wide counters.
        page.page.fill("#token", token("sales:read"))
        page.page.click("#use-token")
        page.wait_state("ok")
        assert page.row_ids() == [trips["id"]]
        assert page.cell(trips["id"], "name") == "trips"
        assert "secret_plans" not in page.page.locator("body").inner_text()
        assert page.text("#who") == "signed in as viewer (sales:read)"
        assert page.page.locator("#server").is_hidden() and page.page.locator("#server-hidden").is_visible()
        assert page.page.evaluate("sessionStorage.getItem('flightbay.token')") is not None

        # Forgetting the token takes every flight off the page again.
        page.page.click("#forget-token")
        page.wait_state("token-required")
        assert page.page.locator("#flights tbody tr").count() == 0
        assert page.page.evaluate("sessionStorage.getItem('flightbay.token')") is None

        # An admin sees both namespaces and the counters.
        page.page.fill("#token", admin_token)
        page.page.click("#use-token")
        page.wait_state("ok")
        assert page.row_ids() == sorted([trips["id"], secret["id"]])
        assert page.text("#stat-flights") == "2"
        screenshot(page, tmp_path / "dashboard-admin.png")
        assert page.errors == []

        # A token the server did not sign is refused (the browser reports the 401 itself) and clears the page.
        page.page.fill("#token", "not-a-token")
        page.page.click("#use-token")
        page.wait_state("token-refused")
        assert page.page.locator("#flights tbody tr").count() == 0
        assert "The token was refused" in page.text("#status")
        assert page.errors and all("401" in e for e in page.errors), page.errors
    finally:
        page.close()
        client.close()
        s.stop()
