"""The wait step of the triggers: one GET per poll, a short event, against the emulator."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import BabouServerError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import WaitTarget
from airflow_provider_babou.triggers.babou import (
    BabouAssetTrigger,
    BabouPollTrigger,
    BabouPromptTrigger,
    raise_for_event,
)
from tests.helpers import route_count
from tests.triggers.babou_objects import Babou

FAST = {"poll_interval": 0.05, "poll_backoff": 1.0, "max_poll_interval": 0.05}
ASSET_ROUTE = "GET /api/v1/assets/{asset_id}"


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets are process-wide: give each test its own, so no pause or slowdown leaks out."""
    monkeypatch.setattr(_budget, "_budgets", {})


@pytest.fixture
def babou(emulator: EmulatorControl, babou_conn: str) -> Iterator[Babou]:
    client = Babou(emulator.api_url)
    yield client
    client.close()


class CountingHook(BabouHook):
    """The real hook, counting the trigger's polls (its calls of ``aobserve``)."""

    polls = 0

    async def aobserve(
        self, target: WaitTarget, *, due: float, timeout: float, limit: float | None = None
    ) -> Any:
        self.polls += 1
        return await super().aobserve(target, due=due, timeout=timeout, limit=limit)


def counted(trigger: BabouPollTrigger) -> CountingHook:
    hook = CountingHook(babou_conn_id=trigger.babou_conn_id)
    trigger._make_hook = lambda: hook  # type: ignore[method-assign]
    return hook


async def only_event(trigger: BabouPollTrigger) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    payload: dict[str, Any] = events[0]
    return payload


# -- the trigger loop is the retry -----------------------------------------------------------------


@pytest.mark.parametrize("failures", [3, 6])
async def test_one_get_per_poll_through_500s(babou: Babou, emulator: EmulatorControl, failures: int) -> None:
    # The connection allows the sync path's retries (by time, no count cap); a trigger's poll
    # must not use them: each failed poll is one GET, and the loop polls again.
    asset_id = babou.asset()
    emulator.inject_fault("500", method="GET", path="/assets/", count=failures)
    trigger = BabouAssetTrigger(
        "babou_default", asset_id, time.time() + 20, max_consecutive_failures=5, **FAST
    )
    hook = counted(trigger)
    event = await only_event(trigger)
    gets = route_count(emulator, ASSET_ROUTE)
    assert gets == hook.polls
    if failures <= 5:
        assert event["status"] == "success", event
        assert hook.polls > failures
    else:  # the sixth failure in a row is one too many: six polls, six GETs
        assert event["status"] == "error", event
        assert event["error_type"] == BabouServerError.__name__
        assert hook.polls == 6


async def test_a_429_is_one_get_and_the_next_poll_waits_for_retry_after(
    babou: Babou, emulator: EmulatorControl
) -> None:
    asset_id = babou.asset()
    emulator.inject_fault("429", method="GET", path="/assets/", count=1)
    trigger = BabouAssetTrigger("babou_default", asset_id, time.time() + 20, **FAST)
    hook = counted(trigger)
    started = time.monotonic()
    event = await only_event(trigger)
    assert event["status"] == "success", event
    assert time.monotonic() - started >= 0.95  # Retry-After: 1, not the 0.05 s poll interval
    assert route_count(emulator, ASSET_ROUTE) == hook.polls


# -- the event stays short ---------------------------------------------------------------------------


PROMPT_TEXT = "A lighthouse keeper paints the storm in ultramarine, slowly"


async def test_prompt_event_carries_the_prompt_without_its_text(
    babou: Babou, emulator: EmulatorControl, caplog: pytest.LogCaptureFixture
) -> None:
    project_id, chapter_id, prompt_id = babou.prompt_ids(PROMPT_TEXT)
    trigger = BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, time.time() + 20, **FAST)
    with caplog.at_level(logging.DEBUG):
        event = await only_event(trigger)
        returned = raise_for_event(event)
    assert event["status"] == "success", event
    prompt = event["object"]
    assert prompt["id"] == prompt_id
    assert prompt["status"] == "completed"
    assert "content" not in prompt
    assert returned == prompt
    text = json.dumps(event)
    assert PROMPT_TEXT not in text
    assert "ultramarine" not in text
    assert len(text) < 1000
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert prompt_id in logged
    assert "ultramarine" not in logged


async def test_failed_prompt_event_has_no_prompt_text(babou: Babou) -> None:
    text = PROMPT_TEXT + " [[emulator:fail]]"
    project_id, chapter_id, prompt_id = babou.prompt_ids(text)
    trigger = BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, time.time() + 20, **FAST)
    event = await only_event(trigger)
    assert event["status"] == "failed", event
    assert event["object"]["result"]  # Babou's reason is kept ...
    assert "content" not in event["object"]
    assert "ultramarine" not in json.dumps(event)  # ... the user's text is not
