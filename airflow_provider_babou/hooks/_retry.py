"""The retry policy (``docs/design.md``, BabouHook): what is retried, how long to pause, and the
one *retry window* every level of a call shares (``retry_deadline`` from its outermost start)."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import threading
import time
from collections.abc import Iterator

import tenacity

from airflow_provider_babou.connection import ClientConfig
from airflow_provider_babou.exceptions import BabouError, BabouServerError, BabouTransportError
from airflow_provider_babou.hooks._http import was_not_sent

# A POST answered with one of these surely did not take effect: the server refused it up front.
POST_SAFE_STATUSES = frozenset({429, 503})


def is_ambiguous(error: BaseException) -> bool:
    """Whether a failed POST may nonetheless have taken effect (a timeout or drop, 500/502/504)."""
    if isinstance(error, BabouTransportError):
        return not was_not_sent(error)
    return isinstance(error, BabouServerError) and error.http_status not in POST_SAFE_STATUSES


def is_retryable(method: str, error: BaseException, *, restartable: bool = True) -> bool:
    """The retry rule: GETs retry every transient fault, POSTs only what surely did not take effect."""
    if not isinstance(error, BabouError) or not restartable:
        return False
    if method == "GET":
        return error.transient
    return was_not_sent(error) or error.http_status in POST_SAFE_STATUSES


def backoff(attempt: int, retry_after: float | None, cap: float) -> float:
    """Seconds before try ``attempt + 1``: ``Retry-After`` if given, else exponential from 0.5 s with
    jitter; at most ``cap``."""
    if retry_after is not None:
        return min(float(retry_after), cap)
    ceiling = min(cap, 0.5 * 2 ** min(attempt - 1, 30))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class RetryTiming:
    """The hook's retry timing; needs ``config`` (the connection) and ``deadline`` (UNIX time or None)."""

    deadline: float | None
    _window: threading.local

    @property
    def config(self) -> ClientConfig:  # the hook's
        raise NotImplementedError

    def _backoff(self, attempt: int, error: BaseException | None) -> float:
        """:func:`backoff` with the connection's ``max_backoff`` and the error's ``Retry-After``."""
        return backoff(attempt, getattr(error, "retry_after", None), self.config.max_backoff)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        """Stop when the next sleep would pass the retry window, :attr:`deadline` or ``max_retries``."""
        config, sleep = self.config, state.upcoming_sleep or 0.0
        if time.monotonic() + sleep > getattr(self._window, "give_up", -math.inf):
            return True
        if config.max_retries is not None and state.attempt_number > config.max_retries:
            return True
        return sleep >= self._left()

    def _left(self) -> float:  # seconds until :attr:`deadline`
        return math.inf if self.deadline is None else self.deadline - time.time()

    @contextlib.contextmanager
    def retry_window(self) -> Iterator[float]:
        """Yield the ``time.monotonic()`` after which no retry starts: the enclosing call's, or
        ``retry_deadline`` from now for an outermost call (the calls made inside share it)."""
        outer = getattr(self._window, "give_up", None)
        if outer is not None:
            yield outer
            return
        self._window.give_up = time.monotonic() + self.config.retry_deadline
        try:
            yield self._window.give_up
        finally:
            del self._window.give_up

    def attempts(self) -> Iterator[int]:
        """Count the attempts of a step retried whole, with backoff, within the retry window."""
        with self.retry_window() as give_up:
            pass  # the enclosing window's end, or one that starts now
        for attempt in itertools.count(1):
            yield attempt
            pause = self._backoff(attempt, None)
            if pause >= self._left() or time.monotonic() + pause > give_up:
                return
            time.sleep(pause)
