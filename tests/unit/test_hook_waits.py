"""The hook's blocking waits (``hook.wait``/``wait_for_*``) on a virtual clock: cadence, cap, deadline."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouInputError,
    BabouJobFailedError,
    BabouServerError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import LAST_POLL, ExportTarget, PollPolicy
from tests.unit.script import Script, Step, VirtualClock, fail, ok, scripted_hook

EXPORT = "/projects/prj_1/export"
DONE = {"status": "completed", "download_url": "https://cdn.babou.test/downloads/exp_1.mp4?expires=1"}


def _chapter(status: str) -> dict[str, Any]:
    return {"id": "cht_1", "name": "c", "prompts": [{"id": "int_1", "content": "x", "status": status}]}


# (path, the "still running" answer, the "done" answer, the wait)
WAITS: dict[str, tuple[str, dict[str, Any], dict[str, Any], Callable[..., Any]]] = {
    "export": (EXPORT, {"status": "processing"}, DONE, lambda h, **kw: h.wait_for_export("prj_1", **kw)),
    "prompt": (
        "/projects/prj_1/chapters/cht_1",
        _chapter("processing"),
        _chapter("completed"),
        lambda h, **kw: h.wait_for_prompt("prj_1", "cht_1", "int_1", **kw),
    ),
    "asset": (
        "/assets/ast_1",
        {"id": "ast_1", "state": "processing"},
        {"id": "ast_1", "state": "ready"},
        lambda h, **kw: h.wait_for_asset("ast_1", **kw),
    ),
}


@pytest.mark.parametrize("kind", sorted(WAITS))
def test_poll_delays_grow_by_half_to_a_30_second_cap(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    path, running, done, wait = WAITS[kind]
    script = Script(*[("GET", path, ok(running))] * 20, ("GET", path, ok(done)))
    hook = scripted_hook(monkeypatch, script)
    clock = VirtualClock.install(monkeypatch)
    wait(hook, timeout=3600)  # the default cadence: 2 s, x1.5, at most 30 s
    assert script.done
    delays = clock.sleeps
    assert len(delays) == 20  # one sleep between two polls; the budget never had to wait
    assert delays[0] == 2.0
    for before, after in itertools.pairwise(delays):
        assert after == pytest.approx(min(before * 1.5, 30.0))
    assert max(delays) == 30.0
    assert delays[-5:] == [30.0] * 5


def test_a_custom_cadence_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(*[("GET", EXPORT, ok({"status": "queued"}))] * 6, ("GET", EXPORT, ok(DONE)))
    hook = scripted_hook(monkeypatch, script)
    clock = VirtualClock.install(monkeypatch)
    hook.wait_for_export("prj_1", poll=PollPolicy(interval=1, backoff=2, max_interval=5), timeout=600)
    assert clock.sleeps == [1, 2, 4, 5, 5, 5]


def test_the_deadline_ends_a_wait_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", EXPORT, ok({"status": "processing"}), forever=True))
    hook = scripted_hook(monkeypatch, script)
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouWaitTimeoutError, match="still 'processing'") as info:
        hook.wait_for_export("prj_1", timeout=100)
    # the last poll starts a second (polling.LAST_POLL) before the deadline, to answer by it
    assert clock.elapsed == pytest.approx(100 - LAST_POLL)
    assert sum(clock.sleeps) <= 100 - LAST_POLL + 1e-6
    assert info.value.hint


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -5.0, 0, True, "60"], ids=repr)
def test_a_wait_timeout_must_be_finite_and_positive(monkeypatch: pytest.MonkeyPatch, timeout: Any) -> None:
    # Without the check, NaN never compares "past the deadline": the wait would poll forever.
    script = Script(Step("GET", EXPORT, ok({"status": "processing"}), forever=True))
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    with pytest.raises(BabouInputError, match="timeout"):
        hook.wait_for_export("prj_1", timeout=timeout)
    assert script.requests == []


def test_transient_errors_are_tolerated_in_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", EXPORT, fail(503)),
        ("GET", EXPORT, httpx.ReadTimeout),
        ("GET", EXPORT, fail(502, text="<html/>")),
        ("GET", EXPORT, ok({"status": "processing"})),  # a good answer resets the count
        *[("GET", EXPORT, fail(500))] * 5,
        ("GET", EXPORT, ok(DONE)),
    )
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    assert hook.wait_for_export("prj_1", timeout=3600).download_url
    assert script.done  # no retry inside a step: one request per failure


def test_one_failure_too_many_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", EXPORT, fail(503), forever=True))
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    with pytest.raises((BabouWaitTimeoutError, BabouServerError)) as info:
        hook.wait(ExportTarget("prj_1"), timeout=3600, max_failures=3)
    assert len(script.requests) == 4
    cause = info.value if isinstance(info.value, BabouServerError) else info.value.__cause__
    assert isinstance(cause, BabouServerError)


def test_a_429_in_a_wait_waits_at_least_its_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(("GET", EXPORT, fail(429, **{"Retry-After": "12"})), ("GET", EXPORT, ok(DONE)))
    hook = scripted_hook(monkeypatch, script)
    clock = VirtualClock.install(monkeypatch)
    hook.wait_for_export("prj_1", timeout=600)
    assert clock.elapsed >= 12


def test_a_401_ends_a_wait_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", EXPORT, fail(401), forever=True))
    hook = scripted_hook(monkeypatch, script)
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouAuthError):
        hook.wait_for_export("prj_1", timeout=600)
    assert len(script.requests) == 1
    assert clock.sleeps == []


def test_a_failed_export_raises_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {"status": "failed", "error": "Render node crashed"}
    script = Script(("GET", EXPORT, ok({"status": "queued"})), ("GET", EXPORT, ok(failed)))
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    with pytest.raises(BabouJobFailedError, match="Render node crashed") as info:
        hook.wait_for_export("prj_1", timeout=600)
    assert info.value.code == "FAILED"


def test_an_unknown_status_keeps_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(("GET", EXPORT, ok({"status": "rendering-frames"})), ("GET", EXPORT, ok(DONE)))
    hook = scripted_hook(monkeypatch, script)
    VirtualClock.install(monkeypatch)
    assert hook.wait_for_export("prj_1", timeout=600).status.value == "completed"


def test_observe_makes_one_get(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(("GET", EXPORT, fail(503)))
    hook: BabouHook = scripted_hook(monkeypatch, script)
    with pytest.raises(BabouServerError):
        hook.observe(ExportTarget("prj_1"), retry=False)
    assert script.done
