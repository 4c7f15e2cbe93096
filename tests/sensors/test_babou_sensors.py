"""Tests of the Babou sensors: poke outcomes, poke-mode execute, deferral and resumption."""

from __future__ import annotations

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
    with pytest.raises(BabouJobFailedError, match="check the ids"):
        sensor.poke(CONTEXT)
    sensor._close_hook()


def test_poke_tolerates_a_few_transient_errors(
    babou: Babou, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset_id = babou.asset()
    use_connection(monkeypatch, emulator.api_url, max_retries=0)
    emulator.inject_fault("500", method="GET", path="/assets/", count=10)
    sensor = BabouAssetSensor(task_id="s", asset_id=asset_id, max_consecutive_failures=1)
    assert sensor.poke(CONTEXT) is False
    with pytest.raises(BabouServerError):
        sensor.poke(CONTEXT)
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


def test_execute_complete_for_every_status() -> None:
    sensor = BabouExportSensor(task_id="s", project_id="prj_1", deferrable=True)
    assert sensor.execute_complete(CONTEXT, event("success"))["download_url"] == "https://x/y.mp4"
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
