"""What every waiting operator shares: its wait arguments, and how it resumes from a trigger event."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest

from airflow_provider_babou.exceptions import (
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.operators.babou import (
    BabouGenerateVideoOperator,
    BabouStartExportOperator,
    BabouSubmitPromptOperator,
    BabouUploadAssetOperator,
)
from airflow_provider_babou.operators.video import VideoProgress
from airflow_provider_babou.sensors.babou import BabouPromptSensor
from airflow_provider_babou.triggers.babou import DEFAULT_MIN_DEFERRAL, BabouEventError
from tests.operators.conftest import FAST, Env, deferred, drive, make_context, resume

TRIGGER_LOG = "airflow_provider_babou.triggers.babou"

WAITING_OPERATORS: dict[str, tuple[type, dict[str, Any]]] = {
    "prompt": (BabouSubmitPromptOperator, {"project_id": "p", "chapter_id": "c", "content": "x"}),
    "export": (BabouStartExportOperator, {"project_id": "p"}),
    "asset": (BabouUploadAssetOperator, {"source": "/tmp/x.png"}),
    "video": (
        BabouGenerateVideoOperator,
        {"project_name": "p", "chapters": [{"name": "a", "prompt": "b"}], "destination": "/tmp/x.mp4"},
    ),
}


def _waiting(kind: str, **kwargs: Any) -> Any:
    cls, required = WAITING_OPERATORS[kind]
    return cls(task_id=kind, **required, **kwargs)


# ----------------------------------------------------------------------------- wait arguments


@pytest.mark.parametrize("kind", sorted(WAITING_OPERATORS))
@pytest.mark.parametrize("name", ["poll_interval", "timeout"])
@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, 0, 0.0, -1, -0.5, "2", True, None], ids=repr
)
def test_bad_wait_arguments_rejected_at_construction(kind: str, name: str, value: Any) -> None:
    with pytest.raises(BabouInputError, match=name):
        _waiting(kind, **{name: value})


@pytest.mark.parametrize("kind", sorted(WAITING_OPERATORS))
def test_good_wait_arguments_are_kept_as_floats(kind: str) -> None:
    op = _waiting(kind, poll_interval=1, timeout=0.25)
    assert (op.poll_interval, op.timeout) == (1.0, 0.25)
    assert isinstance(op.poll_interval, float)


@pytest.mark.parametrize("kind", sorted(WAITING_OPERATORS))
@pytest.mark.parametrize("name", ["poll_before_defer", "min_deferral"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1, -0.5, "2", True, None], ids=repr)
def test_bad_deferral_arguments_rejected_at_construction(kind: str, name: str, value: Any) -> None:
    with pytest.raises(BabouInputError, match=name):
        _waiting(kind, **{name: value})
    with pytest.raises(BabouInputError, match=name):
        BabouPromptSensor(task_id="s", project_id="p", chapter_id="c", prompt_id="i", **{name: value})


@pytest.mark.parametrize("kind", sorted(WAITING_OPERATORS))
def test_deferral_arguments_default_and_accept_zero(kind: str) -> None:
    op = _waiting(kind)
    assert (op.poll_before_defer, op.min_deferral) == (0.0, DEFAULT_MIN_DEFERRAL)
    op = _waiting(kind, poll_before_defer=0, min_deferral=0)
    assert (op.poll_before_defer, op.min_deferral) == (0.0, 0.0)


# ----------------------------------------------------------------------------- executor race
# Airflow fails a resumed try when the trigger fires before the scheduler has taken the executor's
# report of the worker that deferred (apache/airflow#72716): short waits are polled in the task
# (poll_before_defer) and a trigger holds its event until min_deferral after the deferral.


def _prompt(project_id: str, chapter_id: str, **kwargs: Any) -> BabouSubmitPromptOperator:
    args = {**FAST, "deferrable": True, "wait_for_completion": True, **kwargs}
    return BabouSubmitPromptOperator(
        task_id="p", project_id=project_id, chapter_id=chapter_id, content="Dunes", **args
    )


def _chapter(env: Env) -> tuple[str, str]:
    project = env.hook.create_project(name="waits")
    return project.id, env.hook.create_chapter(project.id, name="one").id


def test_a_wait_done_within_poll_before_defer_never_defers(env: Env) -> None:
    project_id, chapter_id = _chapter(env)
    result = _prompt(project_id, chapter_id, poll_before_defer=10).execute(make_context())
    assert result["status"] == "completed"  # returned by execute: no TaskDeferred, no trigger


def test_a_longer_wait_defers_after_poll_before_defer_with_its_deadline(env: Env) -> None:
    env.emulator.configure(prompt_seconds=30)
    project_id, chapter_id = _chapter(env)
    started = time.time()
    deferral = deferred(_prompt(project_id, chapter_id, poll_before_defer=0.5), make_context())
    # Polled in the task for the grace (its last poll a quarter of it before its end), then deferred.
    assert 0.375 <= time.time() - started < 5
    assert deferral.trigger.end_time == pytest.approx(started + FAST["timeout"], abs=1)


def test_a_wait_shorter_than_poll_before_defer_times_out_in_the_task(env: Env) -> None:
    env.emulator.configure(prompt_seconds=30)
    project_id, chapter_id = _chapter(env)
    with pytest.raises(BabouWaitTimeoutError, match="still"):
        _prompt(project_id, chapter_id, poll_before_defer=10, timeout=0.5).execute(make_context())


def test_the_trigger_resumes_no_sooner_than_min_deferral(env: Env) -> None:
    project_id, chapter_id = _chapter(env)
    deferral = deferred(_prompt(project_id, chapter_id, min_deferral=1.5), make_context())
    deferred_at = time.time()
    assert deferral.trigger.not_before == pytest.approx(deferred_at + 1.5, abs=0.5)
    event = drive(deferral.trigger)  # the prompt is done within 0.3 s; the event waits
    assert time.time() >= deferral.trigger.not_before
    assert event["status"] == "success"
    # The default holds DEFAULT_MIN_DEFERRAL; 0 holds nothing (the trigger serialises as before).
    default = BabouSubmitPromptOperator(
        task_id="d",
        project_id=project_id,
        chapter_id=chapter_id,
        content="Dunes",
        deferrable=True,
        wait_for_completion=True,
    )
    assert deferred(default, make_context()).trigger.not_before == pytest.approx(
        time.time() + DEFAULT_MIN_DEFERRAL, abs=1
    )
    unheld = deferred(_prompt(project_id, chapter_id, min_deferral=0), make_context()).trigger
    assert unheld.not_before is None
    assert "not_before" not in unheld.serialize()[1]


def _submitted(env: Env) -> dict[str, str]:
    project = env.hook.create_project(name="sensed")
    chapter = env.hook.create_chapter(project.id, name="one")
    receipt = env.hook.submit_prompt(project.id, chapter.id, content="Dunes")
    return {"project_id": project.id, "chapter_id": chapter.id, "prompt_id": receipt.prompt_id}


def test_sensor_pokes_for_poll_before_defer_and_its_trigger_holds_min_deferral(env: Env) -> None:
    args: dict[str, Any] = {"task_id": "s", "deferrable": True, "poll_interval": 0.05}
    ids = _submitted(env)
    result = BabouPromptSensor(poll_before_defer=10, **args, **ids).execute(make_context())
    assert result["id"] == ids["chapter_id"]  # done while poking in the task: no deferral
    env.emulator.configure(prompt_seconds=30)
    ids = _submitted(env)
    started = time.time()
    deferral = deferred(
        BabouPromptSensor(poll_before_defer=0.5, min_deferral=3, **args, **ids), make_context()
    )
    assert 0.4 <= time.time() - started < 5  # poked in the task for (about) the grace, then deferred
    assert deferral.trigger.not_before == pytest.approx(time.time() + 3, abs=0.5)


# ----------------------------------------------------------------------------- events


EVENT_CASES: list[tuple[Any, type[Exception], str]] = [
    (None, BabouEventError, "without a trigger event"),
    ("not a dict", BabouEventError, "must be a dict"),
    ({"status": "weird"}, BabouEventError, "unknown status"),
    ({"status": "failed", "message": "prompt p ended 'failed': boom"}, BabouJobFailedError, "boom"),
    (
        {"status": "timeout", "message": "Timed out waiting for export of project prj_1: still 'processing'"},
        BabouWaitTimeoutError,
        "prj_1",
    ),
    ({"status": "error", "message": "Stopped: 404", "error_type": "BabouNotFoundError"}, BabouError, "404"),
]


@pytest.mark.parametrize(("event", "error", "match"), EVENT_CASES)
@pytest.mark.parametrize("kind", ["prompt", "export", "asset"])
def test_execute_complete_rejects_every_bad_event(kind: str, event: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _waiting(kind).execute_complete(make_context(), event)


def _progress() -> dict[str, Any]:
    return VideoProgress(project_id="prj_1", deadline=time.time() + 5).model_dump(mode="json")


@pytest.mark.parametrize(("event", "error", "match"), EVENT_CASES)
@pytest.mark.parametrize("method", ["resume_prompts", "resume_export"])
def test_generate_resume_rejects_every_bad_event(method: str, event: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        getattr(_waiting("video"), method)(make_context(), event, progress=_progress())
    assert "already in Babou" in str(info.value)  # the progress names the project that exists
    assert "prj_1" in str(info.value)


# ----------------------------------------------------------------------------- the resume log line


def _resume_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == TRIGGER_LOG and "wait ended" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        (case[0], case[0]["status"].upper())
        for case in EVENT_CASES
        if isinstance(case[0], dict) and "message" in case[0]
    ],
)
@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("prompt", "execute_complete"),
        ("export", "execute_complete"),
        ("asset", "execute_complete"),
        ("video", "resume_prompts"),
        ("video", "resume_export"),
    ],
)
def test_resume_logs_one_readable_line(
    caplog: pytest.LogCaptureFixture, kind: str, method: str, event: dict[str, Any], outcome: str
) -> None:
    caplog.set_level(logging.INFO, logger=TRIGGER_LOG)
    event = {**event, "state": "failed", "elapsed": 12.345, "project_id": "prj_1", "chapter_id": "cht_2"}
    kwargs = {"progress": _progress()} if kind == "video" else {}
    with pytest.raises(BabouError):
        getattr(_waiting(kind), method)(make_context(), event, **kwargs)
    [line] = _resume_lines(caplog)
    assert "\n" not in line
    assert outcome in line
    assert "state 'failed'" in line
    assert "12.3 s" in line
    assert "project_id=prj_1" in line
    assert "chapter_id=cht_2" in line
    assert event["message"] in line


def test_resume_after_success_logs_one_readable_line(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    project_id, chapter_id = env.project_with_prompt()
    prompt = BabouSubmitPromptOperator(
        task_id="s",
        project_id=project_id,
        chapter_id=chapter_id,
        content="Waves",
        wait_for_completion=True,
        deferrable=True,
        **FAST,
    )
    export = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
    caplog.set_level(logging.INFO, logger=TRIGGER_LOG)
    for op in (prompt, export):
        caplog.clear()
        context = make_context()
        deferral = deferred(op, context)
        event = drive(deferral.trigger)
        caplog.clear()  # the trigger's own records are not the resume's
        resume(op, context, deferral, event)
        [line] = _resume_lines(caplog)
        assert "\n" not in line
        assert "SUCCESS" in line
        assert "state 'completed'" in line
        assert f"{event['elapsed']:.1f} s" in line
        assert f"project_id={project_id}" in line
        assert event["message"] in line
        ids = {k: getattr(deferral.trigger, k) for k in type(deferral.trigger).id_fields()}
        assert all(f"{k}={v}" in line for k, v in ids.items()), ids
