"""Reconciliation after an ambiguous POST on a scripted Babou: no duplicate, and no wrong "ours"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouOutcomeUnknownError,
)
from airflow_provider_babou.models import ExportStatus, PromptStatus
from tests.unit.script import Script, VirtualClock, fail, ok, scripted_hook

CDN = "https://api.babou.test"
PROJECT = "/projects/prj_1"
EXPORT = PROJECT + "/export"
CHAPTER = "/projects/prj_1/chapters/cht_1"
PROMPT = CHAPTER + "/prompt"
NOT_FOUND = fail(404, {"error": "No export found for this project", "code": "NOT_FOUND"})
CONFLICT = fail(409, {"error": "An export is already in progress", "code": "CONFLICT"})
STARTED = ok({"status": "queued", "message": "Export started"})


def export(
    status: str = "completed", name: str = "exp_old", expires: int = 1, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"status": status, **extra}
    if status == "completed":
        body |= {"download_url": f"{CDN}/downloads/{name}.mp4?expires={expires}", "duration_seconds": 30}
    return ok(body)


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    return VirtualClock.install(monkeypatch)


# --------------------------------------------------------------------------- start_export


@pytest.mark.parametrize(
    "failure", [fail(500), fail(502, text="<html/>"), fail(504, text=""), httpx.ReadTimeout]
)
@pytest.mark.parametrize(
    ("name", "expires"),
    [("exp_old", 1), ("exp_old", 2), ("exp_new", 1)],
    ids=["same-url", "fresh-signature", "other-url"],
)
def test_the_same_finished_export_as_before_is_neither_ours_nor_resent(
    monkeypatch: pytest.MonkeyPatch, failure: Any, name: str, expires: int
) -> None:
    """Ours may have run and finished, or never started: the URL cannot tell (the documented one
    names the project). Resending could bill a second render, "ours" could be a false success."""
    script = Script(
        ("GET", EXPORT, export()),  # the snapshot: a finished export from before
        ("POST", EXPORT, failure),  # ambiguous: did ours start?
        ("GET", EXPORT, export(name=name, expires=expires)),  # completed, like before
        ("GET", PROJECT, ok({"id": "prj_1", "name": "p", "active_export_id": None})),  # none queued
    )
    with pytest.raises(BabouOutcomeUnknownError, match="same completed export as before") as info:
        scripted_hook(monkeypatch, script).start_export("prj_1")
    assert "dashboard" in (info.value.hint or "")
    assert script.done
    assert script.count("POST") == 1


def test_the_same_finished_export_with_one_active_on_the_project_is_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Script(
        ("GET", EXPORT, export()),
        ("POST", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, export()),
        ("GET", PROJECT, ok({"id": "prj_1", "name": "p", "active_export_id": "exp_new"})),
    )
    receipt = scripted_hook(monkeypatch, script).start_export("prj_1")
    assert receipt.status is ExportStatus.QUEUED
    assert "recovered" in (receipt.message or "")
    assert script.done
    assert script.count("POST") == 1


def test_a_finished_export_after_nothing_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, NOT_FOUND),
        ("POST", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, export()),  # it ran (fast) after our lost POST
    )
    receipt = scripted_hook(monkeypatch, script).start_export("prj_1")
    assert receipt.status is ExportStatus.COMPLETED
    assert "recovered" in (receipt.message or "")
    assert script.done
    assert script.count("POST") == 1


def test_a_finished_export_unlike_the_one_before_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, export("completed")),
        ("POST", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, export("failed", error="render crashed")),  # a finished export can't change
    )
    receipt = scripted_hook(monkeypatch, script).start_export("prj_1")
    assert receipt.status is ExportStatus.FAILED
    assert script.count("POST") == 1
    assert script.done


@pytest.mark.parametrize("now", ["queued", "processing"])
def test_an_export_in_flight_is_ours(monkeypatch: pytest.MonkeyPatch, now: str) -> None:
    script = Script(
        ("GET", EXPORT, export()),
        ("POST", EXPORT, httpx.RemoteProtocolError),
        ("GET", EXPORT, export(now)),
    )
    assert scripted_hook(monkeypatch, script).start_export("prj_1").status.value == now
    assert script.count("POST") == 1


def test_the_same_failed_export_as_before_is_neither_ours_nor_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, export("failed", error="render crashed")),
        ("POST", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, export("failed", error="render crashed")),
        ("GET", PROJECT, ok({"id": "prj_1", "name": "p"})),  # no active_export_id key at all
    )
    with pytest.raises(BabouOutcomeUnknownError, match="same failed export"):
        scripted_hook(monkeypatch, script).start_export("prj_1")
    assert script.count("POST") == 1
    assert script.done


def test_a_new_failure_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, export("failed", error="render crashed")),
        ("POST", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, export("failed", error="out of credits")),
    )
    assert scripted_hook(monkeypatch, script).start_export("prj_1").status is ExportStatus.FAILED
    assert script.count("POST") == 1


def test_a_second_ambiguous_failure_is_checked_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, NOT_FOUND),
        ("POST", EXPORT, fail(500)),
        ("GET", EXPORT, NOT_FOUND),
        ("POST", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, export("queued")),  # the second one took
    )
    assert scripted_hook(monkeypatch, script).start_export("prj_1").status is ExportStatus.QUEUED
    assert script.done


def test_ambiguous_failures_without_a_trace_are_checked_and_resent_until_the_retry_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bounded by time, not count: every lost answer is checked before the POST goes again, for
    ``retry_deadline`` seconds; then ``BabouOutcomeUnknownError`` (checked once more after the last)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "POST":
            return fail(500) if seen.count("POST") % 2 else httpx.Response(502, text="bad gateway")
        return NOT_FOUND  # still no export at all: not ours

    hook = scripted_hook(monkeypatch, handler, extra={"retry_deadline": 60, "max_backoff": 4})
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouOutcomeUnknownError) as info:
        hook.start_export("prj_1")
    assert "starting the export" in info.value.message
    assert info.value.hint
    posts = seen.count("POST")
    assert posts > 5  # not two and out, as a count-bounded loop did
    assert seen[0] == "GET"  # the snapshot before the first POST
    assert seen[1:] == ["POST", "GET"] * posts  # each lost answer checked, the last one too
    assert 50 < sum(clock.sleeps) <= 60  # about retry_deadline, never past it


def test_a_409_to_the_resend_means_ours_landed(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, NOT_FOUND),
        ("POST", EXPORT, fail(502, text="bad gateway")),
        ("GET", EXPORT, NOT_FOUND),  # not visible yet
        ("POST", EXPORT, CONFLICT),  # ...but the resend is refused: something is in flight
        ("GET", EXPORT, export("processing")),
    )
    assert scripted_hook(monkeypatch, script).start_export("prj_1").status is ExportStatus.PROCESSING
    assert script.done


def test_a_409_to_the_resend_without_a_trace_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, NOT_FOUND),
        ("POST", EXPORT, fail(500)),
        ("GET", EXPORT, NOT_FOUND),
        ("POST", EXPORT, CONFLICT),
        ("GET", EXPORT, NOT_FOUND),
    )
    with pytest.raises(BabouConflictError):
        scripted_hook(monkeypatch, script).start_export("prj_1")
    assert script.done


def test_a_409_to_the_first_post_is_raised_without_reconciling(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(("GET", EXPORT, export("processing")), ("POST", EXPORT, CONFLICT))
    with pytest.raises(BabouConflictError):
        scripted_hook(monkeypatch, script).start_export("prj_1")
    assert script.done


@pytest.mark.parametrize("refusal", [fail(503), fail(429, **{"Retry-After": "0"}), httpx.ConnectError])
def test_a_refused_post_is_retried_not_reconciled(monkeypatch: pytest.MonkeyPatch, refusal: Any) -> None:
    script = Script(("GET", EXPORT, NOT_FOUND), ("POST", EXPORT, refusal), ("POST", EXPORT, STARTED))
    assert scripted_hook(monkeypatch, script).start_export("prj_1").status is ExportStatus.QUEUED
    assert script.done


# --------------------------------------------------------------------------- submit_prompt


def chapter(*prompts: dict[str, Any]) -> httpx.Response:
    return ok({"id": "cht_1", "name": "c", "status": "processing", "prompts": list(prompts)})


def prompt(pid: str, content: str, *, age: float = 0, **extra: Any) -> dict[str, Any]:
    created = datetime.now(timezone.utc) - timedelta(seconds=age)
    return {"id": pid, "content": content, "created_at": created.isoformat(), **extra}


RECEIPT = ok({"prompt_id": "int_resent", "status": "processing", "message": "Prompt submitted"})
PROMPT_CONFLICT = fail(409, {"error": "A prompt is already processing", "code": "CONFLICT"})


@pytest.mark.parametrize(
    "failure", [fail(500), fail(504, text=""), httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_a_prompt_created_since_the_call_began_is_ours(monkeypatch: pytest.MonkeyPatch, failure: Any) -> None:
    script = Script(
        ("POST", PROMPT, failure),
        ("GET", CHAPTER, chapter(prompt("int_old", "hello", age=3600), prompt("int_ours", "hello"))),
    )
    receipt = scripted_hook(monkeypatch, script).submit_prompt("prj_1", "cht_1", content="hello")
    assert receipt.prompt_id == "int_ours"
    assert receipt.status is PromptStatus.PROCESSING
    assert "recovered" in (receipt.message or "")
    assert script.count("POST") == 1
    assert script.done


def test_the_recovered_status_is_the_prompts_own(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("POST", PROMPT, httpx.ReadTimeout),
        ("GET", CHAPTER, chapter(prompt("int_ours", "hello", status="completed", result="done"))),
    )
    receipt = scripted_hook(monkeypatch, script).submit_prompt("prj_1", "cht_1", content="hello")
    assert receipt.status is PromptStatus.COMPLETED


@pytest.mark.parametrize(
    "prompts",
    [
        [],
        [prompt("int_old", "hello", age=3600)],  # the same text, from long before the call
        [prompt("int_other", "something else")],  # new, but another text
    ],
    ids=["none", "older", "other-content"],
)
def test_no_prompt_of_ours_means_resent_once(monkeypatch: pytest.MonkeyPatch, prompts: list[Any]) -> None:
    script = Script(
        ("POST", PROMPT, fail(500)), ("GET", CHAPTER, chapter(*prompts)), ("POST", PROMPT, RECEIPT)
    )
    receipt = scripted_hook(monkeypatch, script).submit_prompt("prj_1", "cht_1", content="hello")
    assert receipt.prompt_id == "int_resent"
    assert script.count("POST") == 2
    assert script.done


def test_a_409_to_the_resent_prompt_is_recovered(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("POST", PROMPT, httpx.ReadTimeout),
        ("GET", CHAPTER, chapter()),  # not visible yet
        ("POST", PROMPT, PROMPT_CONFLICT),  # the first one is processing after all
        ("GET", CHAPTER, chapter(prompt("int_first", "hello"))),
    )
    receipt = scripted_hook(monkeypatch, script).submit_prompt("prj_1", "cht_1", content="hello")
    assert receipt.prompt_id == "int_first"
    assert script.done


def test_a_409_to_the_resent_prompt_for_another_prompt_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("POST", PROMPT, httpx.ReadTimeout),
        ("GET", CHAPTER, chapter()),
        ("POST", PROMPT, PROMPT_CONFLICT),
        ("GET", CHAPTER, chapter(prompt("int_theirs", "someone else's"))),
    )
    with pytest.raises(BabouConflictError):
        scripted_hook(monkeypatch, script).submit_prompt("prj_1", "cht_1", content="hello")
    assert script.done


def test_ambiguous_prompt_failures_without_a_trace_end_at_the_retry_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return fail(500) if request.method == "POST" else chapter()

    hook = scripted_hook(monkeypatch, handler, extra={"retry_deadline": 30, "max_backoff": 2})
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouOutcomeUnknownError, match="submitting the prompt"):
        hook.submit_prompt("prj_1", "cht_1", content="hello")
    assert seen.count("POST") > 5
    assert seen == ["POST", "GET"] * seen.count("POST")  # every lost answer checked
    assert 25 < sum(clock.sleeps) <= 30


def test_a_first_409_is_raised_without_reconciling(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(("POST", PROMPT, PROMPT_CONFLICT))
    with pytest.raises(BabouConflictError):
        scripted_hook(monkeypatch, script).submit_prompt("prj_1", "cht_1", content="hello")
    assert script.done


# --------------------------------------------------------------------------- creates


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/projects", lambda h, _: h.create_project(name="p")),
        ("/projects/prj_1/chapters", lambda h, _: h.create_chapter("prj_1", name="c")),
        ("/assets", lambda h, f: h.upload_asset(f)),
    ],
    ids=["project", "chapter", "asset"],
)
@pytest.mark.parametrize("failure", [fail(500), httpx.ReadTimeout])
def test_creates_are_never_resent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, path: str, call: Any, failure: Any
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG" + b"x" * 10)
    script = Script(("POST", path, failure))
    with pytest.raises(BabouOutcomeUnknownError) as info:
        call(scripted_hook(monkeypatch, script), image)
    assert "unknown" in info.value.message
    assert info.value.hint
    assert script.done
