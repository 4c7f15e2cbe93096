"""The request budget of one API key in this process: an adaptive token bucket, and its gates.

Babou limits requests per key and answers 429 past the limit. Every request of this process on a
key first takes a token from that key's :class:`KeyBudget` (one per base URL and key, shared by
every hook, sensor and trigger here). A 429 pauses the whole key until its ``Retry-After`` (cut to
the connection's ``max_backoff``) and halves the rate; each quiet second raises it again by a
twentieth of the ceiling (AIMD, as TCP does), so several processes on one key settle near their
fair share from the 429s each one sees.

Waiters are served most-overdue first (:class:`AsyncGate`), so under a short budget the lag of
N waits is bounded by N / rate rather than by luck.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import threading
import time
import weakref


class KeyBudget:
    """A token bucket whose rate adapts to 429s (additive increase, multiplicative decrease).

    :param rate: the ceiling, requests per second; the rate starts there.
    :param burst: tokens that can be saved up (default: one second's worth).
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
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
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every pause and slowdown: back to a full bucket at the ceiling rate."""
        with self._lock:
            now = time.monotonic()
            self.rate, self.tokens, self.paused_until = self.max_rate, self.capacity, 0.0
            self._updated = self._quiet_since = now
            self._last_cut = -1.0

    def retarget(self, rate: float) -> None:
        """Move the ceiling to ``rate``; the current rate only ever drops here."""
        with self._lock:
            self.max_rate, self.rate, self.min_rate = rate, min(self.rate, rate), min(1.0, rate)

    def take(self, now: float | None = None) -> float:
        """Take a token and return 0, or return the seconds until one may be taken (none taken)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now < self.paused_until:
                return self.paused_until - now
            if now > self._updated:
                self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
                self._updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate

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
            if self.rate < self.max_rate and now - self._quiet_since >= 1.0:
                self.rate = min(self.max_rate, self.rate + self.max_rate / 20)
                self._quiet_since = now

    def wait_sync(self, deadline: float | None = None) -> None:
        """Block until a token is taken; ``TimeoutError`` rather than wait past ``deadline`` (monotonic)."""
        while (delay := self.take()) > 0:
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"the key's request budget has no token for {delay:.1f} s")
            time.sleep(delay)


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
    """The process-wide budget of ``key``, created at ``rate`` on first use.

    One budget per key: a caller with another ``rate_limit`` (an edited connection) moves its
    ceiling, and never loses its pause or slowdown; a higher ceiling is reached by the usual
    additive steps.
    """
    with _registry_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = KeyBudget(rate)
        elif rate != budget.max_rate:
            budget.retarget(rate)
        return budget


def reset_budgets() -> None:
    """Reset every key budget of this process (a test's fresh emulator starts with fresh budgets)."""
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
