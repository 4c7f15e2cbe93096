"""A trigger's deadline holds to within a second, however its requests fail (real read path)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.triggers.babou import BabouAssetTrigger
from tests.triggers.babou_objects import Babou

#: How far past ``end_time`` the timeout event may come.
SLACK = 1.0
#: Seconds from the start of a wait to its deadline.
DEADLINE = 1.0
#: Poll fast and tolerate every failure: only the deadline may end these waits.
HAMMER = {
    "poll_interval": 0.05,
    "poll_backoff": 1.0,
    "max_poll_interval": 0.05,
    "max_consecutive_failures": 10_000,
}


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets are process-wide: give each test its own, so no pause or slowdown leaks out."""
    monkeypatch.setattr(_budget, "_budgets", {})


async def timed_wait(trigger: BabouAssetTrigger) -> tuple[dict[str, Any], float]:
    """Run the trigger; return its only event and how long after ``end_time`` it came.

    A guard ends a wait that blew its deadline, so a failure is a fast assertion, not a hang.
    """

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    events = await asyncio.wait_for(run(), DEADLINE + 10)
    late = time.time() - trigger.end_time
    assert len(events) == 1, events
    return events[0], late


def with_transport(trigger: BabouAssetTrigger, transport: httpx.AsyncBaseTransport) -> BabouAssetTrigger:
    """Give the trigger's hook a scripted transport (``_make_hook`` is the seam for that)."""
    trigger._make_hook = lambda: BabouHook(  # type: ignore[method-assign]
        babou_conn_id=trigger.babou_conn_id, async_transport=transport
    )
    return trigger


def assert_timed_out_on_time(event: dict[str, Any], late: float) -> None:
    assert event["status"] == "timeout", event
    assert -0.05 <= late <= SLACK, f"the timeout event came {late:.2f} s after the deadline"
    assert "Timed out" in event["message"]


async def test_deadline_holds_when_babou_answers_500_to_everything(
    emulator: EmulatorControl, babou_conn: str
) -> None:
    emulator.inject_fault("500", method="GET", count=100_000)
    trigger = BabouAssetTrigger(babou_conn, "ast_1", time.time() + DEADLINE, **HAMMER)
    event, late = await timed_wait(trigger)
    assert_timed_out_on_time(event, late)
    assert event["state"] == "unknown"


async def test_deadline_holds_when_babou_holds_every_answer(
    emulator: EmulatorControl, babou_conn: str
) -> None:
    # The server takes 10 s to answer each GET; the request timeout is cut to the deadline.
    emulator.inject_fault("delay_after", method="GET", count=100_000, seconds=10)
    trigger = BabouAssetTrigger(babou_conn, "ast_1", time.time() + DEADLINE, **HAMMER)
    assert_timed_out_on_time(*await timed_wait(trigger))


async def test_deadline_holds_when_nothing_connects(make_conn: Callable[..., str]) -> None:
    conn_id = make_conn("babou_unit", host="http://127.0.0.1:9/api/v1")
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("connection refused", request=request)

    trigger = BabouAssetTrigger(conn_id, "ast_1", time.time() + DEADLINE, **HAMMER)
    assert_timed_out_on_time(*await timed_wait(with_transport(trigger, httpx.MockTransport(refuse))))
    assert attempts >= 5  # it kept polling until the deadline


async def test_deadline_holds_when_a_request_never_returns(make_conn: Callable[..., str]) -> None:
    # A transport that ignores httpx's timeouts: only the wait's own limit can end the request.
    conn_id = make_conn("babou_unit", host="http://127.0.0.1:9/api/v1")

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(60)
        return httpx.Response(200, json={"id": "ast_1", "state": "ready"})

    trigger = BabouAssetTrigger(conn_id, "ast_1", time.time() + DEADLINE, **HAMMER)
    assert_timed_out_on_time(*await timed_wait(with_transport(trigger, httpx.MockTransport(hang))))


@contextlib.asynccontextmanager
async def trickling_server(seconds_per_byte: float = 0.2) -> AsyncIterator[str]:
    """A loopback HTTP server that sends its answer's head at once, then one body byte at a time.

    httpx's timeouts are per read, so each byte restarts them: only a limit on the whole request
    ends it. Yields the base URL.
    """
    body = b'{"id": "ast_1", "state": "ready", "padding": "' + b"x" * 200 + b'"}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode())
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(seconds_per_byte)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.close()


async def test_deadline_holds_when_the_answer_trickles_in(make_conn: Callable[..., str]) -> None:
    async with trickling_server() as url:
        conn_id = make_conn("babou_unit", host=url)
        trigger = BabouAssetTrigger(conn_id, "ast_1", time.time() + DEADLINE, **HAMMER)
        assert_timed_out_on_time(*await timed_wait(trigger))


async def test_deadline_holds_when_the_budget_has_no_token(
    emulator: EmulatorControl, make_conn: Callable[..., str]
) -> None:
    emulator.configure(asset_seconds=30)
    babou = Babou(emulator.api_url)
    asset_id = babou.asset()
    babou.close()
    conn_id = make_conn(rate_limit=0.01)  # one token now, the next in 100 s
    before = emulator.stats()["total"]["requests"]
    trigger = BabouAssetTrigger(conn_id, asset_id, time.time() + DEADLINE, **HAMMER)
    event, late = await timed_wait(trigger)
    assert_timed_out_on_time(event, late)
    assert event["state"] == "processing"  # the one poll the budget allowed
    assert emulator.stats()["total"]["requests"] - before == 1
