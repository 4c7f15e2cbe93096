"""Fixtures of the hook tests: a hook on the emulator with short backoffs, a fresh key budget, and a
hook answered by an ``httpx.MockTransport`` (for what the emulator cannot produce)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.hooks.babou import BabouHook
from tests.keys import ALICE


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with untouched key budgets: a 429 in one test cannot slow the next."""
    monkeypatch.setattr(_budget, "_budgets", {})


@pytest.fixture
def hook(babou_conn: str) -> Iterator[BabouHook]:
    """A hook on ``babou_default`` (the emulator, key ALICE) with short backoffs, so retry tests stay fast."""
    h = BabouHook(babou_conn, timeout=5, max_backoff=0.05)
    yield h
    h.close()


@pytest.fixture
def mock_hook(monkeypatch: pytest.MonkeyPatch) -> Callable[..., BabouHook]:
    """A hook on ``babou_mock`` (``https://api.babou.test``, key ALICE) answered by ``handler``."""

    def make(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> BabouHook:
        conn = {"conn_type": "babou", "host": "https://api.babou.test/api/v1", "password": ALICE}
        monkeypatch.setenv("AIRFLOW_CONN_BABOU_MOCK", json.dumps(conn))
        return BabouHook("babou_mock", transport=httpx.MockTransport(handler), **kw)

    return make
