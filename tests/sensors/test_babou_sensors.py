"""Tests of the Babou sensors: poke outcomes, poke-mode execute, deferral and resumption."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue

from airflow_provider_babou._compat import AirflowSensorTimeout, TaskDeferred
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import (
    BabouError,
    BabouJobFailedError,
    BabouNotFoundError,
    BabouServerError,
)
from airflow_provider_babou.sensors.babou import BabouAssetSensor, BabouExportSensor, BabouPromptSensor
from airflow_provider_babou.triggers.babou import (
    BabouAssetTrigger,
    BabouEventError,
    BabouExportTrigger,
    BabouPromptTrigger,
)
from tests.helpers import route_count
from tests.keys import ALICE
from tests.triggers.babou_objects import Babou, use_connection

CONTEXT: Any = {}


def wait_until(predicate: Any, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.05)


def prompt_sensor(ids: tuple[str, str, str], **kwargs: Any) -> BabouPromptSensor:
    project_id, chapter_id, prompt_id = ids
    return BabouPromptSensor(
        task_id="wait_prompt", project_id=project_id, chapter_id=chapter_id, prompt_id=prompt_id, **kwargs
    )


def test_signatures_and_templates() -> None:
    sensor = BabouAssetSensor(task_id="s", asset_id="ast_1")
    assert sensor.babou_conn_id == "babou_default"
    assert sensor.poll_interval == 2.0
    assert sensor.poke_interval == 2.0
    assert sensor.deferrable is False
    assert BabouPromptSensor.template_fields == ("project_id", "chapter_id", "prompt_id")
    assert BabouExportSensor.template_fields == ("project_id",)
    assert BabouAssetSensor.template_fields == ("asset_id",)
    with pytest.raises(TypeError):
        BabouAssetSensor("s", "ast_1")  # type: ignore[misc]


def test_poke_running_then_done(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.configure(prompt_seconds=0.5)
    ids = babou.prompt_ids()
    sensor = prompt_sensor(ids)
    assert sensor.poke(CONTEXT) is False
    outcome: Any = None

    def done() -> bool:
        nonlocal outcome
        outcome = sensor.poke(CONTEXT)
        return bool(outcome)

    wait_until(done)
    assert isinstance(outcome, PokeReturnValue)
    assert outcome.xcom_value["id"] == ids[1]
    sensor._close_hook()


def test_poke_raises_on_babou_failure(babou: Babou) -> None:
    ids = babou.prompt_ids("Go wrong [[emulator:fail]]")
    sensor = prompt_sensor(ids)
    with pytest.raises(BabouJobFailedError, match=ids[2]):
        wait_until(lambda: sensor.poke(CONTEXT))
    sensor._close_hook()


def test_poke_raises_on_unknown_prompt(babou: Babou) -> None:
    project_id, chapter_id, _ = babou.prompt_ids()
    sensor = prompt_sensor((project_id, chapter_id, "int_unknown"))
    # New contract: the message says the prompt "is not on chapter ..." (no "check the ids" hint).
    with pytest.raises(BabouJobFailedError, match="int_unknown is not on chapter"):
        sensor.poke(CONTEXT)
    sensor._close_hook()


def test_poke_tolerates_a_few_transient_errors(
    babou: Babou, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New contract: a poke is one wait step, so its transient errors are retried in place, up to
    # max_consecutive_failures in a row; one more raises from that same poke. (The old sensor
    # returned False on the first poke and counted failures on the instance across pokes.)
    asset_id = babou.asset()
    use_connection(monkeypatch, emulator.api_url, max_retries=0)
    route = "GET /api/v1/assets/{asset_id}"
    emulator.inject_fault("500", method="GET", path="/assets/", count=10)
    sensor = BabouAssetSensor(task_id="s", asset_id=asset_id, max_consecutive_failures=1, poll_interval=0.05)
    with pytest.raises(BabouServerError):
        sensor.poke(CONTEXT)
    assert route_count(emulator, route) == 2  # the first try and the one tolerated retry
    sensor._close_hook()

    emulator.reset()  # drops the remaining scripted faults
    asset_id = babou.asset()
    emulator.inject_fault("500", method="GET", path="/assets/", count=1)
    sensor = BabouAssetSensor(task_id="s", asset_id=asset_id, max_consecutive_failures=1, poll_interval=0.05)
    assert sensor.poke(CONTEXT) is False  # one 500, retried in place: the asset is still processing
    assert route_count(emulator, route) == 2
    sensor._close_hook()


def test_poke_mode_execute_returns_the_object(babou: Babou) -> None:
    asset_id = babou.asset()
    sensor = BabouAssetSensor(task_id="s", asset_id=asset_id, poll_interval=0.1, timeout=10)
    result = sensor.execute(CONTEXT)
    assert result["id"] == asset_id
    assert result["state"] == "ready"
    assert "hook" not in sensor.__dict__  # closed and dropped


def test_poke_mode_execute_times_out(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.configure(asset_seconds=30)
    sensor = BabouAssetSensor(task_id="s", asset_id=babou.asset(), poll_interval=0.1, timeout=0.3)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(CONTEXT)


def test_poke_mode_execute_error(babou: Babou) -> None:
    sensor = BabouExportSensor(task_id="s", project_id="prj_nope", poll_interval=0.1, timeout=5)
    with pytest.raises(BabouNotFoundError):
        sensor.execute(CONTEXT)


def test_deferrable_defers_on_the_prompt_trigger(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.configure(prompt_seconds=30)
    ids = babou.prompt_ids()
    sensor = prompt_sensor(ids, deferrable=True, timeout=600, poll_interval=3, babou_conn_id="babou_default")
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(CONTEXT)
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout is None
    trigger = deferred.trigger
    assert isinstance(trigger, BabouPromptTrigger)
    _classpath, kwargs = trigger.serialize()
    assert (kwargs["project_id"], kwargs["chapter_id"], kwargs["prompt_id"]) == ids
    assert kwargs["babou_conn_id"] == "babou_default"
    assert kwargs["poll_interval"] == 3.0
    assert kwargs["end_time"] == pytest.approx(time.time() + 600, abs=5)
    assert ALICE not in repr(kwargs)
    assert "hook" not in sensor.__dict__


@pytest.mark.parametrize(
    ("sensor_factory", "trigger_class"),
    [
        (lambda: BabouExportSensor(task_id="s", project_id="{pid}", deferrable=True), BabouExportTrigger),
        (lambda: BabouAssetSensor(task_id="s", asset_id="{aid}", deferrable=True), BabouAssetTrigger),
    ],
)
def test_deferrable_export_and_asset_triggers(
    babou: Babou, emulator: EmulatorControl, sensor_factory: Any, trigger_class: type
) -> None:
    emulator.configure(asset_seconds=30, export_queued_seconds=30)
    project_id, chapter_id, prompt_id = babou.prompt_ids()
    wait_until(lambda: prompt_sensor((project_id, chapter_id, prompt_id)).poke(CONTEXT))
    babou.export(project_id)
    asset_id = babou.asset()
    sensor = sensor_factory()
    for field in type(sensor).template_fields:
        setattr(sensor, field, getattr(sensor, field).format(pid=project_id, aid=asset_id))
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(CONTEXT)
    assert type(info.value.trigger) is trigger_class


def test_deferrable_returns_at_once_when_already_done(babou: Babou) -> None:
    asset_id = babou.asset()
    probe = BabouAssetSensor(task_id="probe", asset_id=asset_id)
    wait_until(lambda: probe.poke(CONTEXT))
    probe._close_hook()
    sensor = BabouAssetSensor(task_id="s", asset_id=asset_id, deferrable=True)
    assert sensor.execute(CONTEXT)["state"] == "ready"


def test_deferrable_raises_at_once_when_already_failed(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.fail_next(ALICE, "asset", message="corrupt")
    asset_id = babou.asset()
    probe = BabouAssetSensor(task_id="probe", asset_id=asset_id)
    with pytest.raises(BabouJobFailedError):
        wait_until(lambda: probe.poke(CONTEXT))
    sensor = BabouAssetSensor(task_id="s", asset_id=asset_id, deferrable=True)
    with pytest.raises(BabouJobFailedError):
        sensor.execute(CONTEXT)


def event(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "message": f"export of project prj_1 {status}",
        "state": "processing",
        "elapsed": 3.0,
        "object": {"status": "completed", "download_url": "https://x/y.mp4"},
        "project_id": "prj_1",
        **extra,
    }


def test_execute_complete_for_every_status(babou: Babou, emulator: EmulatorControl) -> None:
    # New contract: on success execute_complete returns what a poke returns, read again from
    # Babou, not the event's object (for a prompt that object is now the prompt, not the chapter).
    project_id, chapter_id, prompt_id = babou.prompt_ids()
    wait_until(lambda: prompt_sensor((project_id, chapter_id, prompt_id)).poke(CONTEXT))
    babou.export(project_id)
    probe = BabouExportSensor(task_id="probe", project_id=project_id)
    wait_until(lambda: probe.poke(CONTEXT))
    sensor = BabouExportSensor(task_id="s", project_id=project_id, deferrable=True)
    result = sensor.execute_complete(CONTEXT, event("success", project_id=project_id))
    assert result["download_url"]
    assert result["download_url"] != "https://x/y.mp4"  # Babou's, not the event's copy
    assert result == probe.poke(CONTEXT).xcom_value  # type: ignore[union-attr]
    assert "hook" not in sensor.__dict__
    probe._close_hook()
    sensor = BabouExportSensor(task_id="s", project_id="prj_1", deferrable=True)
    with pytest.raises(BabouJobFailedError, match="prj_1 failed"):
        sensor.execute_complete(CONTEXT, event("failed"))
    with pytest.raises(AirflowSensorTimeout, match="prj_1 timeout"):
        sensor.execute_complete(CONTEXT, event("timeout"))
    with pytest.raises(BabouError, match="prj_1 error"):
        sensor.execute_complete(CONTEXT, event("error"))
    with pytest.raises(BabouNotFoundError):
        sensor.execute_complete(CONTEXT, event("error", error_type="BabouNotFoundError"))
    with pytest.raises(BabouEventError):
        sensor.execute_complete(CONTEXT, None)
    with pytest.raises(BabouEventError):
        sensor.execute_complete(CONTEXT, event("mystery"))


# -- the failure limit across reschedules, and the deferrable result ---------------------------


ASSET_ROUTE = "GET /api/v1/assets/{asset_id}"


def rescheduled_pokes(asset_id: str, pokes: int, max_failures: int) -> list[Any]:
    """Poke ``pokes`` times as reschedule mode does: a NEW sensor instance for every poke."""
    outcomes: list[Any] = []
    for _ in range(pokes):
        sensor = BabouAssetSensor(
            task_id="s",
            asset_id=asset_id,
            mode="reschedule",
            poll_interval=0.02,
            max_consecutive_failures=max_failures,
        )
        try:
            outcomes.append(sensor.poke(CONTEXT))
        except BabouError as err:
            outcomes.append(err)
            break
        finally:
            sensor._close_hook()
    return outcomes


def test_failure_limit_holds_across_reschedules(babou: Babou, emulator: EmulatorControl) -> None:
    # Babou keeps failing: the old sensor kept its failure count on the instance, so with a new
    # instance per poke (reschedule mode) it returned False forever. Now the first poke that sees
    # more than max_consecutive_failures transient errors in a row raises.
    emulator.configure(asset_seconds=30)
    asset_id = babou.asset()
    emulator.inject_fault("500", method="GET", path="/assets/", count=1000)
    outcomes = rescheduled_pokes(asset_id, pokes=5, max_failures=2)
    assert len(outcomes) == 1, outcomes
    assert isinstance(outcomes[0], BabouServerError)
    assert route_count(emulator, ASSET_ROUTE) == 3  # one try and two tolerated retries, in one poke


def test_fewer_failures_than_the_limit_pass_within_a_poke(babou: Babou, emulator: EmulatorControl) -> None:
    emulator.configure(asset_seconds=30)
    asset_id = babou.asset()
    # Exactly max_consecutive_failures errors in a row before each of two pokes: both get through.
    emulator.inject_fault("500", method="GET", path="/assets/", count=2)
    assert rescheduled_pokes(asset_id, pokes=1, max_failures=2) == [False]
    emulator.inject_fault("500", method="GET", path="/assets/", count=2)
    assert rescheduled_pokes(asset_id, pokes=1, max_failures=2) == [False]
    assert route_count(emulator, ASSET_ROUTE) == 6


def test_deferrable_prompt_sensor_returns_the_chapter_like_a_poke(
    babou: Babou, emulator: EmulatorControl
) -> None:
    emulator.configure(prompt_seconds=0.5)
    ids = babou.prompt_ids("A harbour at dawn, seen from the lighthouse")
    sensor = prompt_sensor(ids, deferrable=True, poll_interval=0.05, timeout=20)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(CONTEXT)
    trigger = info.value.trigger
    assert isinstance(trigger, BabouPromptTrigger)

    async def run_trigger() -> dict[str, Any]:
        events = [e.payload async for e in trigger.run()]
        assert len(events) == 1
        payload: dict[str, Any] = events[0]
        return payload

    event = asyncio.run(run_trigger())
    assert event["status"] == "success", event
    assert event["object"]["id"] == ids[2]  # the trigger's event carries the prompt ...

    resumed = prompt_sensor(ids, deferrable=True)  # the task resumes on a new instance
    result = resumed.execute_complete(CONTEXT, event)
    poked = prompt_sensor(ids).poke(CONTEXT)
    assert isinstance(poked, PokeReturnValue)
    assert result == poked.xcom_value  # ... but the task returns the chapter, as a poke does
    assert result["id"] == ids[1]
    assert next(p for p in result["prompts"] if p["id"] == ids[2])["status"] == "completed"
    assert "hook" not in resumed.__dict__
