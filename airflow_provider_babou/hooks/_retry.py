"""The retry policy: which failures are retried (:func:`is_retryable`; what is transient is
``BabouError.transient``), how long to pause (:func:`backoff`, for requests and resumed downloads),
and one deadline for a whole call. (A wait retries a failed poll with its next poll:
:meth:`~airflow_provider_babou.polling.WaitClock.failed`.)

A call may retry at several levels (a reconciled POST re-sends, and each of its requests retries
too). They share one *retry window*: ``retry_deadline`` seconds from the start of the outermost
call, after which no retry starts at any level, and nothing sleeps past the hook's ``deadline``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import tenacity

from airflow_provider_babou.connection import ClientConfig
from airflow_provider_babou.exceptions import BabouError, BabouServerError, BabouTransportError
from airflow_provider_babou.hooks._http import was_not_sent

T = TypeVar("T")

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
    """Seconds before try ``attempt + 1`` after a transient failure (requests and resumed downloads
    alike): the server's ``Retry-After`` when it gave one, else exponential from 0.5 s
    with jitter; at most ``cap`` either way."""
    if retry_after is not None:
        return min(float(retry_after), cap)
    ceiling = min(cap, 0.5 * 2 ** min(attempt - 1, 30))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class RetryTiming:
    """The hook's retry timing; needs ``config`` (the connection) and ``deadline`` (UNIX time or None)."""

    deadline: float | None
    _window: threading.local

    @property
    def config(self) -> ClientConfig:
        """The resolved connection (the hook's)."""
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

    def _left(self) -> float:
        """Seconds until :attr:`deadline` (infinite without one)."""
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
        """Count the attempts of a step retried whole, with backoff, within the retry window (wrap
        the loop in :meth:`retry_window` so the requests inside share its deadline)."""
        with self.retry_window() as give_up:
            pass  # the enclosing window's end, or one that starts now
        for attempt in itertools.count(1):
            yield attempt
            pause = self._backoff(attempt, None)
            if pause >= self._left() or time.monotonic() + pause > give_up:
                return
            time.sleep(pause)


def in_one_retry_window(method: Callable[..., T]) -> Callable[..., T]:
    """Run a hook method in one :meth:`RetryTiming.retry_window`, every request in it included."""

    @functools.wraps(method)
    def call(self: RetryTiming, *args: Any, **kwargs: Any) -> T:
        with self.retry_window():
            return method(self, *args, **kwargs)

    return call
