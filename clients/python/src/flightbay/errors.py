"""Exceptions raised by the flightbay client.

Every error the server reports arrives as a pyarrow exception whose text embeds the gRPC status. The client
re-raises it as one of the classes below (the pyarrow exception stays available as ``__cause__``) and keeps the
server's own message in :attr:`FlightbayError.server_message`.

====================  ============================  ===========================================
server status         raised as                     also an instance of
====================  ============================  ===========================================
NOT_FOUND             :class:`NotFound`             ``KeyError``
INVALID_ARGUMENT      :class:`InvalidRequest`       ``ValueError``
ALREADY_EXISTS        :class:`AlreadyExists`
UNAUTHENTICATED       :class:`Unauthenticated`
PERMISSION_DENIED     :class:`PermissionDenied`
RESOURCE_EXHAUSTED    :class:`MemoryBudgetExceeded`
UNIMPLEMENTED         :class:`Unsupported`              ``NotImplementedError``
UNAVAILABLE           :class:`Unavailable`              ``ConnectionError``
anything else         :class:`FlightbayError`
====================  ============================  ===========================================
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pyarrow as pa
from pyarrow import flight

__all__ = [
    "AlreadyExists",
    "FlightbayError",
    "InvalidRequest",
    "MemoryBudgetExceeded",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
]


class FlightbayError(Exception):
    """Base class of every error raised by the flightbay client.

    Parameters
    ----------
    message : str
        The server's message (or the client's, for errors detected locally).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.server_message: str = message

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message; show it as the server wrote it.
        return self.server_message


class NotFound(FlightbayError, KeyError):
    """No flight, name, namespace or ticket matches the reference."""


class InvalidRequest(FlightbayError, ValueError):
    """The server rejected the arguments: bad SQL, unknown column, bad op, schema mismatch, ..."""


class AlreadyExists(FlightbayError):
    """The name is taken; upload with ``mode="replace"`` or ``mode="append"``."""


class Unauthenticated(FlightbayError):
    """No credentials, or wrong ones."""


class PermissionDenied(FlightbayError):
    """The credentials are valid but do not allow this request."""


class MemoryBudgetExceeded(FlightbayError):
    """The server's memory budget and its spill space are both full."""


class Unsupported(FlightbayError, NotImplementedError):
    """The server (or this client) does not offer the requested feature."""


class Unavailable(FlightbayError, ConnectionError):
    """The server cannot be reached."""


# pyarrow renders a gRPC status as "... Flight returned <code> error, with message: <message>. gRPC client debug
# context: ..." (or "gRPC returned ..." for codes pyarrow has no Flight class for).
_STATUS = re.compile(r"(?:Flight|gRPC) returned (?P<code>[a-z ]+?) error, with message: (?P<message>.*)", re.DOTALL)
_DEBUG_TAIL = re.compile(r"\. (?:gRPC client debug context|Client context|Detail):.*", re.DOTALL)

_BY_CODE: dict[str, type[FlightbayError]] = {
    "not found": NotFound,
    "invalid argument": InvalidRequest,
    "already exists": AlreadyExists,
    "unauthenticated": Unauthenticated,
    "unauthorized": PermissionDenied,
    "permission denied": PermissionDenied,
    "unimplemented": Unsupported,
    "unavailable": Unavailable,
}

# Checked in order: the Flight subclasses first, since some of them also derive from the generic Arrow errors.
_BY_TYPE: tuple[tuple[type[BaseException], type[FlightbayError]], ...] = (
    (flight.FlightUnauthenticatedError, Unauthenticated),
    (flight.FlightUnauthorizedError, PermissionDenied),
    (flight.FlightUnavailableError, Unavailable),
    (pa.ArrowKeyError, NotFound),
    (pa.ArrowNotImplementedError, Unsupported),
    (pa.ArrowInvalid, InvalidRequest),
)

MEMORY_PREFIX = "flightbay: "


def translate(error: pa.ArrowException) -> FlightbayError:
    """The flightbay exception for a pyarrow exception raised by a Flight call.

    Parameters
    ----------
    error : pyarrow.ArrowException
        What pyarrow raised.

    Returns
    -------
    FlightbayError
        An instance of the matching subclass, carrying the server's message.
    """
    text = str(error)
    match = _STATUS.search(text)
    if match is None:
        message = _DEBUG_TAIL.sub("", text).strip()
        cls: type[FlightbayError] = FlightbayError
        for pa_type, ours in _BY_TYPE:
            if isinstance(error, pa_type):
                cls = ours
                break
        return cls(message)
    code = match.group("code")
    message = _DEBUG_TAIL.sub("", match.group("message")).strip()
    if code == "resource exhausted":
        cls = MemoryBudgetExceeded if message.startswith(MEMORY_PREFIX) else FlightbayError
    else:
        cls = _BY_CODE.get(code, FlightbayError)
    return cls(message)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Re-raise pyarrow errors from the enclosed Flight calls as :class:`FlightbayError` subclasses."""
    try:
        yield
    except FlightbayError:
        raise
    except pa.ArrowException as e:
        raise translate(e) from e
