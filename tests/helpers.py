"""Constants and helpers shared by the test packages (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import os
import threading
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


class DiskWatch:
    """While active, samples every 10 ms the local disk taken by files under ``folders`` (allocated
    blocks) and the used space of their file system; keeps the largest growth of each.

    The file-system figure also counts other processes' writes: the folder figure is the exact one.
    """

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.peak = 0  #: largest total size of the files under ``folders``, bytes
        self.fs_growth = 0  #: largest growth of the file system's used space, bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._fs_start = 0

    def used(self) -> int:
        total = 0
        for folder in self.folders:
            for root, _, files in os.walk(folder):
                for name in files:
                    with contextlib.suppress(FileNotFoundError):  # renamed or deleted meanwhile
                        total += os.lstat(os.path.join(root, name)).st_blocks * 512
        return total

    def _fs_used(self) -> int:
        stat = os.statvfs(self.folders[0])
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize

    def _sample(self) -> None:
        self.peak = max(self.peak, self.used())
        self.fs_growth = max(self.fs_growth, self._fs_used() - self._fs_start)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def __enter__(self) -> DiskWatch:
        self._fs_start = self._fs_used()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
