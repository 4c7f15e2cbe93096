"""One ``retry_deadline`` for a whole call, nested retries included; connection numbers in range."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_babou.exceptions import BabouError, BabouInputError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.operators._steps import ensure_chapter
from tests.keys import ALICE
from tests.unit.script import VirtualClock, fail, ok, scripted_hook


def always_failing(request: httpx.Request) -> httpx.Response:
    return fail(500 if request.method == "GET" else 502)


def slow_to_check(found: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Every POST 502 (ambiguous: checked, then re-sent); the first GET answers ``found``, every later
    check answers it only after 10 500s in a row (about 9 s of its own retries, max_backoff 1)."""
    gets = itertools.count()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            return fail(502)
        n = next(gets)
        return found if n % 11 == 0 else fail(500)

    return answer


def test_start_export_keeps_one_retry_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    script = slow_to_check(fail(404))  # no export yet
    hook = scripted_hook(monkeypatch, script, extra={"retry_deadline": 10, "max_backoff": 1})
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouError):
        hook.start_export("prj_1")
    # the POSTs and the checks' own retries share the 10 s: no check starts a fresh 10 s
    assert clock.elapsed <= 10


def test_a_step_retried_whole_keeps_one_retry_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    script = slow_to_check(ok({"chapters": []}))
    hook = scripted_hook(monkeypatch, script, extra={"retry_deadline": 10, "max_backoff": 1})
    clock = VirtualClock.install(monkeypatch)
    with pytest.raises(BabouError):
        ensure_chapter(hook, "prj_1", name="intro", duration=None)
    assert clock.elapsed <= 10


def test_nested_calls_share_the_outer_window(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = scripted_hook(monkeypatch, always_failing, extra={"retry_deadline": 10})
    clock = VirtualClock.install(monkeypatch)
    with hook.retry_window() as outer:
        clock.sleep(4)
        with hook.retry_window() as inner:
            assert inner == outer
    with hook.retry_window() as later:  # a new call: a new window
        assert later > outer


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", 1e10),
        ("timeout", 86_401),
        ("max_backoff", 1e300),
        ("retry_deadline", 1e12),
        ("rate_limit", 1e9),
    ],
)
def test_a_huge_connection_number_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: Any
) -> None:
    conn = {"conn_type": "babou", "host": "https://api.babou.test", "password": ALICE, "extra": {name: value}}
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_HUGE", json.dumps(conn))
    hook = BabouHook("babou_huge", transport=httpx.MockTransport(always_failing))
    with pytest.raises(BabouInputError, match=rf"'{name}' must be a number from 0 to \d+") as info:
        _ = hook.config  # before any request (a timeout of 1e10 was an OverflowError in every one)
    assert info.value.hint


def test_a_number_at_its_upper_bound_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"timeout": 86_400}
    conn = {"conn_type": "babou", "host": "https://api.babou.test", "password": ALICE, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_HUGE", json.dumps(conn))
    assert BabouHook("babou_huge").config.timeout == 86_400
