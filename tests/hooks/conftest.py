"""Fixtures of the hook tests: an Airflow connection to the emulator, and a hook driven sync or async."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import PollPolicy
from tests.keys import ALICE

FAST_POLL = PollPolicy(interval=0.05, backoff=1.5, max_interval=0.3)


@pytest.fixture
def babou_conn(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorControl) -> Callable[..., str]:
    """Define ``babou_default`` (to the emulator, key ALICE); call it to define others."""

    def make(
        conn_id: str = "babou_default", *, key: str | None = ALICE, host: str | None = None, **extra: Any
    ) -> str:
        conn: dict[str, Any] = {"conn_type": "babou", "host": host or emulator.api_url}
        if key is not None:
            conn["password"] = key
        if extra:
            conn["extra"] = extra
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    make()
    return make


@pytest.fixture
def hook(babou_conn: Callable[..., str]) -> Iterator[BabouHook]:
    """A hook on ``babou_default`` with short backoffs, so retry tests stay fast."""
    h = BabouHook(timeout=5, max_backoff=0.05)
    yield h
    h.close()


class Api:
    """Call the hook's sync methods, or their ``a``-prefixed twins on one event loop, by the same name."""

    def __init__(self, hook: BabouHook, mode: str) -> None:
        self.hook = hook
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if self.mode == "sync":
            return getattr(self.hook, name)
        func = getattr(self.hook, "a" + name)
        assert self.loop is not None

        def call(*args: Any, **kwargs: Any) -> Any:
            assert self.loop is not None
            return self.loop.run_until_complete(func(*args, **kwargs))

        return call

    def collect(self, name: str, **kwargs: Any) -> list[Any]:
        """Exhaust ``iter_*`` (sync) or ``aiter_*`` (async) into a list."""
        if self.mode == "sync":
            return list(getattr(self.hook, name)(**kwargs))

        async def gather() -> list[Any]:
            return [item async for item in getattr(self.hook, "a" + name)(**kwargs)]

        assert self.loop is not None
        return self.loop.run_until_complete(gather())

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.hook.aclose())
            self.loop.close()
        self.hook.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, hook: BabouHook) -> Iterator[Api]:
    """The hook, exercised once through its sync and once through its async methods."""
    wrapper = Api(hook, request.param)
    yield wrapper
    wrapper.close()


def key_stats(emulator: EmulatorControl, key: str = ALICE) -> dict[str, Any]:
    """ALICE's traffic counters (requests_by_route, responses, connections, created counters)."""
    return emulator.stats(key)["key"] or {}


def route_count(emulator: EmulatorControl, route: str, key: str = ALICE) -> int:
    """How many requests reached ``route`` (e.g. ``POST /api/v1/projects``)."""
    return int(key_stats(emulator, key).get("requests_by_route", {}).get(route, 0))
