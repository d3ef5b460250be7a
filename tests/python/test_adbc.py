"""Flight SQL through the stock ADBC driver (the Go driver in the ``adbc-driver-flightsql`` wheel), pandas and
polars, against the real binary: queries, parameters, catalog metadata, ingest in every mode, TLS and auth, and the
same SQL through ADBC and plain Flight being one flight."""

from __future__ import annotations

import json
from pathlib import Path

import adbc_driver_flightsql.dbapi as dbapi
import adbc_driver_manager
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from collections.abc import Callable

from flightbay_server import Server
from test_security import SECRET, _token, _users_file, needs_openssl, pki  # noqa: F401  (pki is a fixture)

StartServer = Callable[..., Server]

TRIPS = pa.table({"city": ["Oslo", "Rome", "Oslo", "Lima"], "fare": [12.5, 30.0, 7.25, 18.0], "n": [1, 2, 3, 4]})


def _upload(client: flight.FlightClient, path: list[str], table: pa.Table,
            options: flight.FlightCallOptions | None = None) -> None:
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(*path), table.schema, options or flight.FlightCallOptions())
    writer.write_table(table)
    writer.close()


def _ids(client: flight.FlightClient, options: flight.FlightCallOptions | None = None) -> list[int]:
    infos = client.list_flights(options=options or flight.FlightCallOptions())
    return sorted(json.loads(i.app_metadata)["id"] for i in infos) if infos else []


@pytest.fixture
def trips(server: Server):
    with flight.connect(server.uri) as c:
        _upload(c, ["trips"], TRIPS)
        _upload(c, ["sales", "orders"], pa.table({"id": [1, 2, 3]}))
    return server


def test_execute_fetch_and_parameters(trips: Server) -> None:
    with dbapi.connect(trips.uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT city, sum(fare) AS total FROM trips GROUP BY city ORDER BY city")
        table = cur.fetch_arrow_table()
        assert table.to_pydict() == {"city": ["Lima", "Oslo", "Rome"], "total": [18.0, 19.75, 30.0]}
        cur.execute("SELECT n FROM trips WHERE city = ? AND fare > ? ORDER BY n", parameters=("Oslo", 10.0))
        assert cur.fetch_arrow_table().column("n").to_pylist() == [1]
        cur.execute("SELECT n, fare FROM trips ORDER BY n")
        df = cur.fetch_df()
        assert list(df["n"]) == [1, 2, 3, 4]
        assert df["fare"].tolist() == [12.5, 30.0, 7.25, 18.0]


def test_same_sql_through_adbc_and_plain_flight_is_one_flight(trips: Server) -> None:
    query = "SELECT city, count(*) AS trips FROM trips GROUP BY city ORDER BY city"
    with flight.connect(trips.uri) as plain:
        before = _ids(plain)
        with dbapi.connect(trips.uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(query)
            via_adbc = cur.fetch_arrow_table()
        after_adbc = _ids(plain)
        assert len(after_adbc) == len(before) + 1, "one query makes one flight"
        info = plain.get_flight_info(flight.FlightDescriptor.for_command(query))
        meta = json.loads(info.app_metadata)
        assert meta["cache"] == "hit"
        assert meta["id"] == after_adbc[-1]
        assert plain.do_get(info.endpoints[0].ticket).read_all().equals(via_adbc)
        assert _ids(plain) == after_adbc


def test_catalog_metadata(trips: Server) -> None:
    with dbapi.connect(trips.uri, autocommit=True) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        assert [c["catalog_name"] for c in objects] == ["flightbay"]
        schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
        assert sorted(schemas) == ["default", "sales"]
        (table,) = schemas["default"]["db_schema_tables"]
        assert (table["table_name"], table["table_type"]) == ("trips", "TABLE")
        assert [c["column_name"] for c in table["table_columns"]] == ["city", "fare", "n"]
        assert conn.adbc_get_table_types() == ["TABLE"]
        assert conn.adbc_get_table_schema("orders", db_schema_filter="sales") == pa.schema([("id", pa.int64())])
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "flightbay"
        assert info["vendor_arrow_version"]


def test_ingest_in_every_mode(server: Server) -> None:
    with dbapi.connect(server.uri, autocommit=True) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("fares", pa.table({"x": [1, 2]}), mode="create") == 2
        with pytest.raises(dbapi.Error):
            cur.adbc_ingest("fares", pa.table({"x": [3]}), mode="create")
        assert cur.adbc_ingest("fares", pa.table({"x": [3]}), mode="append") == 1
        with pytest.raises(dbapi.Error):
            cur.adbc_ingest("nowhere", pa.table({"x": [3]}), mode="append")
        cur.adbc_ingest("fares", pa.table({"x": [9]}), mode="replace")
        cur.adbc_ingest("grown", pa.table({"x": [1]}), mode="create_append")
        cur.adbc_ingest("grown", pa.table({"x": [2]}), mode="create_append")
        cur.adbc_ingest("orders", pa.table({"id": [5]}), mode="create", db_schema_name="lab")
        cur.execute("SELECT (SELECT sum(x) FROM fares) AS fares, (SELECT sum(x) FROM grown) AS grown, "
                    "(SELECT sum(id) FROM lab.orders) AS lab")
        assert cur.fetch_arrow_table().to_pylist() == [{"fares": 9, "grown": 3, "lab": 5}]
    with flight.connect(server.uri) as plain:
        names = {tuple(i.descriptor.path) for i in plain.list_flights()}
        assert {(b"default", b"fares"), (b"default", b"grown"), (b"lab", b"orders")} <= names


def test_pandas_and_polars_over_the_adbc_connection(trips: Server) -> None:
    with dbapi.connect(trips.uri, autocommit=True) as conn:
        df = pd.read_sql("SELECT city, fare FROM trips WHERE fare > 10 ORDER BY fare", conn)
        assert df.to_dict("list") == {"city": ["Oslo", "Lima", "Rome"], "fare": [12.5, 18.0, 30.0]}
        frame = pl.read_database("SELECT n FROM trips ORDER BY n DESC", connection=conn)
        assert frame["n"].to_list() == [4, 3, 2, 1]


def test_bad_sql_gets_a_clear_error_and_publishes_nothing(trips: Server) -> None:
    with flight.connect(trips.uri) as plain, dbapi.connect(trips.uri, autocommit=True) as conn:
        before = _ids(plain)
        with conn.cursor() as cur:
            for sql in ["SELECT nope FROM trips", "DELETE FROM trips", "CREATE TABLE t (a INT)"]:
                with pytest.raises(dbapi.Error) as err:
                    cur.execute(sql)
                assert "flightbay SQL is read-only" in str(err.value) or "nope" in str(err.value), sql
            with pytest.raises(dbapi.Error):
                cur.execute("SELECT n FROM trips WHERE n > ?", parameters=(1, 2))
        assert _ids(plain) == before


@needs_openssl
def test_adbc_over_tls(start_server: StartServer, pki: dict[str, Path]) -> None:  # noqa: F811
    s = start_server(tls_cert=pki["server.pem"], tls_key=pki["server.key"])
    uri = f"grpc+tls://localhost:{s.address.rsplit(':', 1)[1]}"
    root = pki["ca.pem"].read_text()
    kwargs = {"adbc.flight.sql.client_option.tls_root_certs": root}
    with dbapi.connect(uri, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.adbc_ingest("t", pa.table({"x": [1, 2, 3]}), mode="create")
        cur.execute("SELECT sum(x) AS s FROM t")
        assert cur.fetch_arrow_table().to_pylist() == [{"s": 6}]
    with pytest.raises(adbc_driver_manager.Error):
        with dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")


def test_adbc_with_password_and_token_sees_only_its_namespaces(start_server: StartServer, tmp_path: Path) -> None:
    s = start_server(jwt_secret=SECRET, users_file=_users_file(tmp_path))
    admin = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {_token('*:admin')}".encode())])
    with flight.connect(s.uri) as plain:
        _upload(plain, ["sales", "orders"], pa.table({"id": [1, 2]}), admin)
        _upload(plain, ["hr", "salaries"], pa.table({"pay": [100]}), admin)
    # alice (sales:write) through a Basic handshake, as ADBC does it.
    with dbapi.connect(s.uri, db_kwargs={"username": "alice", "password": "wonderland"},
                       autocommit=True) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        schemas = [sch["db_schema_name"] for sch in objects[0]["catalog_db_schemas"]]
        assert schemas == ["sales"]
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM sales.orders")
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 2}]
            with pytest.raises(dbapi.Error):
                cur.execute("SELECT * FROM hr.salaries")
    with pytest.raises(adbc_driver_manager.Error):
        with dbapi.connect(s.uri, db_kwargs={"username": "alice", "password": "wrong"}, autocommit=True):
            pass
    # A bearer token as a header, without a handshake.
    header = {"adbc.flight.sql.authorization_header": f"Bearer {_token('hr:read')}"}
    with dbapi.connect(s.uri, db_kwargs=header, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT pay FROM hr.salaries")
        assert cur.fetch_arrow_table().to_pylist() == [{"pay": 100}]
