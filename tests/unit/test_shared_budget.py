"""The key budget shared by the processes of one host (``_budget.state_file``, ``KeyBudget(state_file=)``).

Real processes (``tests/unit/budget_worker.py``) take from one key's budget; every bound on counts
is generous, and no assertion depends on how fast this machine is.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.budget import KeyBudget
from tests.conftest import REPO
from tests.unit.budget_worker import BASE_URL, KEY, RATE

KEY_ID = _budget.budget_key(BASE_URL, KEY)


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry of this test's own (the budget directory is the test's own already: tests/conftest.py)."""
    monkeypatch.setattr(_budget, "_budgets", {})
    monkeypatch.setattr(_budget, "_warned", False)


class Worker:
    """A ``budget_worker`` process on the test's budget directory."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.unit.budget_worker"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def start(workers: list[Worker], count: int) -> list[Worker]:
    new = [Worker() for _ in range(count)]
    workers.extend(new)
    assert [w.line() for w in new] == ["ready"] * count  # each joined the shared budget
    return new


def test_processes_on_one_key_share_its_rate(workers: list[Worker]) -> None:
    # 4 processes take every token they can for 2 s at rate 20 (burst 20): about 20 + 2 x 20 in all,
    # where budgets of their own would give each of them as many (240 in all).
    procs = start(workers, 4)
    end = time.monotonic() + 2.0
    for w in procs:
        w.send(f"take {end}")
    counts = [int(w.line()) for w in procs]
    assert sum(counts) <= RATE + 2.0 * RATE + 2  # the bucket's bound (a token of float slack)
    assert sum(counts) >= 30  # a loaded machine may start the workers late, never this late


def test_a_429_seen_by_one_process_pauses_the_others(workers: list[Worker]) -> None:
    here = _budget.budget_for(KEY_ID, RATE)
    assert here.shared
    assert here.take() == 0.0
    (other,) = start(workers, 1)
    other.send("throttle 30")
    assert other.line() == "done"
    assert here.take() > 25  # this process learns the pause from the host's state
    assert here.rate == RATE / 2  # and the halved rate
    # Another process joining later sees it too.
    fresh = KeyBudget(RATE, state_file=_budget.state_file(KEY_ID))
    assert fresh.take() > 25


def test_reset_budgets_resets_the_hosts_state(workers: list[Worker]) -> None:
    here = _budget.budget_for(KEY_ID, RATE)
    here.throttled(30.0)
    _budget.reset_budgets()
    procs = start(workers, 1)
    procs[0].send(f"take {time.monotonic() + 0.2}")
    assert int(procs[0].line()) >= RATE  # a full bucket, no pause
    assert here.take() < 1.0  # and this process's own view: no pause


def test_the_file_is_private_and_holds_no_key(fresh_budget_dir: Path) -> None:
    budget = _budget.budget_for(KEY_ID, RATE)
    budget.throttled(1.0)
    (path,) = fresh_budget_dir.iterdir()
    assert path == Path(_budget.state_file(KEY_ID) or "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    key_digest = KEY_ID[1]
    for secret in (KEY, KEY[len("sk-bab-") :], key_digest):
        assert secret not in path.name
        assert secret.encode() not in content
    assert BASE_URL.encode() not in content  # numbers only


def test_the_default_directory_is_this_users_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(_budget.BUDGET_DIR_ENV)
    monkeypatch.setattr(_budget.tempfile, "gettempdir", lambda: str(tmp_path))
    path = Path(_budget.state_file(KEY_ID) or "")
    assert path.parent == tmp_path / f"airflow-babou-budget-{os.getuid()}"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_off_keeps_budgets_per_process(monkeypatch: pytest.MonkeyPatch, fresh_budget_dir: Path) -> None:
    monkeypatch.setenv(_budget.BUDGET_DIR_ENV, "off")
    budget = _budget.budget_for(KEY_ID, RATE)
    assert not budget.shared
    budget.throttled(5.0)
    assert list(fresh_budget_dir.iterdir()) == []


# -- what goes wrong falls back safely -------------------------------------------------------------


def garbage() -> list[bytes]:
    fmt = _budget._StateFile.FORMAT
    epoch = time.time() - time.monotonic()
    now = time.monotonic()
    return [
        b"",
        b"not a budget at all",
        b"\x00" * fmt.size,
        b"\xff" * (fmt.size * 3),
        fmt.pack(_budget._StateFile.TAG, epoch, 20, math.nan, 5, now, 0, now, -1),  # NaN rate
        fmt.pack(_budget._StateFile.TAG, epoch, 20, 40, 5, now, 0, now, -1),  # rate above its ceiling
        fmt.pack(_budget._StateFile.TAG, epoch, 20, 20, -3, now, 0, now, -1),  # negative tokens
        fmt.pack(_budget._StateFile.TAG, epoch, 20, 20, 0, now, now + 1e9, now, -1),  # a pause of decades
        fmt.pack(_budget._StateFile.TAG, epoch - 3600, 20, 20, 0, now, now + 600, now, -1),  # another boot
        fmt.pack(b"other-v9", epoch, 20, 20, 0, now, now + 600, now, -1),  # another format
    ]


@pytest.mark.parametrize("content", garbage(), ids=range(len(garbage())))
def test_unusable_content_counts_as_no_state_and_is_replaced(content: bytes) -> None:
    path = Path(_budget.state_file(KEY_ID) or "")
    path.write_bytes(content)
    path.chmod(0o600)
    budget = _budget.budget_for(KEY_ID, RATE)
    assert budget.shared
    assert [budget.take() for _ in range(int(RATE))] == [0.0] * int(RATE)  # a fresh full bucket
    assert budget.take() > 0
    # Rewritten with a state the next process can use.
    assert len(path.read_bytes()) == _budget._StateFile.FORMAT.size
    assert KeyBudget(RATE, state_file=str(path)).take() > 0


def test_a_directory_that_cannot_be_made_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(_budget.BUDGET_DIR_ENV, str(blocker / "budgets"))  # read-only FS alike
    with caplog.at_level(logging.WARNING, logger=_budget.__name__):
        one = _budget.budget_for(KEY_ID, RATE)
        two = _budget.budget_for(_budget.budget_key(BASE_URL, KEY + "2"), RATE)
    assert not one.shared
    assert not two.shared
    assert one.take() == 0.0  # an in-process bucket still paces
    assert len(caplog.records) == 1
    assert "request budgets are kept per process" in caplog.text
    assert KEY not in caplog.text


def test_a_directory_others_may_write_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shared_dir = tmp_path / "open"
    shared_dir.mkdir()
    shared_dir.chmod(0o777)
    monkeypatch.setenv(_budget.BUDGET_DIR_ENV, str(shared_dir))
    assert _budget.state_file(KEY_ID) is None
    assert not _budget.budget_for(KEY_ID, RATE).shared


def test_a_file_others_may_write_or_cannot_open_is_not_used(fresh_budget_dir: Path) -> None:
    path = Path(_budget.state_file(KEY_ID) or "")
    path.write_bytes(b"")
    path.chmod(0o666)
    assert not KeyBudget(RATE, state_file=str(path)).shared
    path.unlink()
    path.mkdir()  # EISDIR
    assert not KeyBudget(RATE, state_file=str(path)).shared
    path.rmdir()
    path.symlink_to(fresh_budget_dir / "elsewhere")  # never followed
    assert not KeyBudget(RATE, state_file=str(path)).shared


def test_a_file_that_fails_later_leaves_the_budget_in_process(caplog: pytest.LogCaptureFixture) -> None:
    budget = _budget.budget_for(KEY_ID, RATE)
    assert budget._shared is not None
    os.close(budget._shared.fd)  # as an I/O error would
    with caplog.at_level(logging.WARNING, logger=_budget.__name__):
        assert budget.take() == 0.0
    assert not budget.shared
    assert "became unusable" in caplog.text
    budget.throttled(5.0)
    assert budget.take() > 4  # still paced here


@pytest.mark.parametrize("call", ["pread", "pwrite"])
def test_a_read_or_write_error_leaves_the_budget_in_process(
    monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    budget = _budget.budget_for(KEY_ID, RATE)

    def failing(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_budget.os, call, failing)
    assert budget.take() == 0.0  # served from the process's own state
    assert not budget.shared
    budget.throttled(5.0)
    assert budget.take() > 4


def test_take_never_blocks_on_a_busy_file() -> None:
    import fcntl

    budget = _budget.budget_for(KEY_ID, RATE)
    path = _budget.state_file(KEY_ID) or ""
    holder = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process holds the state
        started = time.monotonic()
        assert budget.take() == _budget.BUSY_DELAY
        # A 429 while the file is busy still pauses this process (the host learns it later).
        budget.throttled(5.0)
        assert budget.take() > 4
        assert time.monotonic() - started < 1.0  # the 429 waited SYNC_WAIT (50 ms) at most
    finally:
        os.close(holder)
