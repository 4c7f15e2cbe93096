"""Many waits on one key through the real read path: one connection pool, and a 429 pauses them all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.hooks import _async
from airflow_provider_babou.triggers.babou import BabouExportTrigger
from tests.helpers import key_stats
from tests.triggers.babou_objects import Babou

WAITS = 30
#: Babou's limit on the key in these tests, requests/s (ours is 20/s).
RATE = 8


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets are process-wide: give each test its own, so no pause or slowdown leaks out."""
    monkeypatch.setattr(_budget, "_budgets", {})


@pytest.fixture
def exported_project(emulator: EmulatorControl, babou_conn: str) -> Iterator[str]:
    """A project whose export has just started (it completes about 0.7 s later); its id."""
    babou = Babou(emulator.api_url)
    try:
        project_id, chapter_id, _prompt_id = babou.prompt_ids()
        deadline = time.monotonic() + 10
        while babou.client.get(f"/projects/{project_id}/chapters/{chapter_id}").json()["status"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        emulator.configure(export_queued_seconds=0.2, export_processing_seconds=0.5)
        babou.export(project_id)
        yield project_id
    finally:
        babou.close()


async def wait_all(project_id: str, count: int = WAITS) -> list[dict[str, Any]]:
    """Run ``count`` export triggers in this loop at once; return their events."""

    async def one() -> dict[str, Any]:
        trigger = BabouExportTrigger(
            "babou_default",
            project_id,
            time.time() + 30,
            poll_interval=0.1,
            poll_backoff=1.0,
            max_poll_interval=0.1,
            max_consecutive_failures=1000,
        )
        events = [event.payload async for event in trigger.run()]
        assert len(events) == 1
        payload: dict[str, Any] = events[0]
        return payload

    return await asyncio.gather(*(one() for _ in range(count)))


class Exchange(NamedTuple):
    """One request of the shared client: when it was sent, when answered, status, Retry-After."""

    sent: float
    answered: float
    status: int
    retry_after: float | None


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Record every request the shared client sends (the real client, pool and connections)."""
    recorded: list[Exchange] = []
    get = _async.AiohttpClient.get

    async def recording_get(client: _async.AiohttpClient, url: str, **kwargs: Any) -> Any:
        sent = time.monotonic()
        response = await get(client, url, **kwargs)
        retry_after = response.headers.get("Retry-After")
        recorded.append(
            Exchange(
                sent, time.monotonic(), response.status_code, float(retry_after) if retry_after else None
            )
        )
        return response

    monkeypatch.setattr(_async.AiohttpClient, "get", recording_get)
    return recorded


def test_waits_on_a_limited_key_share_one_pool_and_pause_together(
    emulator: EmulatorControl,
    exported_project: str,
    make_conn: Callable[..., str],
    exchanges: list[Exchange],
) -> None:
    make_conn(rate_limit=20)  # our budget: 20 requests/s, 20 saved up
    emulator.configure(rate_limit=RATE, rate_burst=20)  # Babou allows fewer: 429s will come
    before = key_stats(emulator)
    started = time.monotonic()
    events = asyncio.run(wait_all(exported_project))
    took = time.monotonic() - started
    after = key_stats(emulator)

    assert [e["status"] for e in events] == ["success"] * WAITS, events
    requests = after["requests"] - before["requests"]
    throttled = after["responses"].get("429", 0) - before["responses"].get("429", 0)
    # One client for the 30 waits: its pool opens at most MAX_CONNECTIONS connections. (The
    # emulator counts distinct client (host, port) pairs, i.e. TCP connections.)
    assert after["connections"] - before["connections"] <= _async.MAX_CONNECTIONS
    # A 429 pauses every wait on the key until Retry-After: a handful of them, not one per wait
    # and round (each wait polls every 0.1 s, 300 polls/s wanted).
    assert 1 <= throttled <= 5, (throttled, requests, took)
    assert requests >= WAITS
    assert took < 15
    # After a 429 no wait sends anything until its Retry-After has passed (a request whose token
    # was handed out a moment before the 429 arrived may still start within a few ms).
    assert len(exchanges) == requests
    pauses = [(e.answered, e.answered + (e.retry_after or 1.0)) for e in exchanges if e.status == 429]
    assert len(pauses) == throttled
    early = [e for e in exchanges if any(start + 0.02 < e.sent < end for start, end in pauses)]
    assert early == [], (early, pauses)


async def test_waiting_for_the_keys_budget_is_not_a_failed_poll(
    exported_project: str, make_conn: Callable[..., str]
) -> None:
    """Ten waits on a key allowing 2 requests/s queue for up to 5 s, longer than the 1 s request
    timeout: each still succeeds with no transient failure tolerated (only the deadline bounds the
    queue), where a queue bounded by the request timeout failed them."""
    make_conn(timeout=1, rate_limit=2)
    await asyncio.sleep(1.0)  # the export completes

    async def one() -> dict[str, Any]:
        trigger = BabouExportTrigger(
            "babou_default", exported_project, time.time() + 30, poll_interval=0.1, max_consecutive_failures=0
        )
        events = [event.payload async for event in trigger.run()]
        return events[0]

    started = time.monotonic()
    events = await asyncio.gather(*(one() for _ in range(10)))
    assert [e["status"] for e in events] == ["success"] * 10, events
    assert time.monotonic() - started > 3  # they did queue: 10 requests at 2/s (burst 2)
