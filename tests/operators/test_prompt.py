"""BabouSubmitPromptOperator against the emulator: attach or submit, wait blocking or deferred."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouInputError,
    BabouJobFailedError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.operators.babou import BabouSubmitPromptOperator
from airflow_provider_babou.triggers.babou import BabouPromptTrigger
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
