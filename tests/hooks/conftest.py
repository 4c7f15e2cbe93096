"""Fixtures of the hook tests against the emulator: a hook with short backoffs, a fresh key budget."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_babou.hooks import _budget
from airflow_provider_babou.hooks.babou import BabouHook


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
