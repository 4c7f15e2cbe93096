"""The request budget of one API key on this host: an adaptive token bucket, and its gates.

Babou limits requests per key and answers 429 past the limit. Every request on a key first takes
a token from that key's :class:`KeyBudget` (one per base URL and key, shared by every hook, sensor
and trigger of the process). Its state lives in a small file per key (:func:`state_file`), read
and written under ``flock``, so every process of the host on the key (LocalExecutor and Celery
workers, triggerers) takes from one bucket and together they stay at ``rate_limit``. A 429 pauses
the whole key until its ``Retry-After`` (cut to the connection's ``max_backoff``) and halves the
rate; each quiet second raises it again by a twentieth of the ceiling (AIMD, as TCP does), so
hosts sharing one key settle near their fair share from the 429s each one sees.

Waiters are served most-overdue first (:class:`AsyncGate`), so under a short budget the lag of
N waits is bounded by N / rate rather than by luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import math
import os
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from types import ModuleType

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not on Windows: budgets stay in-process there
    fcntl = None

log = logging.getLogger(__name__)

#: Seconds ``take`` asks a caller to come back after, when another process holds the shared state.
BUSY_DELAY = 0.001
#: Seconds the other operations wait for the shared state's lock (it is held for microseconds).
SYNC_WAIT = 0.05
#: Where the shared budgets live: a directory, or ``off`` for budgets of this process only.
BUDGET_DIR_ENV = "BABOU_BUDGET_DIR"
_OFF = frozenset({"off", "0", "false", "no", "none"})
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


class KeyBudget:
    """A token bucket whose rate adapts to 429s (additive increase, multiplicative decrease).

    :param rate: the ceiling, requests per second; the rate starts there.
    :param burst: tokens that can be saved up (default: one second's worth).
    :param state_file: share the bucket with every process of this host that names the same file
        (:func:`budget_for` names one per key); ``None``: this process's own bucket. A file that
        cannot be opened or written leaves the budget in-process, with one warning per process.
    """

    def __init__(self, rate: float, burst: float | None = None, *, state_file: str | None = None) -> None:
        self.max_rate = rate
        self.rate = rate
        self.min_rate = min(1.0, rate)
        self.capacity = max(1.0, burst if burst is not None else rate)
        self.tokens = self.capacity
        now = time.monotonic()
        self._updated = now
        self._last_cut = -1.0
        self._quiet_since = now
        self.paused_until = 0.0
        #: A pause this process knows of even if the shared file could not record it.
        self._held_until = 0.0
        self._lock = threading.Lock()
        self._shared = _StateFile.open(state_file) if state_file is not None else None
        if self._shared is not None:
            with self._lock, self._synced(now, wait=SYNC_WAIT):
                pass  # adopt the host's state, or publish this fresh one

    @property
    def shared(self) -> bool:
        """Whether the bucket is shared with the other processes of this host."""
        return self._shared is not None

    @contextlib.contextmanager
    def _synced(self, now: float, *, wait: float) -> Iterator[bool]:
        """Load the host's state under the file's lock (tried for ``wait`` seconds), write it back after.

        Yields whether the body may act: ``False`` only when the lock stayed busy. An in-process
        budget, or one whose file just failed (it becomes in-process), acts on its own state.
        """
        shared = self._shared
        if shared is None:
            yield True
            return
        try:
            locked = shared.lock(wait)
            state = shared.read(now) if locked else None
        except OSError as exc:
            self._give_up_sharing(exc)  # closing the file releases its lock
            yield True
            return
        if not locked:
            yield False
            return
        if state is not None:
            self._load(state)
        try:
            yield True
            shared.write(self._dump())
        except OSError as exc:  # of the write: the body raises none
            self._give_up_sharing(exc)
        finally:
            shared.unlock()

    def _give_up_sharing(self, exc: OSError) -> None:
        if self._shared is not None:
            self._shared.close()
            self._shared = None
            _warn_once(f"the shared request budget file became unusable ({exc.strerror or exc})")

    def _load(self, state: tuple[float, ...]) -> None:
        max_rate, rate, tokens, updated, paused_until, quiet_since, last_cut = state
        self.max_rate, self.min_rate = max_rate, min(1.0, max_rate)
        self.rate = min(rate, max_rate)
        self.tokens = min(tokens, self.capacity)
        self._updated, self.paused_until = updated, paused_until
        self._quiet_since, self._last_cut = quiet_since, last_cut

    def _dump(self) -> tuple[float, ...]:
        return (
            self.max_rate,
            self.rate,
            self.tokens,
            self._updated,
            self.paused_until,
            self._quiet_since,
            self._last_cut,
        )

    def reset(self) -> None:
        """Forget every pause and slowdown: back to a full bucket at the ceiling rate (on the host too)."""
        now = time.monotonic()
        with self._lock, self._synced(now, wait=SYNC_WAIT):
            self.rate, self.tokens, self.paused_until, self._held_until = (
                self.max_rate,
                self.capacity,
                0.0,
                0.0,
            )
            self._updated = self._quiet_since = now
            self._last_cut = -1.0

    def retarget(self, rate: float) -> None:
        """Move the ceiling to ``rate``; the current rate only ever drops here."""
        with self._lock, self._synced(time.monotonic(), wait=SYNC_WAIT):
            self.max_rate, self.rate, self.min_rate = rate, min(self.rate, rate), min(1.0, rate)

    def take(self, now: float | None = None) -> float:
        """Take a token and return 0, or return the seconds until one may be taken (none taken).

        Never blocks: while another process of the host holds the shared state, it answers
        :data:`BUSY_DELAY` (a millisecond) without a token.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            if now < self._held_until:
                return self._held_until - now
            with self._synced(now, wait=0.0) as held:
                if not held:
                    return BUSY_DELAY
                if now < self.paused_until:
                    return self.paused_until - now
                if now > self._updated:
                    self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
                    self._updated = now
                if self.tokens >= 1.0:
                    if self.tokens >= self.capacity:
                        # Babou's bucket, full too, refills from when this request arrives, not
                        # from now: ours starts a token's time late, so a slow first request
                        # (a new connection) cannot leave Babou's a fraction short for the next.
                        self._updated = now + 1.0 / self.rate
                    self.tokens -= 1.0
                    return 0.0
                return (1.0 - self.tokens) / self.rate + max(0.0, self._updated - now)

    def throttled(
        self, retry_after: float | None, now: float | None = None, *, longest: float | None = None
    ) -> None:
        """A 429: pause the key until ``Retry-After`` (1 s if absent), at most ``longest`` seconds (the
        connection's ``max_backoff``: no single answer stalls the key longer), and halve the rate
        (once a second)."""
        now = time.monotonic() if now is None else now
        pause = retry_after if retry_after is not None else 1.0
        if longest is not None:
            pause = min(pause, longest)
        with self._lock:
            self._held_until = max(self._held_until, now + pause)  # here, even if the file is busy
            with self._synced(now, wait=SYNC_WAIT):
                self.paused_until = max(self.paused_until, now + pause)
                self.tokens = 0.0  # resume at the rate, without a burst that would earn more 429s
                self._updated = max(now, self.paused_until)
                if now - self._last_cut >= 1.0 or self.rate == self.max_rate:
                    self.rate = max(self.min_rate, self.rate / 2)
                    self._last_cut = now
                # Quiet time, which earns the rate back, counts from the end of the pause.
                self._quiet_since = max(now, self.paused_until)

    def succeeded(self, now: float | None = None) -> None:
        """An answer that was not a 429: after each quiet second, raise the rate towards the ceiling."""
        now = time.monotonic() if now is None else now
        with self._lock:
            # The view of the last take (a request ago) says whether there is anything to raise.
            if self.rate >= self.max_rate or now - self._quiet_since < 1.0:
                return
            with self._synced(now, wait=0.0):  # a busy file: the next answer raises it
                if self.rate < self.max_rate and now - self._quiet_since >= 1.0:
                    self.rate = min(self.max_rate, self.rate + self.max_rate / 20)
                    self._quiet_since = now

    def wait_sync(self, deadline: float | None = None) -> None:
        """Block until a token is taken; ``TimeoutError`` rather than wait past ``deadline`` (monotonic)."""
        while (delay := self.take()) > 0:
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"the key's request budget has no token for {delay:.1f} s")
            time.sleep(delay)


_warned = False


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "Babou: %s; request budgets are kept per process, so several processes on one key may "
            "together exceed its rate_limit (set %s to a writable directory, or to 'off')",
            reason,
            BUDGET_DIR_ENV,
        )


def _epoch() -> float:
    """Wall time at monotonic 0: the same for every process of one boot (to clock steps)."""
    return time.time() - time.monotonic()


class _StateFile:
    """One key's bucket state in a small file of the host, locked with ``flock`` while read and written.

    The file holds numbers only: a format tag, the clock's offset from wall time, then the bucket
    (ceiling, rate, tokens, last update, pause end, quiet since, last cut; monotonic seconds, which
    every process of the host shares). Unreadable, truncated or foreign content, or times of
    another boot, count as no state: the next writer replaces them.
    """

    FORMAT = struct.Struct("<8s8d")
    TAG = b"babou-b1"
    #: Seconds wall time may move against the monotonic clock before the state counts as another
    #: boot's (a clock step or a suspend only restart the bucket).
    EPOCH_SLACK = 60.0

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path, self.pid = fd, path, os.getpid()
        self._resize = False

    @classmethod
    def open(cls, path: str) -> _StateFile | None:
        """Open (create, 0600) the file, or warn once and return ``None``: a budget of this process."""
        if fcntl is None:
            _warn_once("this platform has no fcntl.flock")
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
        except OSError as exc:
            _warn_once(f"cannot open the shared request budget {path} ({exc.strerror or exc})")
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            os.close(fd)
            _warn_once(f"the shared request budget {path} is not a private file of this user")
            return None
        return cls(fd, path)

    def _fd(self) -> int:
        if self.pid != os.getpid():  # a forked child: flock is per open file, so open its own
            self.fd, self.pid = os.open(self.path, os.O_RDWR | _OPEN_FLAGS), os.getpid()
        return self.fd

    def lock(self, wait: float) -> bool:
        """Take the exclusive lock, trying for ``wait`` seconds at most; whether it was taken."""
        assert fcntl is not None
        fd, end = self._fd(), time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= end:
                    return False
                time.sleep(0.0002)

    def unlock(self) -> None:
        assert fcntl is not None
        if self.fd >= 0:  # closed: its lock went with it
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def read(self, now: float) -> tuple[float, ...] | None:
        """The state in the file, or ``None`` when there is none this boot can use."""
        data = os.pread(self.fd, self.FORMAT.size + 1, 0)
        if len(data) != self.FORMAT.size:
            self._resize = len(data) > self.FORMAT.size
            return None
        tag, epoch, *state = self.FORMAT.unpack(data)
        if tag != self.TAG or not all(math.isfinite(x) for x in (epoch, *state)):
            return None
        if abs(epoch - _epoch()) > self.EPOCH_SLACK:
            return None  # written in another boot (or before a clock step): start afresh
        max_rate, rate, tokens, updated, paused_until = state[:5]
        # A pause or an update can lie ahead of now, by a pause (max_backoff, a day at most).
        ahead = max(updated, paused_until) - now
        if not (0 < rate <= max_rate and tokens >= 0 and ahead <= 86_400):
            return None
        return tuple(state)

    def write(self, state: tuple[float, ...]) -> None:
        """Replace the state (under the lock)."""
        os.pwrite(self.fd, self.FORMAT.pack(self.TAG, _epoch(), *state), 0)
        if self._resize:
            os.ftruncate(self.fd, self.FORMAT.size)
            self._resize = False

    def close(self) -> None:
        fd, self.fd = self.fd, -1  # unlock() after close() touches no other file
        with contextlib.suppress(OSError):
            os.close(fd)


class AsyncGate:
    """Hands a key's tokens to the waiting coroutines of one event loop, most overdue first."""

    def __init__(self, budget: KeyBudget) -> None:
        self.budget = budget
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None

    async def acquire(self, due: float, timeout: float) -> None:
        """Wait for a token; ``due`` (monotonic) is when the caller wanted to go: earliest goes first.

        :raises TimeoutError: no token within ``timeout`` seconds.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (due, next(self._order), future))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        await asyncio.wait_for(future, timeout)

    async def _dispatch(self) -> None:
        queue = self._queue
        while queue:
            if queue[0][2].done():  # its waiter gave up (timeout or cancellation)
                heapq.heappop(queue)
                continue
            delay = self.budget.take()
            if delay > 0:
                # In short naps, so a queue whose waiters all gave up lets the dispatcher end.
                await asyncio.sleep(min(delay, 1.0))
                continue
            heapq.heappop(queue)[2].set_result(None)


_budgets: dict[tuple[str, str], KeyBudget] = {}
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], AsyncGate]] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()


def budget_key(base_url: str, api_key: str) -> tuple[str, str]:
    """Key a budget by base URL and a digest of the API key (the key itself is kept nowhere new)."""
    return base_url, hashlib.sha256(api_key.encode()).hexdigest()


def budget_for(key: tuple[str, str], rate: float) -> KeyBudget:
    """The budget of ``key``, created at ``rate`` on first use: shared by the processes of this host
    (see :func:`state_file`), or this process's own.

    One budget per key: a caller with another ``rate_limit`` (an edited connection) moves its
    ceiling, and never loses its pause or slowdown; a higher ceiling is reached by the usual
    additive steps.
    """
    with _registry_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = KeyBudget(rate, state_file=state_file(key))
        if rate != budget.max_rate:  # a shared budget starts at the host's ceiling
            budget.retarget(rate)
        return budget


def state_file(key: tuple[str, str]) -> str | None:
    """The file that shares ``key``'s budget between the processes of this host, or ``None``.

    It lies in ``$BABOU_BUDGET_DIR``, by default ``<temp dir>/airflow-babou-budget-<uid>`` (0700,
    created here), and is named by a digest of the base URL and the key's digest: the key is in
    neither name nor content. ``BABOU_BUDGET_DIR=off``, or a directory that is not this user's
    alone, or none at all, keeps budgets per process (with one warning for the last two).
    """
    chosen = os.environ.get(BUDGET_DIR_ENV, "").strip()
    if chosen.lower() in _OFF:
        return None
    getuid = getattr(os, "getuid", None)
    if fcntl is None or getuid is None:
        _warn_once("this platform has no fcntl.flock")
        return None
    directory = chosen or os.path.join(tempfile.gettempdir(), f"airflow-babou-budget-{getuid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory) if chosen else os.lstat(directory)  # the default: no symlink
    except OSError as exc:
        _warn_once(f"cannot create the request budget directory {directory} ({exc.strerror or exc})")
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != getuid() or info.st_mode & 0o022:
        _warn_once(f"the request budget directory {directory} is not this user's alone")
        return None
    base_url, key_digest = key
    return os.path.join(directory, hashlib.sha256(f"{base_url}\n{key_digest}".encode()).hexdigest())


def reset_budgets() -> None:
    """Reset every key budget of this process, and the host's state of the shared ones (a test's
    fresh emulator starts with fresh budgets)."""
    with _registry_lock:
        for budget in _budgets.values():
            budget.reset()


def gate_for(key: tuple[str, str], rate: float) -> AsyncGate:
    """The running loop's gate on the process-wide budget of ``key``."""
    gates = _gates.setdefault(asyncio.get_running_loop(), {})
    budget = budget_for(key, rate)
    if key not in gates:
        gates[key] = AsyncGate(budget)
    return gates[key]
