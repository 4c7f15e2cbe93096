"""A scripted Babou for ``httpx.MockTransport`` and a virtual clock: the tools of the hook unit tests.

No server: a :class:`Script` is the exact sequence of requests a hook is expected to make, each
with its answer (a response, an exception to raise, or a function of the request). A request that
was not expected fails the test loudly, so a test pins the requests as well as the result.
:class:`VirtualClock` replaces ``time.sleep``/``time.time``/``time.monotonic`` (tenacity, the
key budget, the waits and the hook all read them from the ``time`` module), so a retry for five
minutes takes no real time and every requested sleep is recorded.

Their own tests are in ``test_script.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.hooks.babou import BabouHook
from tests.keys import ALICE

API = "/api/v1"
Reply = httpx.Response | BaseException | type[BaseException] | Callable[[httpx.Request], httpx.Response]


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    """A JSON success."""
    return httpx.Response(status, json=body, headers=headers)


def fail(status: int, body: Any = None, *, text: str | None = None, **headers: str) -> httpx.Response:
    """An error answer: Babou's JSON envelope by default, or ``text`` as the raw body."""
    if text is not None:
        return httpx.Response(status, text=text, headers=headers)
    envelope = body if body is not None else {"error": f"scripted {status}", "code": f"E{status}"}
    return httpx.Response(status, json=envelope, headers=headers)


@dataclass
class Step:
    """One expected request and its answer; ``forever`` steps answer every later request too."""

    method: str
    path: str
    reply: Reply
    forever: bool = False


class Script:
    """The requests a hook must make, in order, and Babou's answers (a ``MockTransport`` handler)."""

    def __init__(self, *steps: Step | tuple[str, str, Reply]) -> None:
        self.steps = [s if isinstance(s, Step) else Step(*s) for s in steps]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url.path}")
        step = self.steps[0] if self.steps[0].forever else self.steps.pop(0)
        expected = (step.method, API + step.path)
        if (request.method, request.url.path) != expected:
            raise AssertionError(f"expected {expected}, got {request.method} {request.url.path}")
        reply = step.reply
        if isinstance(reply, type) and issubclass(reply, httpx.RequestError):
            raise reply("scripted failure", request=request)
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(request)
        assert isinstance(reply, httpx.Response)
        return reply

    @property
    def sent(self) -> list[tuple[str, str]]:
        """``(method, path below /api/v1)`` of every request made."""
        return [(r.method, r.url.path.removeprefix(API)) for r in self.requests]

    def count(self, method: str, path: str | None = None) -> int:
        """How many requests were made with this method (and path)."""
        return sum(1 for m, p in self.sent if m == method and (path is None or p == path))

    @property
    def done(self) -> bool:
        """Whether every (non-repeating) step was used."""
        return all(s.forever for s in self.steps)


def scripted_hook(
    monkeypatch: pytest.MonkeyPatch, script: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> BabouHook:
    """A hook whose connection ``babou_unit`` points at a host of its own, answered by ``script``.

    The host is unique and the budgets are fresh, so no test's 429 or rate can leak into another.
    ``extra=`` sets connection extras; other keywords go to :class:`BabouHook`.
    """
    monkeypatch.setattr(_budget, "_budgets", {})
    conn = {
        "conn_type": "babou",
        "host": f"https://api-{uuid.uuid4().hex[:8]}.babou.test/api/v1",
        "password": kwargs.pop("key", ALICE),
        "extra": kwargs.pop("extra", {}),
    }
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_UNIT", json.dumps(conn))
    hook = BabouHook("babou_unit", transport=httpx.MockTransport(script), **kwargs)
    _ = hook.config  # looked up now, before any virtual clock
    return hook


class VirtualClock:
    """``time.sleep`` records the delay and moves ``time.time``/``time.monotonic`` on; nothing waits."""

    def __init__(self) -> None:
        self.wall = time.time()
        self.mono = time.monotonic()
        self.start = self.mono
        self.sleeps: list[float] = []

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
        clock = cls()
        monkeypatch.setattr(time, "sleep", clock.sleep)
        monkeypatch.setattr(time, "time", clock.time)
        monkeypatch.setattr(time, "monotonic", clock.monotonic)
        return clock

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        assert len(self.sleeps) < 10_000, "a sleep loop that never ends"
        self.sleeps.append(seconds)
        # As a real sleep, never shorter than a microsecond: a float-rounding 1e-14 s sleep added to
        # a clock near 1e3 would not move it, and a loop waiting for it would spin forever.
        self.advance(max(seconds, 1e-6))

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was installed."""
        return self.mono - self.start


# --------------------------------------------------------------------------- the tools themselves
