"""Bounds a single answer must not break, on the emulator: a huge ``Retry-After`` does not stall the
key beyond ``max_backoff`` (sync and triggerer paths), and a key echoed in a 200 body is scrubbed
where it enters (an export's ``error``, up to the exception and the trigger's event)."""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import BabouJobFailedError, BabouRateLimitError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import ExportTarget
from airflow_provider_babou.triggers.babou import BabouExportTrigger
from tests.helpers import FAST_POLL, completed_export
from tests.keys import ALICE

HOUR = 3600


async def test_a_huge_retry_after_pauses_the_triggerers_waits_at_most_max_backoff(
    emulator: EmulatorControl, make_conn: object
) -> None:
    conn_id = make_conn(max_backoff=1)  # type: ignore[operator]
    hook = BabouHook(conn_id)
    try:
        project_id = completed_export(hook)
        emulator.inject_fault("429", method="GET", path=f"/api/v1/projects/{project_id}/export", seconds=HOUR)
        target = ExportTarget(project_id)
        with pytest.raises(BabouRateLimitError) as info:
            await hook.aobserve(target, due=time.monotonic(), timeout=5)
        assert info.value.retry_after == 1  # cut to max_backoff, for the wait's next delay too
        started = time.monotonic()
        # A wait on the finished export polls again after the cut pause, not after an hour.
        export = await hook.aobserve(target, due=time.monotonic(), timeout=5, limit=5)
        assert export.status.value == "completed"
        assert time.monotonic() - started < 2
    finally:
        await hook.aclose()


def test_a_huge_retry_after_pauses_the_key_at_most_max_backoff(
    emulator: EmulatorControl, hook: BabouHook
) -> None:
    # The fixture's hook has max_backoff 0.05 s: the key may be paused that long, not an hour.
    emulator.inject_fault("429", method="GET", path="/api/v1/projects", seconds=HOUR)
    started = time.monotonic()
    hook.list_projects()
    hook.list_projects()
    assert time.monotonic() - started < 2


def _failed_with_the_key(hook: BabouHook, emulator: EmulatorControl) -> str:
    """A project whose second export failed with a message that echoes the API key."""
    project_id = completed_export(hook)
    emulator.fail_next(ALICE, "export", message=f"renderer refused key {ALICE} (Bearer {ALICE})")
    hook.start_export(project_id)
    return project_id


def test_a_key_echoed_in_an_export_error_is_scrubbed(emulator: EmulatorControl, hook: BabouHook) -> None:
    project_id = _failed_with_the_key(hook, emulator)
    with pytest.raises(BabouJobFailedError) as info:
        hook.wait_for_export(project_id, poll=FAST_POLL, timeout=10)
    assert "renderer refused key" in str(info.value)
    assert ALICE not in str(info.value)
    assert ALICE not in repr(info.value)
    export = hook.get_export(project_id)
    assert export.error
    assert "renderer refused key" in export.error
    assert ALICE not in export.model_dump_json()


async def test_a_key_echoed_in_an_export_error_is_scrubbed_from_the_trigger_event(
    emulator: EmulatorControl, hook: BabouHook, babou_conn: str
) -> None:
    project_id = _failed_with_the_key(hook, emulator)
    trigger = BabouExportTrigger(
        babou_conn, project_id, time.time() + 20, poll_interval=0.05, poll_backoff=1.0, max_poll_interval=0.05
    )
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    assert events[0]["status"] == "failed", events
    assert "renderer refused key" in events[0]["message"]
    assert ALICE not in json.dumps(events[0])
