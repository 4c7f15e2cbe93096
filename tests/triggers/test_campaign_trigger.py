"""``BabouCampaignTrigger`` against the emulator: one event per batch, a slow row holds the ready
ones back by at most ``batch_window``, and each outcome says what the task needs next."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.triggers.campaign import BabouCampaignTrigger
from tests.keys import ALICE
from tests.triggers.babou_objects import Babou

FAST = {"poll_interval": 0.05, "poll_backoff": 1.0, "max_poll_interval": 0.05}


async def only_event(waits: list[list[str]], batch_window: float) -> dict[str, Any]:
    end_time = time.time() + 60
    trigger = BabouCampaignTrigger("babou_default", waits, end_time, batch_window=batch_window, **FAST)
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1, events
    assert events[0]["status"] == "success", events
    return events[0]


async def test_a_slow_row_holds_the_ready_ones_back_by_at_most_the_batch_window(
    babou: Babou, emulator: EmulatorControl
) -> None:
    emulator.configure(prompt_seconds=0.2)
    ready = [babou.prompt_ids()[0] for _ in range(4)]
    emulator.configure(prompt_seconds=600)  # the slow row: far past the waits' 60 s deadline
    slow = babou.prompt_ids()[0]

    event = await only_event([["prompts", p] for p in [*ready, slow]], batch_window=1.0)

    assert event["pending"] == 1, event
    assert event["outcomes"] == {f"prompts:{p}": ["success", None, None] for p in ready}, event


async def test_every_ended_wait_is_in_the_event_with_its_download_url(
    babou: Babou, emulator: EmulatorControl
) -> None:
    emulator.configure(prompt_seconds=0, export_queued_seconds=0, export_processing_seconds=0.3)
    projects = [babou.prompt_ids()[0] for _ in range(3)]
    for project_id in projects:
        babou.export(project_id)

    event = await only_event([["export", p] for p in projects], batch_window=600)

    assert event["pending"] == 0, event
    assert sorted(event["outcomes"]) == sorted(f"export:{p}" for p in projects)
    for name, (status, message, download_url) in event["outcomes"].items():
        assert (status, message) == ("success", None)
        assert urlsplit(str(download_url)).path.endswith(f"/{name.removeprefix('export:')}.mp4"), download_url


async def test_a_failed_prompt_is_a_failed_outcome_naming_its_chapter(
    babou: Babou, emulator: EmulatorControl
) -> None:
    emulator.configure(prompt_seconds=0.1)
    done = babou.prompt_ids()[0]
    emulator.fail_next(ALICE, "prompt", message="Generation failed: too many llamas")
    failed = babou.prompt_ids()[0]

    event = await only_event([["prompts", done], ["prompts", failed]], batch_window=600)

    assert event["pending"] == 0, event
    assert event["outcomes"][f"prompts:{done}"] == ["success", None, None]
    status, message, _ = event["outcomes"][f"prompts:{failed}"]
    # The chapter list carries no reason; the task reads the failed chapter's prompt for Babou's.
    assert status == "failed", message
    assert "['intro']" in message
