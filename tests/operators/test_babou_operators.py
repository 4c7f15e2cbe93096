"""Unit tests of the Babou operators against the emulator over real HTTP (no Airflow DB)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_provider_babou._compat import DEFERRED_TRY_XCOM_KEY, HAS_RESUMABLE_JOB_MIXIN, TaskDeferred
from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouServerError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.operators.babou import (
    BabouCreateChapterOperator,
    BabouCreateProjectOperator,
    BabouDownloadExportOperator,
    BabouGenerateVideoOperator,
    BabouStartExportOperator,
    BabouSubmitPromptOperator,
    BabouUploadAssetOperator,
)
from airflow_provider_babou.triggers.babou import (
    BabouAssetTrigger,
    BabouEventError,
    BabouExportTrigger,
    BabouPromptTrigger,
)
from tests.keys import ALICE
from tests.operators.conftest import FAST_POLL, Env, FakeTaskStateStore, FakeTI, make_context

FAST: dict[str, Any] = {"poll_interval": 0.05, "timeout": 30}
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82"
)


def drive(trigger: Any) -> dict[str, Any]:
    """Run a trigger to its one event, after a serde-style round trip of its kwargs."""
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith(type(trigger).__name__)
    rebuilt = type(trigger)(**kwargs)

    async def first() -> dict[str, Any]:
        async for event in rebuilt.run():
            return dict(event.payload)
        raise AssertionError("the trigger yielded no event")

    return asyncio.run(first())


def deferred(op: Any, context: Any) -> Any:
    """Run ``execute`` expecting a deferral without a framework timeout; return the ``TaskDeferred``."""
    with pytest.raises(TaskDeferred) as info:
        op.execute(context)
    assert info.value.timeout is None
    return info.value


# ----------------------------------------------------------------------------- create project


class TestCreateProject:
    def test_creates_and_pushes_id_and_link(self, env: Env) -> None:
        context = make_context()
        result = BabouCreateProjectOperator(task_id="p", name="Launch", description="Q3").execute(context)
        assert result["project_id"].startswith("prj_")
        assert result["reused"] is False
        assert result["name"] == "Launch"
        assert result["description"].startswith("Q3 [airflow:")
        assert result["description"].endswith("]")
        ti = context["ti"]
        assert ti.xcoms["project_id"] == result["project_id"]
        assert ti.xcoms["babou_project_url"] == f"https://app.babou.test/projects/{result['project_id']}"

    def test_reuse_run_retry_gets_same_project(self, env: Env) -> None:
        op = BabouCreateProjectOperator(task_id="p", name="Launch")
        first = op.execute(make_context(FakeTI(try_number=1)))
        again = op.execute(make_context(FakeTI(try_number=2)))
        assert again["project_id"] == first["project_id"]
        assert again["reused"] is True
        other_run = op.execute(make_context(FakeTI(run_id="scheduled__2")))
        other_map = op.execute(make_context(FakeTI(map_index=3)))
        assert len({first["project_id"], other_run["project_id"], other_map["project_id"]}) == 3
        assert env.counts()["projects_created"] == 3

    def test_reuse_name_and_never(self, env: Env) -> None:
        older = env.hook.create_project(name="Shared")
        time.sleep(1.1)  # created_at has one-second resolution; newest first must be unambiguous
        newer = env.hook.create_project(name="Shared")
        result = BabouCreateProjectOperator(task_id="p", name="Shared", reuse="name").execute(make_context())
        assert result["project_id"] == newer.id != older.id
        assert result["reused"]
        never = BabouCreateProjectOperator(task_id="p", name="Shared", reuse="never")
        ids = {never.execute(make_context())["project_id"] for _ in range(2)}
        assert len(ids) == 2
        assert env.counts()["projects_created"] == 4

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"name": ""},
            {"name": "x" * 31},
            {"name": "ok", "description": "d" * 1001},
            # Fits alone, but not with the 23-character run marker appended.
            {"name": "ok", "description": "d" * 990},
            {"name": "ok", "settings": "not a dict"},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            BabouCreateProjectOperator(task_id="p", **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_long_description_fits_without_marker(self, env: Env) -> None:
        result = BabouCreateProjectOperator(
            task_id="p", name="ok", description="d" * 1000, reuse="never"
        ).execute(make_context())
        assert result["description"] == "d" * 1000

    def test_unknown_reuse_rejected_at_parse_time(self) -> None:
        with pytest.raises(BabouInputError, match="reuse"):
            BabouCreateProjectOperator(task_id="p", name="x", reuse="sometimes")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- create chapter


class TestCreateChapter:
    def test_creates_then_reuses_by_name(self, env: Env) -> None:
        project = env.hook.create_project(name="p")
        op = BabouCreateChapterOperator(task_id="c", project_id=project.id, name="Intro", duration=30)
        context = make_context()
        first = op.execute(context)
        assert first["reused"] is False
        assert first["duration"] == 30
        assert context["ti"].xcoms == {
            "project_id": project.id,
            "chapter_id": first["chapter_id"],
            "babou_project_url": f"https://app.babou.test/projects/{project.id}",
        }
        second = op.execute(make_context(FakeTI(try_number=2)))
        assert second["chapter_id"] == first["chapter_id"]
        assert second["reused"] is True
        BabouCreateChapterOperator(task_id="c", project_id=project.id, name="Intro", reuse="never").execute(
            make_context()
        )
        assert env.counts()["chapters_created"] == 2

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"project_id": "prj/1", "name": "Intro"},
            {"project_id": "prj 1", "name": "Intro"},
            {"project_id": "", "name": "Intro"},
            {"project_id": "prj_1", "name": ""},
            {"project_id": "prj_1", "name": "Intro", "duration": 0},
            {"project_id": "prj_1", "name": "Intro", "duration": -5},
            {"project_id": "prj_1", "name": "Intro", "duration": 2.5},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            BabouCreateChapterOperator(task_id="c", **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0


# ----------------------------------------------------------------------------- submit prompt


def _waiting_submit(
    project_id: str, chapter_id: str, content: str, **kwargs: Any
) -> BabouSubmitPromptOperator:
    """A prompt submission that waits for completion (``deferrable`` and the poll arguments in ``kwargs``)."""
    return BabouSubmitPromptOperator(
        task_id="s",
        project_id=project_id,
        chapter_id=chapter_id,
        content=content,
        wait_for_completion=True,
        **kwargs,
    )


class TestSubmitPrompt:
    def test_submit_without_waiting_then_retry_attaches(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt(wait=True)
        op = BabouSubmitPromptOperator(
            task_id="s", project_id=project_id, chapter_id=chapter_id, content="Waves"
        )
        context = make_context()
        first = op.execute(context)
        assert first["status"] == "processing"
        assert first["reused"] is False
        assert context["ti"].xcoms["prompt_id"] == first["prompt_id"]
        assert context["ti"].xcoms["chapter_id"] == chapter_id
        second = op.execute(make_context(FakeTI(try_number=2)))
        assert second["prompt_id"] == first["prompt_id"]
        assert second["reused"] is True
        assert env.counts()["prompts_submitted"] == 2  # the setup prompt and this one, once

    def test_wait_blocking_and_retry_after_completion(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt(wait=True)
        op = _waiting_submit(project_id, chapter_id, "Waves", deferrable=False, **FAST)
        result = op.execute(make_context())
        assert result["status"] == "completed"
        assert result["result"]
        assert result["chapter"]["id"] == chapter_id
        again = op.execute(make_context(FakeTI(try_number=2)))
        assert again["prompt_id"] == result["prompt_id"]
        assert again["status"] == "completed"
        assert env.counts()["prompts_submitted"] == 2

    def test_failed_prompt_fails_then_retry_resubmits(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt(wait=True)
        op = _waiting_submit(project_id, chapter_id, "Break [[emulator:fail]]", deferrable=False, **FAST)
        with pytest.raises(BabouJobFailedError):
            op.execute(make_context())
        with pytest.raises(BabouJobFailedError):
            op.execute(make_context(FakeTI(try_number=2)))
        assert env.counts()["prompts_submitted"] == 3  # a failed prompt is submitted anew

    def test_conflict_suggests_force_and_force_cancels(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt("Slow one", wait=False)
        op = BabouSubmitPromptOperator(
            task_id="s", project_id=project_id, chapter_id=chapter_id, content="Other"
        )
        with pytest.raises(BabouConflictError, match="force=True"):
            op.execute(make_context())
        forced = BabouSubmitPromptOperator(
            task_id="s", project_id=project_id, chapter_id=chapter_id, content="Other", force=True
        ).execute(make_context())
        assert forced["status"] == "processing"
        assert forced["reused"] is False

    def test_deferrable_defers_with_ids_pushed_first(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt(wait=True)
        op = _waiting_submit(project_id, chapter_id, "Waves", deferrable=True, **FAST)
        context = make_context()
        before = time.time()
        deferral = deferred(op, context)
        trigger = deferral.trigger
        assert isinstance(trigger, BabouPromptTrigger)
        assert deferral.method_name == "execute_complete"
        assert deferral.kwargs == {"reused": False}
        assert trigger.prompt_id == context["ti"].xcoms["prompt_id"]
        assert trigger.chapter_id == chapter_id
        assert trigger.project_id == project_id
        assert before + 29 <= trigger.end_time <= time.time() + 31
        assert trigger.poll_interval == 0.05
        assert trigger.max_poll_interval == 30.0
        event = drive(trigger)
        assert event["status"] == "success"
        result = op.execute_complete(context, event, **deferral.kwargs)
        assert result["status"] == "completed"
        assert result["prompt_id"] == trigger.prompt_id

    def test_deferrable_failed_prompt_event_raises(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt(wait=True)
        op = _waiting_submit(project_id, chapter_id, "[[emulator:fail]]", deferrable=True, **FAST)
        deferral = deferred(op, make_context())
        event = drive(deferral.trigger)
        assert event["status"] == "failed"
        with pytest.raises(BabouJobFailedError):
            op.execute_complete(make_context(), event)

    def test_deferrable_timeout_names_what_is_pending(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt(wait=True)
        env.emulator.configure(prompt_seconds=30)
        op = _waiting_submit(project_id, chapter_id, "Slow", deferrable=True, poll_interval=0.05, timeout=0.3)
        deferral = deferred(op, make_context())
        event = drive(deferral.trigger)
        assert event["status"] == "timeout"
        with pytest.raises(BabouWaitTimeoutError) as info:
            op.execute_complete(make_context(), event)
        assert deferral.trigger.prompt_id in str(info.value)
        assert chapter_id in str(info.value)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"project_id": "p/1", "chapter_id": "c", "content": "x"},
            {"project_id": "p", "chapter_id": "c 1", "content": "x"},
            {"project_id": "p", "chapter_id": "c", "content": ""},
            {"project_id": "p", "chapter_id": "c", "content": "x" * 5001},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            BabouSubmitPromptOperator(task_id="s", **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0

    @pytest.mark.parametrize("kwargs", [{"poll_interval": 0}, {"timeout": -1}, {"poll_interval": "2"}])
    def test_bad_wait_arguments(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            BabouSubmitPromptOperator(task_id="s", project_id="p", chapter_id="c", content="x", **kwargs)


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
@pytest.mark.parametrize(
    "op",
    [
        BabouSubmitPromptOperator(task_id="s", project_id="p", chapter_id="c", content="x"),
        BabouStartExportOperator(task_id="e", project_id="p"),
        BabouUploadAssetOperator(task_id="a", source="/tmp/x.png"),
    ],
    ids=["prompt", "export", "asset"],
)
def test_execute_complete_rejects_every_bad_event(op: Any, event: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        op.execute_complete(make_context(), event)


def test_generate_resume_rejects_bad_events() -> None:
    op = BabouGenerateVideoOperator(
        task_id="g", project_name="p", chapters=[{"name": "a", "prompt": "b"}], destination="/tmp/x.mp4"
    )
    state = {"project_id": "prj_1", "chapters": [], "resubmitted": False, "deadline": time.time() + 5}
    with pytest.raises(BabouEventError):
        op.resume_prompts(make_context(), None, state=state)
    with pytest.raises(BabouEventError, match="unknown status"):
        op.resume_export(make_context(), {"status": "weird"}, state=state)
    with pytest.raises(BabouWaitTimeoutError, match="prj_1"):
        op.resume_export(make_context(), EVENT_CASES[4][0], state=state)


# ----------------------------------------------------------------------------- export


class TestStartExport:
    def test_blocking_export_completes_and_links_video(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        context = make_context()
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, deferrable=False, **FAST
        ).execute(context)
        assert result["status"] == "completed"
        assert result["project_id"] == project_id
        assert context["ti"].xcoms["babou_video_url"] == result["download_url"]
        assert context["ti"].xcoms["project_id"] == project_id

    def test_retry_without_state_store_reuses_completed_export(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        first = op.execute(make_context(FakeTI(try_number=1)))
        second = op.execute(make_context(FakeTI(try_number=2)))
        # Same file; the signed URL's expiry may have been re-issued in between.
        assert second["download_url"].split("?")[0] == first["download_url"].split("?")[0]
        assert env.counts()["exports_started"] == 1

    def test_retry_with_state_store_reuses_completed_export(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        store = FakeTaskStateStore()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        first = op.execute(make_context(FakeTI(try_number=1), task_state_store=store))
        if HAS_RESUMABLE_JOB_MIXIN:  # Airflow 3.3+: the started export is recorded in the store
            assert store["babou_export"]["project_id"] == project_id
        else:  # older Airflow has no store to use: the retry finds the export through Babou
            assert store == {}
        second = op.execute(make_context(FakeTI(try_number=2), task_state_store=store))
        assert second["status"] == "completed"
        assert second["download_url"].split("?")[0] == first["download_url"].split("?")[0]
        assert env.counts()["exports_started"] == 1

    def test_retry_with_state_store_reconnects_to_running_export(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        store = FakeTaskStateStore()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        deferred(op, make_context(FakeTI(try_number=1), task_state_store=store))
        deferral = deferred(op, make_context(FakeTI(try_number=2), task_state_store=store))
        assert isinstance(deferral.trigger, BabouExportTrigger)
        assert env.counts()["exports_started"] == 1

    def test_retry_with_state_store_after_failed_export_renders_again(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        env.emulator.fail_next(ALICE, "export", message="Renderer exploded")
        store = FakeTaskStateStore()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        with pytest.raises(BabouJobFailedError, match="Renderer exploded"):
            op.execute(make_context(FakeTI(try_number=1), task_state_store=store))
        result = op.execute(make_context(FakeTI(try_number=2), task_state_store=store))
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 2

    def test_retry_never_resumes_an_earlier_trys_event(self, env: Env) -> None:
        # Airflow 3.1 keeps next_method/next_kwargs across a retry: try 2 is "resumed" with
        # try 1's failed event. It must start over (and reuse the export), not re-raise it.
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        first_try = FakeTI(try_number=1)
        deferral = deferred(op, make_context(first_try))
        assert deferral.method_name == "execute_complete"
        assert first_try.xcoms[DEFERRED_TRY_XCOM_KEY] == 1
        gave_up = {
            "status": "error",
            "message": "Gave up after 6 failed polls",
            "state": "unknown",
            "elapsed": 1.0,
            "object": None,
            "project_id": project_id,
            "error_type": "BabouServerError",
        }
        with pytest.raises(BabouServerError, match="Gave up"):  # the same try: the event counts
            op.resume_execution("execute_complete", {"event": gave_up}, make_context(first_try))
        env.hook.wait_for_export(project_id, poll=FAST_POLL)
        retry = FakeTI(try_number=2, xcoms=dict(first_try.xcoms))  # XCom survives a deferral
        result = op.resume_execution("execute_complete", {"event": gave_up}, make_context(retry))
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 1

    def test_attaches_to_export_in_flight(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        env.hook.start_export(project_id)
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, deferrable=False, **FAST
        ).execute(make_context())
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 1

    def test_without_waiting_returns_queued_state(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        context = make_context()
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, wait_for_completion=False
        ).execute(context)
        assert result["status"] in ("queued", "processing")
        assert result["project_id"] == project_id
        assert context["ti"].xcoms["export_id"].startswith("exp_")

    def test_failed_export_fails_with_babou_error_text(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        env.emulator.fail_next(ALICE, "export", message="Renderer exploded")
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        with pytest.raises(BabouJobFailedError, match="Renderer exploded"):
            op.execute(make_context())
        # A retry after a failed export renders again rather than reusing the failure.
        assert op.execute(make_context(FakeTI(try_number=2)))["status"] == "completed"
        assert env.counts()["exports_started"] == 2

    def test_deferrable_round_trip(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        context = make_context()
        deferral = deferred(op, context)
        assert isinstance(deferral.trigger, BabouExportTrigger)
        assert deferral.method_name == "execute_complete"
        assert deferral.trigger.project_id == project_id
        event = drive(deferral.trigger)
        result = op.execute_complete(context, event)
        assert result["status"] == "completed"
        assert context["ti"].xcoms["babou_video_url"]

    def test_no_completed_chapters_is_babou_validation_error(self, env: Env) -> None:
        project = env.hook.create_project(name="empty")
        with pytest.raises(BabouError, match="no completed chapters"):
            BabouStartExportOperator(task_id="e", project_id=project.id).execute(make_context())

    def test_bad_project_id_before_any_request(self, env: Env) -> None:
        with pytest.raises(BabouInputError):
            BabouStartExportOperator(task_id="e", project_id="a/b").execute(make_context())
        assert env.counts()["requests"] == 0


# ----------------------------------------------------------------------------- assets


class TestUploadAsset:
    def test_upload_and_wait_blocking(self, env: Env, tmp_path: Path) -> None:
        source = tmp_path / "logo.png"
        source.write_bytes(PNG)
        context = make_context()
        result = BabouUploadAssetOperator(
            task_id="a", source=str(source), wait_for_ready=True, deferrable=False, **FAST
        ).execute(context)
        assert result["state"] == "ready"
        assert result["content_type"] == "image/png"
        assert context["ti"].xcoms["asset_id"] == result["asset_id"]

    def test_upload_without_waiting(self, env: Env, tmp_path: Path) -> None:
        source = tmp_path / "logo.png"
        source.write_bytes(PNG)
        result = BabouUploadAssetOperator(task_id="a", source=source).execute(make_context())
        assert result["asset_id"].startswith("ast_")
        assert env.counts()["assets_uploaded"] == 1

    def test_deferrable_round_trip(self, env: Env, tmp_path: Path) -> None:
        source = tmp_path / "logo.png"
        source.write_bytes(PNG)
        op = BabouUploadAssetOperator(
            task_id="a", source=str(source), wait_for_ready=True, deferrable=True, **FAST
        )
        context = make_context()
        deferral = deferred(op, context)
        assert isinstance(deferral.trigger, BabouAssetTrigger)
        assert deferral.trigger.asset_id == context["ti"].xcoms["asset_id"]
        result = op.execute_complete(context, drive(deferral.trigger))
        assert result["state"] == "ready"
        assert result["asset_id"] == deferral.trigger.asset_id

    def test_failed_asset_fails_the_task(self, env: Env, tmp_path: Path) -> None:
        source = tmp_path / "logo.png"
        source.write_bytes(PNG)
        env.emulator.fail_next(ALICE, "asset")
        op = BabouUploadAssetOperator(
            task_id="a", source=str(source), wait_for_ready=True, deferrable=False, **FAST
        )
        with pytest.raises(BabouJobFailedError):
            op.execute(make_context())

    def test_bad_sources_before_any_request(self, env: Env, tmp_path: Path) -> None:
        (tmp_path / "notes.unknownext").write_bytes(b"x")
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(tmp_path / "missing.png")).execute(
                make_context()
            )
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(tmp_path)).execute(make_context())
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(tmp_path / "notes.unknownext")).execute(
                make_context()
            )
        big = tmp_path / "big.mp4"
        with big.open("wb") as handle:
            handle.truncate(100 * 1024 * 1024 + 1)
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(big)).execute(make_context())
        assert env.counts()["requests"] == 0


# ----------------------------------------------------------------------------- download


class TestDownloadExport:
    def test_download_emits_asset_events(self, env: Env, tmp_path: Path) -> None:
        project_id, _ = env.project_with_prompt()
        env.hook.start_export(project_id)
        env.hook.wait_for_export(project_id, poll=FAST_POLL, timeout=20)
        video, other = Asset("babou://video"), Asset("s3://bucket/other")
        destination = tmp_path / "out" / "run-1" / "video.mp4"  # parents are created
        op = BabouDownloadExportOperator(
            task_id="d", project_id=project_id, destination=str(destination), outlets=[video, other]
        )
        context = make_context()
        result = op.execute(context)
        data = destination.read_bytes()
        assert result["size"] == len(data)
        assert result["sha256"] == hashlib.sha256(data).hexdigest()
        assert result["project_id"] == project_id
        assert result["download_url"]
        assert Path(result["path"]) == destination
        for asset in (video, other):
            assert context["outlet_events"][asset].extra == {
                "project_id": project_id,
                "size": result["size"],
                "sha256": result["sha256"],
                "path": result["path"],
            }
        assert context["ti"].xcoms["babou_video_url"] == result["download_url"]
        # An existing destination is refused before any request, unless overwrite=True.
        before = env.counts()["requests"]
        with pytest.raises(BabouInputError, match="overwrite"):
            op.execute(make_context())
        assert env.counts()["requests"] == before
        op.overwrite = True
        assert op.execute(make_context())["sha256"] == result["sha256"]

    def test_export_not_completed_is_clear(self, env: Env, tmp_path: Path) -> None:
        project_id, _ = env.project_with_prompt()
        env.hook.start_export(project_id)
        with pytest.raises(BabouError, match="not completed"):
            BabouDownloadExportOperator(
                task_id="d", project_id=project_id, destination=str(tmp_path / "v.mp4")
            ).execute(make_context())
        assert not (tmp_path / "v.mp4").exists()

    def test_bad_input_before_any_request(self, env: Env, tmp_path: Path) -> None:
        with pytest.raises(BabouInputError):
            BabouDownloadExportOperator(
                task_id="d", project_id="x y", destination=str(tmp_path / "v.mp4")
            ).execute(make_context())
        with pytest.raises(BabouInputError, match="directory"):
            BabouDownloadExportOperator(task_id="d", project_id="prj_1", destination=str(tmp_path)).execute(
                make_context()
            )
        assert env.counts()["requests"] == 0


# ----------------------------------------------------------------------------- generate


CHAPTERS = [
    {"name": "Intro", "prompt": "A logo reveal", "duration": 10},
    {"name": "Outro", "prompt": "A call to action"},
]


def _generate(tmp_path: Path, **kwargs: Any) -> BabouGenerateVideoOperator:
    params: dict[str, Any] = {
        "task_id": "g",
        "project_name": "Launch video",
        "chapters": CHAPTERS,
        "destination": str(tmp_path / "launch.mp4"),
        **FAST,
    }
    params.update(kwargs)
    return BabouGenerateVideoOperator(**params)


class TestGenerateVideo:
    def test_blocking_end_to_end_and_retry_creates_nothing_twice(self, env: Env, tmp_path: Path) -> None:
        op = _generate(tmp_path, deferrable=False)
        context = make_context()
        result = op.execute(context)
        assert Path(result["path"]).read_bytes()[4:8] == b"ftyp"
        assert [c["name"] for c in result["chapters"]] == ["Intro", "Outro"]
        assert result["export"]["status"] == "completed"
        assert context["ti"].xcoms["project_id"] == result["project_id"]
        assert set(context["ti"].xcoms["chapter_ids"]) == {"Intro", "Outro"}
        # The retry (e.g. the task failed after the download) reuses everything.
        op.overwrite = True
        again = op.execute(make_context(FakeTI(try_number=2)))
        assert again["project_id"] == result["project_id"]
        assert again["chapters"] == result["chapters"]
        counts = env.counts()
        assert counts["projects_created"] == 1
        assert counts["chapters_created"] == 2
        assert counts["prompts_submitted"] == 2
        assert counts["exports_started"] == 1

    @pytest.mark.parametrize("keep_kwargs", [True, False], ids=["triggerer", "dag-test-drops-kwargs"])
    def test_deferrable_walks_the_stages(self, env: Env, tmp_path: Path, keep_kwargs: bool) -> None:
        op = _generate(tmp_path, deferrable=True)
        context = make_context()
        deferral = deferred(op, context)
        assert isinstance(deferral.trigger, BabouPromptTrigger)
        assert deferral.method_name == "resume_prompts"
        assert deferral.kwargs["state"]["project_id"] == context["ti"].xcoms["project_id"]
        assert context["ti"].xcoms["prompt_ids"]["Intro"] == deferral.trigger.prompt_id
        stages = [deferral.method_name]
        for _ in range(6):
            event = drive(deferral.trigger)
            kwargs = deferral.kwargs if keep_kwargs else {}
            try:
                result = getattr(op, deferral.method_name)(context, event, **kwargs)
                break
            except TaskDeferred as nxt:
                deferral = nxt
                assert deferral.timeout is None
                stages.append(deferral.method_name)
        else:
            raise AssertionError(f"never finished, stages {stages}")
        assert stages[0] == "resume_prompts"
        assert stages[-1] == "resume_export"
        assert result["size"] > 0
        assert Path(result["path"]).exists()
        counts = env.counts()
        assert counts["projects_created"] == 1
        assert counts["chapters_created"] == 2
        assert counts["prompts_submitted"] == 2
        assert counts["exports_started"] == 1

    def test_failure_after_creation_names_the_ids(self, env: Env, tmp_path: Path) -> None:
        chapters = [{"name": "Good", "prompt": "fine"}, {"name": "Bad", "prompt": "[[emulator:fail]]"}]
        op = _generate(tmp_path, chapters=chapters, deferrable=False)
        with pytest.raises(BabouJobFailedError) as info:
            op.execute(make_context())
        text = str(info.value)
        project = next(env.hook.iter_projects())
        assert project.id in text
        assert "'Good'" in text
        assert "'Bad'" in text
        assert "a retry reuses them" in text

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"project_name": ""},
            {"chapters": []},
            {"chapters": "[{'name': 'a'}]"},
            {"chapters": [{"name": "a", "prompt": "b"}, {"name": "a", "prompt": "c"}]},
            {"chapters": [{"name": "a", "prompt": ""}]},
            {"chapters": [{"name": "a", "prompt": "b", "duration": 0}]},
            {"chapters": [{"name": "a", "prompt": "b", "voice": "x"}]},
            {"chapters": [{"name": "a" * 31, "prompt": "b"}]},
            {"description": "d" * 990},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, tmp_path: Path, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            _generate(tmp_path, **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_existing_destination_before_any_request(self, env: Env, tmp_path: Path) -> None:
        (tmp_path / "launch.mp4").write_bytes(b"old")
        with pytest.raises(BabouInputError, match="already exists"):
            _generate(tmp_path).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_timeout_says_what_is_pending(self, env: Env, tmp_path: Path) -> None:
        env.emulator.configure(prompt_seconds=30)
        op = _generate(tmp_path, deferrable=False, timeout=0.5)
        with pytest.raises(BabouWaitTimeoutError) as info:
            op.execute(make_context())
        assert "prompt" in str(info.value)
        assert "prj_" in str(info.value)


# ----------------------------------------------------------------------------- connection


def test_missing_connection_and_bad_key(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    op = BabouCreateProjectOperator(task_id="p", name="x", babou_conn_id="babou_nowhere")
    with pytest.raises(BabouInputError):
        op.execute(make_context())
    monkeypatch.setenv(
        "AIRFLOW_CONN_BABOU_BADKEY", '{"conn_type": "babou", "host": "http://x", "password": "nope"}'
    )
    with pytest.raises(BabouInputError, match="sk-bab-"):
        BabouCreateProjectOperator(task_id="p", name="x", babou_conn_id="babou_badkey").execute(
            make_context()
        )
    assert env.counts()["requests"] == 0


# ----------------------------------------------------------------------------- templating


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (BabouCreateProjectOperator, {"name", "description", "settings"}),
        (BabouCreateChapterOperator, {"project_id", "name"}),
        (BabouSubmitPromptOperator, {"project_id", "chapter_id", "content"}),
        (BabouStartExportOperator, {"project_id"}),
        (BabouUploadAssetOperator, {"source", "content_type"}),
        (BabouDownloadExportOperator, {"project_id", "destination"}),
        (BabouGenerateVideoOperator, {"project_name", "chapters", "destination", "description"}),
    ],
)
def test_template_fields(cls: Any, fields: set[str]) -> None:
    assert set(cls.template_fields) == fields


def test_templates_render_ids_and_text(env: Env) -> None:
    op = BabouSubmitPromptOperator(
        task_id="s",
        project_id="{{ params.p }}",
        chapter_id="{{ params.c }}",
        content="Hello {{ params.who }}",
    )
    op.render_template_fields({"params": {"p": "prj_1", "c": "chp_2", "who": "world"}})
    assert (op.project_id, op.chapter_id, op.content) == ("prj_1", "chp_2", "Hello world")


def test_deferrable_default_follows_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_babou.operators import babou

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert babou._default_deferrable() is True


def test_path_sources_survive_templating_and_upload(env: Env, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    source = tmp_path / "logo.png"
    source.write_bytes(PNG)
    for value in (source, ObjectStoragePath(f"file://{source}"), f"file://{source}"):
        op = BabouUploadAssetOperator(task_id="a", source=value)
        op.render_template_fields({})
        assert op.source == value
        assert op.execute(make_context())["asset_id"].startswith("ast_")
    assert env.counts()["assets_uploaded"] == 3


def test_download_to_object_storage_path(env: Env, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    project_id, _ = env.project_with_prompt()
    env.hook.start_export(project_id)
    env.hook.wait_for_export(project_id, poll=FAST_POLL, timeout=20)
    destination = ObjectStoragePath(f"file://{tmp_path}/video.mp4")
    result = BabouDownloadExportOperator(task_id="d", project_id=project_id, destination=destination).execute(
        make_context()
    )
    assert (tmp_path / "video.mp4").stat().st_size == result["size"]
