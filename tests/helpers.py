"""Constants and helpers shared by the test packages (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
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


def run_python(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    """Run ``python <args>`` in a fresh interpreter; assert it succeeded and return its stdout."""
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout
