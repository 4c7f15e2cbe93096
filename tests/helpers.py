"""Constants and helpers shared by the test packages (fixtures live in ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.polling import PollPolicy
from tests.keys import ALICE

if TYPE_CHECKING:
    from airflow_provider_babou.hooks.babou import BabouHook

#: The one fast cadence of tests: the emulator builds a prompt in 0.3 s.
FAST_POLL = PollPolicy(interval=0.05, backoff=1.5, max_interval=0.3)


def key_stats(emulator: EmulatorControl, key: str = ALICE) -> dict[str, Any]:
    """A key's traffic counters (requests_by_route, responses, connections, created counters)."""
    return emulator.stats(key)["key"] or {}


def route_count(emulator: EmulatorControl, route: str, key: str = ALICE) -> int:
    """How many requests reached ``route`` (e.g. ``POST /api/v1/projects``)."""
    return int(key_stats(emulator, key).get("requests_by_route", {}).get(route, 0))


def completed_export(hook: BabouHook) -> str:
    """Make a project with one built prompt and a completed export; return the project's id."""
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    receipt = hook.submit_prompt(project.id, chapter.id, content="x")
    hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=FAST_POLL, timeout=10)
    hook.start_export(project.id)
    hook.wait_for_export(project.id, poll=FAST_POLL, timeout=10)
    return project.id


class DiskWatch:
    """While active, samples every 10 ms the local disk (allocated blocks) taken by the files under
    ``folders``, the growth of the deleted files this process holds open (anonymous temporary files,
    which no folder shows) and of the used space of the folders' file system; keeps the largest of
    each.

    The file-system figure also counts other processes' writes; the other two are exact.
    """

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.peak = 0  #: largest total size of the files under ``folders``, bytes
        self.unlinked = 0  #: largest growth of the deleted files held open by this process, bytes
        self.fs_growth = 0  #: largest growth of the file system's used space, bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._fs_start = self._unlinked_start = 0

    def used(self) -> int:
        total = 0
        for folder in self.folders:
            for root, _, files in os.walk(folder):
                for name in files:
                    with contextlib.suppress(FileNotFoundError):  # renamed or deleted meanwhile
                        total += os.lstat(os.path.join(root, name)).st_blocks * 512
        return total

    @staticmethod
    def open_unlinked() -> int:
        total = 0
        with contextlib.suppress(FileNotFoundError):  # no /proc
            for fd in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError):  # closed meanwhile
                    info = os.stat(f"/proc/self/fd/{fd}")
                    if info.st_nlink == 0 and stat.S_ISREG(info.st_mode):
                        total += info.st_blocks * 512
        return total

    def _fs_used(self) -> int:
        fs = os.statvfs(self.folders[0])
        return (fs.f_blocks - fs.f_bfree) * fs.f_frsize

    def _sample(self) -> None:
        self.peak = max(self.peak, self.used())
        self.unlinked = max(self.unlinked, self.open_unlinked() - self._unlinked_start)
        self.fs_growth = max(self.fs_growth, self._fs_used() - self._fs_start)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def __enter__(self) -> DiskWatch:
        self._fs_start, self._unlinked_start = self._fs_used(), self.open_unlinked()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def run_python(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    """Run ``python <args>`` in a fresh interpreter; assert it succeeded and return its stdout."""
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout
