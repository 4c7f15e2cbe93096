"""Tests of ``validate_event`` and ``raise_for_event``: the one event -> outcome mapping."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest

from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouError,
    BabouJobFailedError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.triggers.babou import (
    BabouEventError,
    describe_event,
    raise_for_event,
    validate_event,
)


def event(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "message": f"it was {status}",
        "state": "x",
        "elapsed": 1.0,
        "object": {"id": "ast_1"},
        "asset_id": "ast_1",
        **extra,
    }


@pytest.mark.parametrize("bad", [None, "success", ["success"], {}, {"status": "cancelled"}, {"status": None}])
def test_validate_event_rejects_missing_and_unknown(bad: Any) -> None:
    with pytest.raises(BabouEventError):
        validate_event(bad)
    with pytest.raises(BabouEventError):
        raise_for_event(bad)


def test_validate_event_messages_are_clear() -> None:
    with pytest.raises(BabouEventError, match="without a trigger event"):
        validate_event(None)
    with pytest.raises(BabouEventError, match="must be a dict, got str"):
        validate_event("success")
    with pytest.raises(BabouEventError, match="unknown status 'cancelled'"):
        validate_event({"status": "cancelled"})


@pytest.mark.parametrize("status", ["success", "failed", "timeout", "error"])
def test_validate_event_accepts_every_status(status: str) -> None:
    payload = event(status)
    assert validate_event(payload) is payload


def test_success_returns_the_object() -> None:
    assert raise_for_event(event("success")) == {"id": "ast_1"}
    assert raise_for_event(event("success", object=None)) == {}


def test_failed_raises_job_failed_with_the_message() -> None:
    with pytest.raises(BabouJobFailedError, match="it was failed"):
        raise_for_event(event("failed"))


def test_timeout_raises_the_chosen_class() -> None:
    with pytest.raises(BabouWaitTimeoutError, match="it was timeout"):
        raise_for_event(event("timeout"))

    class SensorTimeout(Exception):
        pass

    with pytest.raises(SensorTimeout, match="it was timeout"):
        raise_for_event(event("timeout"), timeout_error=SensorTimeout)


def test_error_reraises_the_named_babou_error() -> None:
    with pytest.raises(BabouAuthError, match="it was error"):
        raise_for_event(event("error", error_type="BabouAuthError"))
    for unknown in ("RuntimeError", "PollPolicy", None, "__class__"):
        with pytest.raises(BabouError) as info:
            raise_for_event(event("error", error_type=unknown))
        assert type(info.value) is BabouError


def test_describe_event_is_one_readable_line() -> None:
    line = describe_event(event("failed", state="error", elapsed=12.345, message="Babou said no"))
    assert line == "Babou wait ended FAILED (state 'error', 12.3 s; asset_id=ast_1): Babou said no"
    prompt = {"status": "success", "state": "completed", "elapsed": None, "message": "done"}
    prompt.update(project_id="prj_1", chapter_id="cht_2", prompt_id="int_3")
    assert describe_event(prompt) == (
        "Babou wait ended SUCCESS (state 'completed', 0.0 s; "
        "project_id=prj_1, chapter_id=cht_2, prompt_id=int_3): done"
    )


@pytest.mark.parametrize("status", ["success", "failed", "timeout", "error"])
def test_raise_for_event_logs_one_line(status: str, caplog: pytest.LogCaptureFixture) -> None:
    payload = event(status)
    logger = "airflow_provider_babou.triggers.babou"
    with caplog.at_level(logging.INFO, logger=logger), contextlib.suppress(BabouError):
        raise_for_event(payload)
    lines = [r.getMessage() for r in caplog.records if r.name == logger]
    assert lines == [describe_event(payload)]
    assert "\n" not in lines[0]
