"""``BabouHook._request`` without a server: what is retried, how long it waits, when it stops."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouError,
    BabouNotFoundError,
    BabouOutcomeUnknownError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouValidationError,
)
from airflow_provider_babou.hooks import _deadline
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import PollPolicy
from tests.unit.script import Script, Step, VirtualClock, fail, ok, scripted_hook

PROJECT = {"id": "prj_1", "name": "p"}
PROJECTS = {"projects": [PROJECT], "pagination": {"limit": 20, "offset": 0, "total": 1}}
EXPORT = {"status": "completed", "download_url": "https://cdn.babou.test/downloads/exp_1.mp4?expires=1"}


# --------------------------------------------------------------------------- never retried


CALLS: dict[str, tuple[str, str, Callable[[BabouHook], Any]]] = {
    "list_projects": ("GET", "/projects", lambda h: h.list_projects()),
    "get_project": ("GET", "/projects/prj_1", lambda h: h.get_project("prj_1")),
    "create_project": ("POST", "/projects", lambda h: h.create_project(name="p")),
    "submit_prompt": (
        "POST",
        "/projects/prj_1/chapters/cht_1/prompt",
        lambda h: h.submit_prompt("prj_1", "cht_1", content="x"),
    ),
    "start_export": ("GET", "/projects/prj_1/export", lambda h: h.start_export("prj_1")),
    "wait_for_export": (
        "GET",
        "/projects/prj_1/export",
        lambda h: h.wait_for_export("prj_1", poll=PollPolicy(1, 1, 1), timeout=600),
    ),
    "test_connection": ("GET", "/projects", lambda h: h.test_connection()),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("retry_after", [None, "1"])
def test_a_401_is_never_retried(monkeypatch: pytest.MonkeyPatch, call: str, retry_after: str | None) -> None:
    method, path, invoke = CALLS[call]
    headers = {"Retry-After": retry_after} if retry_after else {}
    answer = fail(401, {"error": "Invalid API key", "code": "UNAUTHORIZED"}, **headers)
    script = Script(Step(method, path, answer, forever=True))
    hook = scripted_hook(monkeypatch, script, retry_deadline=3600, max_backoff=0.01)
    clock = VirtualClock.install(monkeypatch)
    if call == "test_connection":
        assert invoke(hook)[0] is False
    else:
        with pytest.raises(BabouAuthError):
            invoke(hook)
    assert len(script.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409, 410, 413, 422])
def test_other_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    script = Script(Step("GET", "/projects/prj_1", fail(status), forever=True))
    hook = scripted_hook(monkeypatch, script, retry_deadline=3600)
    VirtualClock.install(monkeypatch)
    with pytest.raises(BabouError) as info:
        hook.get_project("prj_1")
    assert not isinstance(info.value, (BabouServerError, BabouTransportError, BabouRateLimitError))
    assert info.value.http_status == status
    assert len(script.requests) == 1


# --------------------------------------------------------------------------- POSTs vs GETs


SAFE_FOR_POST: list[Any] = [
    fail(503),
    fail(429, **{"Retry-After": "0"}),
    httpx.ConnectError,
    httpx.ConnectTimeout,
]
AMBIGUOUS: list[Any] = [
    fail(500),
    fail(502, text="<html>bad gateway</html>"),
    fail(504, text=""),
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
]


def _name(reply: Any) -> str:
    return reply.__name__ if isinstance(reply, type) else str(reply.status_code)


@pytest.mark.parametrize("reply", SAFE_FOR_POST, ids=_name)
def test_post_retried_when_it_surely_did_not_take_effect(monkeypatch: pytest.MonkeyPatch, reply: Any) -> None:
    script = Script(("POST", "/projects", reply), ("POST", "/projects", ok(PROJECT, 201)))
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    assert hook.create_project(name="p").id == "prj_1"
    assert script.count("POST") == 2


@pytest.mark.parametrize("reply", AMBIGUOUS, ids=_name)
def test_post_never_retried_after_an_ambiguous_failure(monkeypatch: pytest.MonkeyPatch, reply: Any) -> None:
    script = Script(("POST", "/projects", reply))
    hook = scripted_hook(monkeypatch, script, retry_deadline=3600)
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouOutcomeUnknownError) as info:
        hook.create_project(name="p")
    assert script.count("POST") == 1
    assert script.done
    assert clock.sleeps == []
    assert isinstance(info.value.__cause__, (BabouServerError, BabouTransportError))


@pytest.mark.parametrize("reply", SAFE_FOR_POST + AMBIGUOUS, ids=_name)
def test_get_retried_after_every_transient_fault(monkeypatch: pytest.MonkeyPatch, reply: Any) -> None:
    script = Script(
        ("GET", "/projects/prj_1", reply),
        ("GET", "/projects/prj_1", reply),
        ("GET", "/projects/prj_1", ok(PROJECT)),
    )
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    assert hook.get_project("prj_1").id == "prj_1"
    assert script.done


def test_a_non_restartable_upload_is_not_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG" + b"x" * 100)
    body = {"id": "ast_1", "state": "uploading"}
    script = Script(("POST", "/assets", fail(503)), ("POST", "/assets", ok(body, 201)))
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    assert hook.upload_asset(image).id == "ast_1"  # a path can be read again: retried
    assert [len(r.content) for r in script.requests] == [104, 104]  # the same bytes both times


# --------------------------------------------------------------------------- how long it waits


def test_retry_after_seconds_is_the_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", "/projects", fail(429, **{"Retry-After": "2"})),
        ("GET", "/projects", ok(PROJECTS)),
    )
    hook = scripted_hook(monkeypatch, script, max_backoff=60)
    clock = VirtualClock.install(monkeypatch)
    hook.list_projects()
    # the retry sleeps exactly what Babou asked, not the exponential 0.25-0.5 s of a first retry
    assert clock.sleeps[0] == 2.0
    assert 2.0 <= clock.elapsed < 2.5  # (the key's budget may add a token's worth after the pause)
    assert script.done


def test_retry_after_http_date_is_the_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock.install(monkeypatch)

    def throttled(request: httpx.Request) -> httpx.Response:
        when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: 2 < wait <= 3
        return fail(429, **{"Retry-After": when})

    script = Script(("GET", "/projects", throttled), ("GET", "/projects", ok(PROJECTS)))
    scripted_hook(monkeypatch, script, max_backoff=60).list_projects()
    assert 2.0 <= clock.sleeps[0] <= 3.0


@pytest.mark.parametrize("header", ["soon", "-5", "nan", "inf", ""])
def test_unusable_retry_after_falls_back_to_the_backoff(monkeypatch: pytest.MonkeyPatch, header: str) -> None:
    script = Script(
        ("GET", "/projects", fail(429, **{"Retry-After": header})),
        ("GET", "/projects", ok(PROJECTS)),
    )
    hook = scripted_hook(monkeypatch, script, max_backoff=60)
    clock = VirtualClock.install(monkeypatch)
    hook.list_projects()
    # "-5" is clamped to 0; the others are ignored (exponential: 0.25-0.5 s on the first retry)
    assert clock.sleeps[0] == 0.0 if header == "-5" else 0.25 <= clock.sleeps[0] <= 0.5


def test_retry_after_is_capped_by_max_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", "/projects", fail(429, **{"Retry-After": "100"})),
        ("GET", "/projects", ok(PROJECTS)),
    )
    hook = scripted_hook(monkeypatch, script, max_backoff=5)
    clock = VirtualClock.install(monkeypatch)
    hook.list_projects()
    assert clock.sleeps[0] == 5.0
    assert clock.elapsed < 6  # the key's pause is cut too: no 95 s more in the budget


def test_a_huge_retry_after_pauses_the_key_no_longer_than_max_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One 429 asking for an hour stalls neither this call nor the next one on the key."""
    script = Script(
        ("GET", "/projects", fail(429, **{"Retry-After": "3600"})),
        Step("GET", "/projects", ok(PROJECTS), forever=True),
    )
    hook = scripted_hook(monkeypatch, script, max_backoff=5, retry_deadline=60)
    clock = VirtualClock.install(monkeypatch)
    hook.list_projects()
    assert 5 <= clock.elapsed < 6
    other = BabouHook("babou_unit", transport=httpx.MockTransport(script), max_backoff=5)
    other.list_projects()  # another hook on the key: not paused either
    assert clock.elapsed < 6


def test_exponential_backoff_with_jitter_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(*[("GET", "/projects", fail(503))] * 9, ("GET", "/projects", ok(PROJECTS)))
    hook = scripted_hook(monkeypatch, script, max_backoff=3)
    clock = VirtualClock.install(monkeypatch)
    hook.list_projects()
    for attempt, sleep in enumerate(clock.sleeps, start=1):
        ceiling = min(3, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= sleep <= ceiling
    assert len(clock.sleeps) == 9


# --------------------------------------------------------------------------- when it stops


def test_retries_are_bounded_by_time_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", fail(503), forever=True))
    hook = scripted_hook(monkeypatch, script, retry_deadline=1, max_backoff=0.2)
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert 0.5 < clock.elapsed <= 1.0  # stopped rather than sleep past the deadline
    assert len(script.requests) > 5  # by time: many more than any fixed count


def test_a_long_deadline_keeps_retrying_past_five_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(*[("GET", "/projects", fail(502))] * 12, ("GET", "/projects", ok(PROJECTS)))
    hook = scripted_hook(monkeypatch, script)  # defaults: retry_deadline 300, max_backoff 30
    clock = VirtualClock.install(monkeypatch)
    assert hook.list_projects().items[0].id == "prj_1"
    assert len(script.requests) == 13
    assert clock.elapsed < 300
    assert max(clock.sleeps) <= 30


def test_the_default_deadline_is_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", fail(503), forever=True))
    hook = scripted_hook(monkeypatch, script)
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert 270 <= clock.elapsed <= 300


def test_max_retries_caps_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", fail(503), forever=True))
    hook = scripted_hook(monkeypatch, script, max_retries=3)
    VirtualClock.install(monkeypatch)
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert len(script.requests) == 4  # 1 + 3 retries


def test_max_retries_zero_means_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", fail(503), forever=True))
    hook = scripted_hook(monkeypatch, script, extra={"max_retries": 0})
    VirtualClock.install(monkeypatch)
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert len(script.requests) == 1


def test_the_hook_deadline_stops_retries_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", fail(503), forever=True))
    hook = scripted_hook(monkeypatch, script, retry_deadline=3600, max_backoff=2)
    clock = VirtualClock.install(monkeypatch)
    hook.deadline = time.time() + 10
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert time.time() < hook.deadline  # never slept past it
    assert 6 <= clock.elapsed < 10
    hook.deadline = time.time() - 1  # already past: one attempt, no sleep
    before = len(script.requests)
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert len(script.requests) == before + 1


def test_a_key_paused_past_the_hook_deadline_gives_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429 asking for an hour (allowed by max_backoff) pauses the key; with an operator's deadline
    sooner, stop, typed."""
    script = Script(Step("GET", "/projects", fail(429, **{"Retry-After": "3600"}), forever=True))
    hook = scripted_hook(monkeypatch, script, max_backoff=3600)
    clock = VirtualClock.install(monkeypatch)
    hook.deadline = time.time() + 60
    with pytest.raises(BabouRateLimitError):  # no retry: its sleep would pass the deadline
        hook.list_projects()
    with pytest.raises(BabouRateLimitError) as info:  # not the budget's bare TimeoutError
        hook.list_projects()
    assert clock.elapsed < 60
    assert len(script.requests) == 1  # the paused key sent nothing more
    assert info.value.method == "GET"
    assert "not sent" in info.value.message


def test_the_request_after_a_long_wait_for_a_token_ends_by_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request after a wait for a token ends by the hook's deadline, not a full ``timeout`` later."""
    script = Script(Step("GET", "/projects", ok(PROJECTS), forever=True))
    hook = scripted_hook(monkeypatch, script, extra={"rate_limit": 0.1})  # a token every 10 s
    clock = VirtualClock.install(monkeypatch)
    ends: list[float] = []
    bounded = _deadline.bounded
    monkeypatch.setattr(_deadline, "bounded", lambda end: (ends.append(end), bounded(end))[1])
    hook.list_projects()  # the bucket's one token
    # The next token comes within 20 s (a drained bucket refills from one token's time after).
    hook.deadline, deadline = time.time() + 22, time.monotonic() + 22
    hook.list_projects()
    assert clock.elapsed >= 10  # waited for the next token
    assert ends[-1] <= deadline  # what is left for the request, not its 30 s timeout


def test_retry_deadline_holds_while_the_key_is_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``retry_deadline`` bounds the whole call, the key's pause after a 429 included."""
    script = Script(Step("GET", "/projects", fail(429, **{"Retry-After": "3600"}), forever=True))
    hook = scripted_hook(monkeypatch, script, max_backoff=3600, retry_deadline=30)
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouRateLimitError):
        hook.list_projects()
    assert clock.elapsed <= 30
    assert len(script.requests) == 1


# --------------------------------------------------------------------------- timeouts sent


def test_every_request_carries_the_connection_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, float | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok(PROJECTS)

    hook = scripted_hook(monkeypatch, Script(("GET", "/projects", answer)), extra={"timeout": 7})
    hook.list_projects()
    # never None (httpx: no timeout at all), which would let a silent server hang a worker forever
    assert seen == [{"connect": 7, "read": 7, "write": 7, "pool": 7}]


def test_a_wait_step_bounds_its_request_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return ok(EXPORT)

    hook = scripted_hook(monkeypatch, Script(("GET", "/projects/prj_1/export", answer)))
    hook.wait_for_export("prj_1", timeout=4)
    assert seen[0] is not None
    assert 3.9 <= seen[0] <= 4  # the time left before the deadline, not the 30 s default


# --------------------------------------------------------------------------- misc


def test_not_found_export_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", "/projects/prj_1/export", fail(404, {"error": "No export found", "code": "NOT_FOUND"}))
    )
    hook = scripted_hook(monkeypatch, script)
    assert hook.find_export("prj_1") is None
    script.steps.append(Step("GET", "/projects/prj_1/export", fail(404)))
    with pytest.raises(BabouNotFoundError):
        hook.get_export("prj_1")


def test_validation_error_is_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"error": "Validation failed", "code": "VALIDATION_ERROR", "hint": "name: too long"}
    hook = scripted_hook(monkeypatch, Script(("POST", "/projects", fail(400, body))))
    with pytest.raises(BabouValidationError) as info:
        hook.create_project(name="p")
    assert (info.value.code, info.value.hint) == ("VALIDATION_ERROR", "name: too long")
