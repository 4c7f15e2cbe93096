"""Tests of the Babou triggers: serialisation, every event status, poll cadence, one connection."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_babou import polling as polling_module
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouError,
    BabouInputError,
    BabouNotFoundError,
    BabouRateLimitError,
    BabouServerError,
)
from airflow_provider_babou.models import Asset
from airflow_provider_babou.polling import AssetTarget
from airflow_provider_babou.triggers import babou as triggers_module
from airflow_provider_babou.triggers.babou import (
    BabouAssetTrigger,
    BabouExportTrigger,
    BabouPollTrigger,
    BabouPromptTrigger,
)
from tests.keys import ALICE, EXPIRED
from tests.triggers.babou_objects import Babou, use_connection

FAST = {"poll_interval": 0.05, "poll_backoff": 1.0, "max_poll_interval": 0.05}


async def only_event(trigger: BabouPollTrigger) -> dict[str, Any]:
    """Drive ``trigger.run()`` to its end and return its single event's payload."""
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    payload: dict[str, Any] = events[0]
    assert payload["status"] in triggers_module.TRIGGER_EVENT_STATUSES
    assert {"status", "message", "state", "elapsed", "object"} <= payload.keys()
    return payload


def deadline(seconds: float = 20.0) -> float:
    return time.time() + seconds


# -- serialisation -------------------------------------------------------------------------


ALL_TRIGGERS = [
    BabouPromptTrigger(
        babou_conn_id="babou_prod", project_id="prj_1", chapter_id="cht_2", prompt_id="int_3", end_time=1e9
    ),
    BabouExportTrigger(babou_conn_id="babou_prod", project_id="prj_1", end_time=1e9, poll_interval=5),
    BabouAssetTrigger(
        babou_conn_id="babou_prod",
        asset_id="ast_4",
        end_time=1e9,
        poll_interval=1.0,
        poll_backoff=2.0,
        max_poll_interval=8.0,
        max_consecutive_failures=0,
    ),
]


@pytest.mark.parametrize("trigger", ALL_TRIGGERS, ids=lambda t: type(t).__name__)
def test_serialize_round_trip(trigger: BabouPollTrigger) -> None:
    classpath, kwargs = trigger.serialize()
    assert classpath == f"airflow_provider_babou.triggers.babou.{type(trigger).__name__}"
    module_name, _, class_name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    # Primitives only, so the triggerer can store and rebuild them; never a key.
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert "sk-bab" not in json.dumps(kwargs)
    assert next(iter(kwargs)) == "babou_conn_id"


def test_serialize_survives_airflow_serde() -> None:
    from tests.compat import deserialize, serialize

    for trigger in ALL_TRIGGERS:
        _classpath, kwargs = trigger.serialize()
        assert deserialize(serialize(kwargs)) == kwargs


def test_bad_poll_policy_fails_at_construction() -> None:
    # New contract: the cadence is checked by PollPolicy with a BabouInputError (a ValueError)
    # naming the bad field, instead of one "poll policy needs ..." sentence.
    with pytest.raises(BabouInputError, match="poll interval must be > 0"):
        BabouAssetTrigger(babou_conn_id="c", asset_id="ast_1", end_time=1e9, poll_interval=0)
    assert issubclass(BabouInputError, ValueError)
    with pytest.raises(ValueError, match="max_consecutive_failures"):
        BabouAssetTrigger(babou_conn_id="c", asset_id="ast_1", end_time=1e9, max_consecutive_failures=-1)


# -- every event status against the emulator ---------------------------------------------------


async def test_prompt_then_export_success(babou: Babou) -> None:
    project_id, chapter_id, prompt_id = babou.prompt_ids()
    event = await only_event(
        BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, deadline(), **FAST)
    )
    assert event["status"] == "success", event
    assert event["state"] == "completed"
    assert (event["project_id"], event["chapter_id"], event["prompt_id"]) == (
        project_id,
        chapter_id,
        prompt_id,
    )
    # New contract: the object of a prompt event is the prompt (without its content), not the chapter.
    assert event["object"]["id"] == prompt_id
    assert event["object"]["status"] == "completed"
    assert "content" not in event["object"]
    assert prompt_id in event["message"]

    babou.export(project_id)
    event = await only_event(BabouExportTrigger("babou_default", project_id, deadline(), **FAST))
    assert event["status"] == "success", event
    assert event["object"]["download_url"]
    assert event["project_id"] == project_id


async def test_asset_success(babou: Babou) -> None:
    asset_id = babou.asset()
    event = await only_event(BabouAssetTrigger("babou_default", asset_id, deadline(), **FAST))
    assert event["status"] == "success", event
    assert event["state"] == "ready"
    assert event["object"]["id"] == asset_id
    assert event["asset_id"] == asset_id


async def test_prompt_failed_carries_babous_reason(babou: Babou) -> None:
    project_id, chapter_id, prompt_id = babou.prompt_ids("Break it [[emulator:fail]]")
    event = await only_event(
        BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, deadline(), **FAST)
    )
    assert event["status"] == "failed", event
    assert event["state"] == "failed"
    # New contract: the object is the prompt itself (it used to be the chapter with every prompt).
    assert event["object"]["id"] == prompt_id
    result = event["object"]["result"]
    assert result
    assert result in event["message"]


async def test_export_failed(babou: Babou, emulator: EmulatorControl) -> None:
    project_id, chapter_id, prompt_id = babou.prompt_ids()
    await only_event(
        BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, deadline(), **FAST)
    )
    emulator.fail_next(ALICE, "export", message="render exploded")
    babou.export(project_id)
    event = await only_event(BabouExportTrigger("babou_default", project_id, deadline(), **FAST))
    assert event["status"] == "failed", event
    assert "render exploded" in event["message"]


async def test_asset_failed(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.fail_next(ALICE, "asset", message="unreadable pixels")
    asset_id = babou.asset()
    event = await only_event(BabouAssetTrigger("babou_default", asset_id, deadline(), **FAST))
    assert event["status"] == "failed", event
    assert event["state"] == "error"


async def test_timeout_names_what_was_pending(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.configure(prompt_seconds=30)
    project_id, chapter_id, prompt_id = babou.prompt_ids()
    started = time.monotonic()
    event = await only_event(
        BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, time.time() + 0.4, **FAST)
    )
    assert time.monotonic() - started < 3
    assert event["status"] == "timeout", event
    assert event["state"] == "processing"
    for text in (project_id, chapter_id, prompt_id, "processing"):
        assert text in event["message"]


async def test_deadline_already_passed_still_polls_once(babou: Babou) -> None:
    asset_id = babou.asset()
    event = await only_event(BabouAssetTrigger("babou_default", asset_id, time.time() - 5, **FAST))
    assert event["status"] == "timeout"
    assert event["object"]["id"] == asset_id


async def test_not_found_is_an_error_at_once(babou: Babou, emulator: EmulatorControl) -> None:
    event = await only_event(BabouAssetTrigger("babou_default", "ast_nope", deadline(), **FAST))
    assert event["status"] == "error", event
    assert event["error_type"] == BabouNotFoundError.__name__
    assert "ast_nope" in event["message"]
    assert emulator.stats(ALICE)["key"]["requests_by_route"]  # it did ask


async def test_bad_key_is_an_error_without_the_key(
    babou: Babou, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, emulator.api_url, EXPIRED)
    event = await only_event(BabouExportTrigger("babou_default", "prj_x", deadline(), **FAST))
    assert event["status"] == "error", event
    assert event["error_type"] == BabouAuthError.__name__
    assert EXPIRED not in json.dumps(event)


async def wait_for_asset_through_500s(
    babou: Babou, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch, count: int
) -> dict[str, Any]:
    """Wait for a new asset (2 failures tolerated, no hook retries) while its GETs fail ``count`` times."""
    asset_id = babou.asset()
    use_connection(monkeypatch, emulator.api_url, max_retries=0)
    emulator.inject_fault("500", method="GET", path="/assets/", count=count)
    return await only_event(
        BabouAssetTrigger("babou_default", asset_id, deadline(), max_consecutive_failures=2, **FAST)
    )


async def test_too_many_transient_errors_in_a_row(
    babou: Babou, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = await wait_for_asset_through_500s(babou, emulator, monkeypatch, count=100)
    assert event["status"] == "error", event
    assert event["error_type"] == BabouServerError.__name__
    assert event["message"].startswith(
        f"Stopped waiting for asset {event['asset_id']} after 3 failed polls in a row: "
    )
    assert "500" in event["message"]


async def test_a_few_transient_errors_are_tolerated(
    babou: Babou, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = await wait_for_asset_through_500s(babou, emulator, monkeypatch, count=2)
    assert event["status"] == "success", event


async def test_one_connection_for_a_whole_wait(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.configure(prompt_seconds=0.8)
    project_id, chapter_id, prompt_id = babou.prompt_ids()
    before = emulator.stats(ALICE)["key"]
    event = await only_event(
        BabouPromptTrigger("babou_default", project_id, chapter_id, prompt_id, deadline(), **FAST)
    )
    after = emulator.stats(ALICE)["key"]
    assert event["status"] == "success"
    assert after["requests"] - before["requests"] >= 5
    assert after["connections"] - before["connections"] == 1


# -- poll cadence, retry-after and cleanup, on a fake clock ------------------------------------


class FakeClock:
    """Stands in for ``time`` and ``asyncio`` in the trigger module: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeHook:
    """Answers ``aobserve`` from a script: ``Asset`` states or errors to raise."""

    def __init__(self, script: list[Any], then: str = "processing", busy: FakeClock | None = None) -> None:
        self.script = list(script)
        self.then = then
        self.busy = busy  # a key with no spare requests: the gate holds each poll until it is due
        self.at: list[float] = []  # when each GET went out
        self.calls = 0
        self.timeouts: list[float] = []
        self.limits: list[float | None] = []
        self.dues: list[float] = []
        self.closed = False
        self.polled = asyncio.Event()

    async def aconfig(self) -> Any:
        return SimpleNamespace(timeout=30.0)

    async def aobserve(
        self, target: AssetTarget, *, due: float, timeout: float, limit: float | None = None
    ) -> Asset:
        self.calls += 1
        if self.busy is not None and due > self.busy.now:
            self.busy.now = due
        if self.busy is not None:
            self.at.append(self.busy.now)
        self.dues.append(due)
        self.timeouts.append(timeout)
        self.limits.append(limit)
        self.polled.set()
        step = self.script.pop(0) if self.script else self.then
        if isinstance(step, BaseException):
            raise step
        return Asset(id=target.asset_id, state=step)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(triggers_module, "time", fake)
    monkeypatch.setattr(triggers_module, "asyncio", fake)
    monkeypatch.setattr(polling_module, "time", fake)  # WaitClock: deadline and elapsed time
    return fake


def fake_trigger(
    monkeypatch: pytest.MonkeyPatch, hook: FakeHook, end_time: float, **kwargs: Any
) -> BabouAssetTrigger:
    trigger = BabouAssetTrigger("babou_default", "ast_1", end_time, **kwargs)
    monkeypatch.setattr(trigger, "_make_hook", lambda: hook)
    return trigger


async def test_on_a_busy_key_polls_back_off_to_the_cap_and_stop_at_the_deadline(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook([], busy=clock)
    trigger = fake_trigger(
        monkeypatch, hook, clock.now + 20, poll_interval=1, poll_backoff=2, max_poll_interval=5
    )
    event = await only_event(trigger)
    assert event["status"] == "timeout"
    # The first poll waits one interval (the operator or sensor has just looked); then each poll
    # asks for a request one interval after the last, and a key with none to spare serves it when
    # due: the schedule backs off x2 to 5 s, and the last poll is cut to the deadline.
    assert hook.at == [1_000_000.0 + t for t in (1, 2, 4, 8, 13, 18, 20)]
    assert hook.dues == hook.at
    assert clock.sleeps[0] == 1
    assert set(clock.sleeps[1:]) == {1}
    assert hook.calls == 7  # the last poll right at the deadline
    assert hook.timeouts[0] == 19.5  # min(the connection timeout, what is left + 0.5)
    # The last poll asks 1 s before the deadline: the wait for a token and the GET in all end by it.
    assert hook.timeouts[-1] == 1.5
    # Waiting for a token of the key's budget is bounded by the deadline only.
    assert hook.limits[0] == 19.5
    assert hook.limits[-1] == 1.5
    assert hook.closed


async def test_with_spare_requests_a_wait_polls_every_interval_and_claims_its_schedule(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook([])  # every poll is served at once: the key has room
    trigger = fake_trigger(
        monkeypatch, hook, clock.now + 20, poll_interval=1, poll_backoff=2, max_poll_interval=5
    )
    assert (await only_event(trigger))["status"] == "timeout"
    assert clock.sleeps == [1] * 20  # every poll_interval, up to the deadline
    assert hook.calls == 20
    # Each poll is due by the user's schedule (x2 to 5 s, at least the wait's age): on a busy key
    # that is its place in the queue. Its GET may not run past the deadline (0.5 s floor).
    start = 1_000_000.0
    claims = [due - (start + i) for i, due in enumerate(hook.dues[1:], 1)]
    assert claims[:5] == [1, 2, 4, 5, 5]
    assert hook.timeouts[0] == 19.5
    assert hook.timeouts[-1] == 0.5


async def test_babous_window_sets_the_first_poll_and_the_pace_inside_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = clock.now
    hook = FakeHook(["processing"] * 5 + ["ready"])
    trigger = fake_trigger(monkeypatch, hook, start + 600, expected=[start + 30, start + 90])
    assert (await only_event(trigger))["status"] == "success"
    # No poll before Babou's window opens (30 s, the user's slowest pace), then every 2 s.
    assert clock.sleeps == [30, 2, 2, 2, 2, 2]
    assert hook.dues[1:] == [start + t for t in (32, 34, 36, 38, 40)]


async def test_retry_after_is_honoured_and_failures_reset(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: list[Any] = [
        BabouRateLimitError("slow down", retry_after=7, http_status=429),
        "processing",
        BabouServerError("oops", http_status=500),
        BabouServerError("oops", http_status=500),
        "ready",
    ]
    hook = FakeHook(script)
    trigger = fake_trigger(
        monkeypatch, hook, clock.now + 100, poll_interval=1, poll_backoff=1, max_poll_interval=1
    )
    trigger.max_consecutive_failures = 2
    event = await only_event(trigger)
    assert event["status"] == "success"
    assert clock.sleeps == [1, 7, 1, 1, 1]
    assert hook.closed


async def test_zero_tolerance_fails_on_the_first_transient_error(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook([BabouServerError("oops", http_status=503)])
    trigger = fake_trigger(monkeypatch, hook, clock.now + 100, max_consecutive_failures=0)
    event = await only_event(trigger)
    assert event["status"] == "error"
    assert event["error_type"] == "BabouServerError"
    assert hook.calls == 1


async def test_unexpected_exception_becomes_an_error_event(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook([RuntimeError("boom")])
    event = await only_event(fake_trigger(monkeypatch, hook, clock.now + 100))
    assert event["status"] == "error"
    assert "RuntimeError: boom" in event["message"]
    assert hook.closed


async def test_cancelled_wait_closes_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = FakeHook([])
    trigger = fake_trigger(monkeypatch, hook, time.time() + 60, poll_interval=30, max_poll_interval=30)

    async def consume() -> None:
        async for _ in trigger.run():
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.1)  # cancelled while sleeping before its first poll
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hook.closed
    await trigger.on_kill()  # nothing to cancel remotely; must not raise


def test_babou_error_is_the_base() -> None:
    assert issubclass(triggers_module.BabouEventError, BabouError)


# -- the event is held until the deferral has settled (Airflow's executor race) -----------------


@pytest.mark.parametrize(
    ("script", "status"),
    [(["ready"], "success"), (["error"], "failed"), ([BabouAuthError("bad key", http_status=401)], "error")],
)
async def test_an_early_outcome_is_held_until_not_before(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, script: list[Any], status: str
) -> None:
    hook = FakeHook(script)
    trigger = fake_trigger(monkeypatch, hook, clock.now + 100, poll_interval=1, not_before=clock.now + 10)
    event = await only_event(trigger)
    assert event["status"] == status
    # Known after the first poll (1 s), fired at not_before: the task resumes 10 s after deferring.
    assert clock.sleeps == [1, 9]
    assert clock.now == trigger.not_before
    assert hook.calls == 1
    assert event["elapsed"] == 1.0  # when Babou said so, not when the hold ended


async def test_the_hold_never_runs_past_the_deadline(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook(["ready"])
    trigger = fake_trigger(monkeypatch, hook, clock.now + 4, poll_interval=1, not_before=clock.now + 10)
    assert (await only_event(trigger))["status"] == "success"
    assert clock.now == trigger.end_time


async def test_an_outcome_after_not_before_is_not_held(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeHook(["processing", "processing", "ready"])
    trigger = fake_trigger(
        monkeypatch, hook, clock.now + 100, poll_interval=4, poll_backoff=1, not_before=clock.now + 10
    )
    assert (await only_event(trigger))["status"] == "success"
    assert clock.sleeps == [4, 4, 4]


def test_not_before_is_serialised_and_old_kwargs_still_load() -> None:
    trigger = BabouExportTrigger("babou_prod", "prj_1", end_time=1e9, not_before=5e8)
    classpath, kwargs = trigger.serialize()
    assert kwargs["not_before"] == 5e8
    assert BabouExportTrigger(**kwargs).not_before == 5e8
    # A trigger serialised before the kwarg existed (or with no hold) loads, holds nothing, and
    # serialises exactly as it did then.
    old = {k: v for k, v in kwargs.items() if k != "not_before"}
    rebuilt = BabouExportTrigger(**old)
    assert rebuilt.not_before is None
    assert rebuilt.serialize() == (classpath, old)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "5", True])
def test_bad_not_before_fails_at_construction(value: Any) -> None:
    with pytest.raises(BabouInputError, match="not_before"):
        BabouExportTrigger("babou_prod", "prj_1", end_time=1e9, not_before=value)
