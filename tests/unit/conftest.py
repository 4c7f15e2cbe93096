"""Unit tests start no server and open no network connection: both are enforced here.

Every test below ``tests/unit/`` runs with IP sockets refused (``connect`` and ``bind`` raise
:class:`NetworkForbidden`), and collection fails if one asks for a fixture that starts a server.
Unix sockets stay allowed: asyncio's event loop wakes itself through a socket pair.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.keys import ALICE

#: Fixtures that start (or need) a server: the emulator, moto, the Airflow metadata DB.
SERVER_FIXTURES = frozenset(
    {
        "emulator",
        "babou_emulator",
        "babou_emulator_server",
        "babou_conn",
        "make_conn",
        "s3_server",
        "s3_bucket",
    }
)
_IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class NetworkForbidden(OSError):
    """A unit test tried to reach the network."""


def _guard(original: Any) -> Any:
    def guarded(sock: socket.socket, address: Any, *args: Any) -> Any:
        if sock.family in _IP_FAMILIES:
            raise NetworkForbidden(f"unit tests open no network connection (tried {address!r})")
        return original(sock, address, *args)

    return guarded


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse ``connect``, ``connect_ex`` and ``bind`` on IP sockets for the test's duration."""
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _guard(getattr(socket.socket, name)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail collection when a unit test asks for a server fixture."""
    here = str(config.rootpath / "tests" / "unit")
    wrong = [
        f"{item.nodeid} uses {sorted(SERVER_FIXTURES & set(getattr(item, 'fixturenames', ())))}"
        for item in items
        if str(item.path).startswith(here) and SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    if wrong:
        raise pytest.UsageError("tests/unit/ starts no server; move these tests: " + "; ".join(wrong))


@pytest.fixture
def unit_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``babou_unit`` connection (env, no DB) to an address nothing listens on; its id.

    For hooks given a scripted transport: the connection must resolve, no request reaches it.
    """
    conn = {"conn_type": "babou", "host": "http://127.0.0.1:9/api/v1", "password": ALICE}
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_UNIT", json.dumps({**conn, "extra": {"rate_limit": 1000}}))
    return "babou_unit"
