"""The guard of ``tests/unit/conftest.py`` holds: a unit test cannot reach a server, even a local one."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tests.unit.conftest import SERVER_FIXTURES, NetworkForbidden


def test_a_tcp_connection_is_refused() -> None:
    with pytest.raises(NetworkForbidden):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_binding_a_port_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(NetworkForbidden):
        sock.bind(("127.0.0.1", 0))


def test_an_http_client_cannot_reach_loopback() -> None:
    with httpx.Client() as client, pytest.raises(httpx.ConnectError, match="no network"):
        client.get("http://127.0.0.1:9/")


async def test_the_event_loop_still_runs() -> None:
    # asyncio's self-pipe is a Unix socket pair: allowed.
    assert await asyncio.sleep(0, result=1) == 1


def test_no_unit_test_uses_a_server_fixture(request: pytest.FixtureRequest) -> None:
    unit = [i for i in request.session.items if "/tests/unit/" in str(i.path)]
    assert unit, "collected no unit tests"
    assert not [i.nodeid for i in unit if SERVER_FIXTURES & set(getattr(i, "fixturenames", ()))]
