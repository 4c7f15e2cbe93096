"""Waits share one lookup of their connection (``hooks/_async.shared_config``), and so do threads
sharing a hook (a campaign's pool): Airflow 3.1's task SDK hangs on two lookups at once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_provider_babou.hooks import _async
from airflow_provider_babou.hooks import babou as hook_module
from airflow_provider_babou.hooks.babou import BabouHook


async def test_waits_starting_together_look_the_connection_up_once() -> None:
    calls = 0

    async def resolve() -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)  # the lookup awaits: every wait starts before it answers
        return "config"

    found = await asyncio.gather(*(_async.shared_config("together", resolve) for _ in range(20)))
    assert found == ["config"] * 20
    assert calls == 1


async def test_a_failed_lookup_is_not_kept() -> None:
    answers: list[Any] = [LookupError("no such connection"), "config"]

    async def resolve() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(LookupError):
        await _async.shared_config("failing", resolve)
    assert await _async.shared_config("failing", resolve) == "config"


async def test_a_cancelled_wait_does_not_cancel_the_others_lookup() -> None:
    async def resolve() -> Any:
        await asyncio.sleep(0.05)
        return "config"

    first = asyncio.ensure_future(_async.shared_config("cancel", resolve))
    second = asyncio.ensure_future(_async.shared_config("cancel", resolve))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "config"


def test_threads_sharing_a_hook_look_the_connection_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[int] = []

    def lookup(hook: Any, conn_id: str) -> Connection:
        lookups.append(threading.get_ident())
        time.sleep(0.05)  # the other threads ask meanwhile
        return Connection(conn_id=conn_id, conn_type="babou", host="http://127.0.0.1:9", password="sk-bab-x")

    monkeypatch.setattr(hook_module, "get_connection", lookup)
    hook = BabouHook()
    with ThreadPoolExecutor(8) as pool:
        configs = list(pool.map(lambda _: hook.config, range(8)))
    assert len(lookups) == 1
    assert all(config is configs[0] for config in configs)
