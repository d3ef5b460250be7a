"""The connection to a flightbay server: :func:`connect` and :class:`Client`."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pyarrow import flight

from ._info import FlightRef, TableInfo, action_ref, path_descriptor, source_value, split_name
from ._progress import Progress
from ._upload import UploadSource, open_source
from .errors import FlightbayError, NotFound, translated
from .table import RemoteTable

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Client", "connect"]

PutMode = Literal["error", "replace", "append"]

# gRPC does not survive fork(): in a child forked from a process that had opened a connection, opening a new one
# hangs on its first call (checked with pyarrow 26, with and without GRPC_ENABLE_FORK_SUPPORT). So the process that
# opened connections is remembered, and a forked child refuses with a clear error instead of hanging. Processes
# started with "spawn" or "forkserver" import flightbay afresh and are not affected.
_GRPC_PID: int | None = None

# FlightClients inherited through fork(). Destroying them in the child would run gRPC teardown on state that does
# not belong to it, so they are kept alive instead.
_INHERITED: list[flight.FlightClient] = []

FORK_MESSAGE = (
    "this process was forked from one that had opened a flightbay (gRPC) connection, and gRPC connections cannot be "
    "opened or used after fork(). Start worker processes with the 'spawn' or 'forkserver' method, e.g. "
    "DataLoader(..., multiprocessing_context='spawn') or dataset.loader(num_workers=...); handles and clients "
    "pickle to such workers."
)


def _check_not_forked() -> None:
    if _GRPC_PID is not None and _GRPC_PID != os.getpid():
        raise FlightbayError(FORK_MESSAGE)


@dataclass(frozen=True)
class ConnectionSpec:
    """Everything needed to open a connection, and nothing that cannot be pickled.

    It travels to DataLoader worker processes, which open their own connection from it.
    """

    uri: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    tls_root_certs: bytes | None = None
    timeout: float | None = None

    def open(self) -> flight.FlightClient:
        """A new pyarrow FlightClient for this server."""
        global _GRPC_PID
        _check_not_forked()
        kwargs: dict[str, Any] = {}
        if self.tls_root_certs is not None:
            kwargs["tls_root_certs"] = self.tls_root_certs
        with translated():
            client = flight.FlightClient(self.uri, **kwargs)
        _GRPC_PID = os.getpid()
        return client

    def options(self) -> flight.FlightCallOptions:
        """Fresh call options (pyarrow writes into them during some calls, so they are not shared)."""
        return flight.FlightCallOptions(timeout=self.timeout, headers=list(self.headers))


class Client:
    """A connection to a flightbay server. Create it with :func:`connect`.

    The client is thread-safe: one client may serve many threads. Pickled (as its URI, auth headers and TLS
    settings) it opens a new connection in the new process on first use, which is what DataLoader workers started
    with ``spawn`` or ``forkserver`` need. gRPC cannot be used after ``fork()``: a forked child raises
    :class:`~flightbay.FlightbayError` instead of hanging.

    Examples
    --------
    >>> import flightbay, pyarrow as pa
    >>> with flightbay.connect("grpc://127.0.0.1:8815") as client:          # doctest: +SKIP
    ...     trips = client.upload(pa.table({"fare": [5.0, 12.5]}), "trips")
    ...     client.sql("SELECT avg(fare) AS f FROM trips").to_pandas()
    """

    def __init__(self, spec: ConnectionSpec) -> None:
        self._spec = spec
        self._lock = threading.Lock()
        self._flight_client: flight.FlightClient | None = None
        self._pid = os.getpid()
        self._by_location: dict[str, flight.FlightClient] = {}

    # -- connection ----------------------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The server URI."""
        return self._spec.uri

    @property
    def spec(self) -> ConnectionSpec:
        """The picklable connection settings (URI, auth headers, TLS roots, timeout)."""
        return self._spec

    @property
    def flight_client(self) -> flight.FlightClient:
        """The underlying ``pyarrow.flight.FlightClient``, opened on first use in each process."""
        with self._lock:
            if self._pid != os.getpid():
                if self._flight_client is not None:
                    _INHERITED.append(self._flight_client)
                _INHERITED.extend(self._by_location.values())
                self._flight_client, self._by_location, self._pid = None, {}, os.getpid()
            if self._flight_client is None:
                self._flight_client = self._spec.open()
            return self._flight_client

    def _client_for(self, endpoint: flight.FlightEndpoint) -> flight.FlightClient:
        """The client that serves ``endpoint``: this connection unless the endpoint names another location."""
        main = self.flight_client
        for location in endpoint.locations:
            uri = location.uri.decode() if isinstance(location.uri, bytes) else str(location.uri)
            if uri.startswith("arrow-flight-reuse-connection:") or uri == self._spec.uri:
                return main
            with self._lock:
                if uri not in self._by_location:
                    self._by_location[uri] = ConnectionSpec(uri, self._spec.headers, self._spec.tls_root_certs).open()
                return self._by_location[uri]
        return main

    def _options(self) -> flight.FlightCallOptions:
        return self._spec.options()

    def close(self) -> None:
        """Close the connection. The next call through this client or its handles opens a new one."""
        with self._lock:
            clients = [c for c in [self._flight_client, *self._by_location.values()] if c is not None]
            self._flight_client, self._by_location = None, {}
            same_process = self._pid == os.getpid()
        for c in clients:
            if same_process:
                c.close()
            else:
                _INHERITED.append(c)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self._spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<flightbay.Client {self._spec.uri}>"

    # -- flights ---------------------------------------------------------------------------------------------

    def upload(
        self,
        data: UploadSource,
        name: str | None = None,
        *,
        mode: PutMode = "error",
        batch_size: int = 65_536,
        progress: bool | None = None,
    ) -> RemoteTable:
        """Upload data as a new flight.

        Parameters
        ----------
        data : pyarrow.Table, RecordBatch, RecordBatchReader, DataFrame, str or os.PathLike
            A pyarrow object; anything with ``__arrow_c_stream__`` (pandas and polars DataFrames, ...); or the
            path of a ``.parquet``, ``.csv``, ``.arrow``/``.feather``/``.ipc`` file, which is streamed batch by
            batch and never loaded whole.
        name : str, optional
            ``"trips"`` or ``"namespace.trips"``. The server stores every upload under a name; without one the
            client picks ``upload_<32 hex digits>``.
        mode : {"error", "replace", "append"}, default "error"
            When the name exists: refuse (:class:`~flightbay.AlreadyExists`), point it at the new flight, or
            make a new flight holding the old rows followed by these (same schema required).
        batch_size : int, default 65536
            Largest number of rows per message sent.
        progress : bool, optional
            Show a tqdm bar (bytes sent). By default only on a terminal or in a notebook, if tqdm is installed.

        Returns
        -------
        RemoteTable
            The new flight.

        Notes
        -----
        The server publishes an upload when its stream ends. pyarrow cannot cancel a DoPut stream, so when reading
        ``data`` fails midway the client ends the stream, then drops the partial flight and points the name back
        at the flight it named before; for that moment the partial flight is visible to other clients.
        """
        if mode not in ("error", "replace", "append"):
            raise ValueError(f"mode must be 'error', 'replace' or 'append', got {mode!r}")
        namespace, short = split_name(name) if name is not None else (None, f"upload_{uuid.uuid4().hex}")
        source = open_source(data, batch_size)
        previous = self._current_id(name) if name is not None and mode != "error" else None
        command = {"op": "put", "name": short, "mode": mode, **({"namespace": namespace} if namespace else {})}
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
        failure: BaseException | None = None  # raised by the source (or Ctrl-C), not by the server
        with translated():
            writer, reader = self.flight_client.do_put(descriptor, source.schema, options=self._options())
            with Progress(source.nbytes, f"upload {name or short}", progress) as bar:
                batches = iter(source.batches)
                while failure is None:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        break
                    except BaseException as e:  # noqa: BLE001 - re-raised below, once the upload is abandoned
                        failure = e
                        break
                    try:
                        writer.write_batch(batch)
                    except pa.ArrowException:
                        raise  # the server or the connection ended the stream: nothing was published
                    except BaseException as e:  # noqa: BLE001 - re-raised below, once the upload is abandoned
                        failure = e
                    bar.update(batch.nbytes)
            if failure is None:
                writer.done_writing()
                result = reader.read()
                writer.close()
        if failure is not None:
            self._abandon_upload(writer, reader, namespace, short, previous)
            raise failure
        if result is None:
            raise FlightbayError("the server acknowledged the upload without a result")
        return self.table(int(json.loads(result.to_pybytes())["id"]))

    def _current_id(self, name: str) -> int | None:
        try:
            return self.table(name).id
        except NotFound:
            return None

    def _abandon_upload(
        self,
        writer: flight.FlightStreamWriter,
        reader: flight.FlightMetadataReader,
        namespace: str | None,
        short: str,
        previous: int | None,
    ) -> None:
        """Undo an upload whose source failed: finish the stream, drop what got published, restore the name."""
        try:
            writer.done_writing()
            result = reader.read()
            writer.close()
            if result is None:
                return
            self.drop(int(json.loads(result.to_pybytes())["id"]))
            if previous is not None:
                body = {"id": previous, "name": short, **({"namespace": namespace} if namespace else {})}
                self.do_action("rename", body)
        except (pa.ArrowException, FlightbayError, ValueError, KeyError):
            # Best effort: the caller gets the source's error, which is the one that explains what happened.
            pass

    def table(self, ref: FlightRef) -> RemoteTable:
        """A handle on an existing flight, without fetching rows.

        Parameters
        ----------
        ref : int or str
            A flight id (``42``), a name (``"trips"``, ``"sales.trips"``) or ``"f42"``.

        Raises
        ------
        NotFound
            No such flight or name.
        """
        with translated():
            info = self.flight_client.get_flight_info(path_descriptor(ref), self._options())
        table_info, _ = TableInfo.from_flight_info(info)
        return RemoteTable(self, table_info)

    def __getitem__(self, ref: FlightRef) -> RemoteTable:
        """``client[ref]`` is :meth:`table`."""
        return self.table(ref)

    def __contains__(self, ref: object) -> bool:
        try:
            self.table(ref)  # type: ignore[arg-type]
        except (NotFound, TypeError):
            return False
        return True

    def sql(self, query: str, *, name: str | None = None) -> RemoteTable:
        """Run a SQL query on the server; the result is a new flight.

        Parameters
        ----------
        query : str
            DataFusion SQL. Flights are tables: ``trips`` (namespace ``default``), ``sales.trips``, or ``f42`` for
            flight 42.
        name : str, optional
            Name the result (``"daily"`` or ``"sales.daily"``).

        Returns
        -------
        RemoteTable
            The result. Repeating a query over the same flights returns the cached flight.
        """
        return self._derive({"op": "sql", "query": query}, name=name)

    def _derive(self, op: Mapping[str, Any], *, name: str | None = None) -> RemoteTable:
        """Ask the server for the flight ``op`` derives (computed, or found in its cache)."""
        command = dict(op)
        if name is not None:
            namespace, short = split_name(name)
            command["name"] = short
            if namespace:
                command["namespace"] = namespace
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
        with translated():
            info = self.flight_client.get_flight_info(descriptor, self._options())
        table_info, meta = TableInfo.from_flight_info(info)
        return RemoteTable(self, table_info, cache=meta.get("cache"))

    def _endpoints(self, ref: FlightRef, parts: int | None = None) -> list[flight.FlightEndpoint]:
        """The endpoints to fetch ``ref`` from: one for the whole flight, or ``parts`` row ranges."""
        if parts is None:
            descriptor = path_descriptor(ref)
        else:
            op = {"op": "partition", "source": source_value(ref), "parts": parts}
            descriptor = flight.FlightDescriptor.for_command(json.dumps(op))
        with translated():
            return list(self.flight_client.get_flight_info(descriptor, self._options()).endpoints)

    def list_tables(self, pattern: str | None = None) -> list[TableInfo]:
        """Describe every stored flight (no rows are fetched).

        Parameters
        ----------
        pattern : str, optional
            Shell-style glob over ids and names, e.g. ``"sales.*"`` or ``"trips*"``.

        Returns
        -------
        list of TableInfo
            In id order.
        """
        with translated():
            infos = list(self.flight_client.list_flights(pattern.encode() if pattern else None, self._options()))
        return [TableInfo.from_flight_info(i)[0] for i in infos]

    def drop(self, ref: FlightRef) -> int:
        """Drop a flight and every name pointing at it.

        Parameters
        ----------
        ref : int or str
            Flight id or name.

        Returns
        -------
        int
            The id of the dropped flight.
        """
        return int(self.do_action("drop", action_ref(ref))["dropped"])

    def do_action(self, action_type: str, body: Mapping[str, Any] | None = None, /, **fields: Any) -> Any:
        """Run a server action.

        Parameters
        ----------
        action_type : str
            ``"stats"``, ``"health"``, ``"lineage"``, ``"rename"``, ... (see :meth:`list_actions`).
        body : mapping, optional
            The JSON body; keyword arguments are added to it.

        Returns
        -------
        Any
            The decoded JSON result (a list when the server sent several results; bytes if not JSON).

        Examples
        --------
        >>> client.do_action("lineage", id=7)                # doctest: +SKIP
        >>> client.do_action("rename", {"id": 7, "name": "best"})  # doctest: +SKIP
        """
        payload = {**(body or {}), **fields}
        action = flight.Action(action_type, json.dumps(payload).encode())
        with translated():
            results = [r.body.to_pybytes() for r in self.flight_client.do_action(action, self._options())]
        decoded = [_decode(r) for r in results]
        if len(decoded) == 1:
            return decoded[0]
        return decoded or None

    def list_actions(self) -> dict[str, str]:
        """The server's actions: type → description (with the JSON body and result shapes)."""
        with translated():
            actions: Iterable[flight.ActionType] = self.flight_client.list_actions(self._options())
            return {a.type: a.description for a in actions}


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


def _read_certs(tls_root_certs: bytes | str | os.PathLike[str] | None) -> bytes | None:
    if tls_root_certs is None or isinstance(tls_root_certs, bytes):
        return tls_root_certs
    text = os.fspath(tls_root_certs)
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    with open(text, "rb") as f:
        return f.read()


def connect(
    uri: str = "grpc://127.0.0.1:8815",
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls_root_certs: bytes | str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> Client:
    """Connect to a flightbay server.

    Parameters
    ----------
    uri : str, default "grpc://127.0.0.1:8815"
        ``grpc://host:port`` (plaintext) or ``grpc+tls://host:port``. A bare ``host:port`` means ``grpc://``.
    token : str, optional
        A bearer token, sent with every call.
    username, password : str, optional
        Basic credentials, exchanged once for a bearer token through the Flight handshake.
    tls_root_certs : bytes, str or os.PathLike, optional
        PEM root certificates (or the path of a PEM file) to verify a TLS server with.
    timeout : float, optional
        Per-call timeout in seconds.

    Returns
    -------
    Client
        Use it as a context manager, or call :meth:`Client.close`.

    Raises
    ------
    Unauthenticated
        The server rejected the credentials.
    Unavailable
        The server could not be reached (only detected here when credentials are exchanged).
    """
    if token is not None and (username is not None or password is not None):
        raise ValueError("give either token or username/password, not both")
    if "://" not in uri:
        uri = f"grpc://{uri}"
    spec = ConnectionSpec(uri, (), _read_certs(tls_root_certs), timeout)
    headers: list[tuple[bytes, bytes]] = []
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    elif username is not None or password is not None:
        handshake = spec.open()
        try:
            with translated():
                key, value = handshake.authenticate_basic_token(username or "", password or "", spec.options())
        finally:
            handshake.close()
        if key:
            headers.append((bytes(key), bytes(value)))
    return Client(ConnectionSpec(uri, tuple(headers), spec.tls_root_certs, timeout))
