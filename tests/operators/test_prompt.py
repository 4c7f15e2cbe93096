"""BabouSubmitPromptOperator against the emulator: attach or submit, wait blocking or deferred."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouInputError,
    BabouJobFailedError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.operators.babou import BabouGenerateVideoOperator, BabouSubmitPromptOperator
from airflow_provider_babou.triggers.babou import BabouPromptTrigger
from tests.helpers import FAST_POLL
from tests.operators.conftest import FAST, Env, FakeTI, deferred, drive, make_context, resume


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
        assert set(context["ti"].xcoms) == {"prompt_id", "babou_project_url"}
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
        # The receipt's estimated_time, as UNIX times: the trigger polls densely inside it.
        assert trigger.expected is not None
        assert before <= trigger.expected[0] <= trigger.expected[1] <= time.time() + 3600
        event = drive(trigger)
        assert event["status"] == "success"
        # New contract: the event's object is the prompt itself, without the user's text.
        assert event["object"]["id"] == trigger.prompt_id
        assert event["object"]["status"] == "completed"
        assert "content" not in event["object"]
        result = resume(op, context, deferral, event)
        assert result["status"] == "completed"
        assert result["prompt_id"] == trigger.prompt_id
        assert result["result"]
        assert result["chapter"]["id"] == chapter_id  # the chapter is read again on resume
        assert result["reused"] is False

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


def _submit_and_wait(env: Env, project_id: str, chapter_id: str, content: str) -> str:
    receipt = env.hook.submit_prompt(project_id, chapter_id, content=content)
    env.hook.wait_for_prompt(project_id, chapter_id, receipt.prompt_id, poll=FAST_POLL, timeout=20)
    return receipt.prompt_id


class TestOnlyTheLatestPromptIsAttachedTo:
    """Issue 16 item 1: an export renders each chapter's latest prompt, so only that one is reused."""

    def test_an_older_prompt_with_this_content_is_submitted_again(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt("A", wait=True)
        _submit_and_wait(env, project_id, chapter_id, "B")  # the chapter now renders B
        op = _waiting_submit(project_id, chapter_id, "A", deferrable=False, **FAST)
        result = op.execute(make_context())
        assert result["reused"] is False
        assert result["status"] == "completed"
        latest = env.hook.get_chapter(project_id, chapter_id).prompts[-1]
        assert (latest.id, latest.content) == (result["prompt_id"], "A")
        assert env.counts()["prompts_submitted"] == 3
        again = op.execute(make_context(FakeTI(try_number=2)))  # now A is the latest: attached to
        assert (again["prompt_id"], again["reused"]) == (result["prompt_id"], True)
        assert env.counts()["prompts_submitted"] == 3

    def test_an_older_prompt_while_another_is_in_flight_is_a_conflict(self, env: Env) -> None:
        project_id, chapter_id = env.project_with_prompt("A", wait=True)
        env.emulator.configure(prompt_seconds=30)
        env.hook.submit_prompt(project_id, chapter_id, content="B")
        op = BabouSubmitPromptOperator(task_id="s", project_id=project_id, chapter_id=chapter_id, content="A")
        with pytest.raises(BabouConflictError, match="force=True"):
            op.execute(make_context())
        assert env.counts()["prompts_submitted"] == 2

    def test_a_lost_answer_recovers_only_the_latest_prompt(
        self, env: Env, make_conn: Any, babou_conn: str
    ) -> None:
        # Our POST takes effect but its answer is held past the timeout; meanwhile our prompt
        # completes and another one is submitted. Ours no longer renders: it is sent again.
        project_id, chapter_id = env.project_with_prompt("Intro", wait=True)
        make_conn(timeout=2)
        env.emulator.inject_fault("delay_after", method="POST", path=r"/prompt$", seconds=4)
        other = BabouHook(babou_conn)

        def submit_another_once_ours_completed() -> None:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                chapter = other.get_chapter(project_id, chapter_id)
                if (
                    chapter.prompts[-1].content == "A"
                    and chapter.prompt_status(chapter.prompts[-1].id).is_success
                ):
                    other.submit_prompt(project_id, chapter_id, content="B")
                    return
                time.sleep(0.05)

        env.emulator.configure(prompt_seconds=0.1)
        meddler = threading.Thread(target=submit_another_once_ours_completed)
        meddler.start()
        op = BabouSubmitPromptOperator(task_id="s", project_id=project_id, chapter_id=chapter_id, content="A")
        try:
            result = op.execute(make_context())
        finally:
            meddler.join()
            other.close()
        contents = [p.content for p in env.hook.get_chapter(project_id, chapter_id).prompts]
        assert contents == ["Intro", "A", "B", "A"]
        latest = env.hook.get_chapter(project_id, chapter_id).prompts[-1]
        assert result["prompt_id"] == latest.id
        assert result["reused"] is False

    def test_the_video_operator_submits_again_what_no_longer_renders(self, env: Env, tmp_path: Path) -> None:
        op = BabouGenerateVideoOperator(
            task_id="g",
            project_name="Launch video",
            chapters=[{"name": "Intro", "prompt": "A"}],
            destination=str(tmp_path / "launch.mp4"),
            deferrable=False,
            **FAST,
        )
        first = op.execute(make_context())
        project_id, chapter_id = first["project_id"], first["chapters"][0]["chapter_id"]
        _submit_and_wait(env, project_id, chapter_id, "B")  # someone edits the chapter meanwhile
        op.overwrite = True
        again = op.execute(make_context(FakeTI(try_number=2)))
        latest = env.hook.get_chapter(project_id, chapter_id).prompts[-1]
        assert latest.content == "A"
        assert again["chapters"][0]["prompt_id"] == latest.id != first["chapters"][0]["prompt_id"]
        assert env.counts()["exports_started"] == 2  # the video renders A again, not B
