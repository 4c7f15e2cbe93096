"""Constants and helpers shared by the test packages (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.polling import PollPolicy
from tests.keys import ALICE

#: The one fast cadence of tests: the emulator builds a prompt in 0.3 s.
FAST_POLL = PollPolicy(interval=0.05, backoff=1.5, max_interval=0.3)


def key_stats(emulator: EmulatorControl, key: str = ALICE) -> dict[str, Any]:
    """A key's traffic counters (requests_by_route, responses, connections, created counters)."""
    return emulator.stats(key)["key"] or {}


def route_count(emulator: EmulatorControl, route: str, key: str = ALICE) -> int:
    """How many requests reached ``route`` (e.g. ``POST /api/v1/projects``)."""
    return int(key_stats(emulator, key).get("requests_by_route", {}).get(route, 0))
