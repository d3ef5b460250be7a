"""Fixtures for the server tests; the server itself comes from ``flightbay_server.py``, shared with the client's suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    # Imported for real by pytest_plugins, after this module, so that pytest can rewrite its asserts.
    from flightbay_server import Server

pytest_plugins = ["flightbay_server"]


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """A fresh server with a 2 GiB budget."""
    return start_server(memory_limit="2GiB")
