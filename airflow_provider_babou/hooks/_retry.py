"""When and how a request is retried: :func:`should_retry` and :class:`RetryPolicy` (tenacity)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from airflow_provider_babou.exceptions import BabouError, BabouTransportError
from airflow_provider_babou.hooks._errors import (
    POST_SAFE_STATUSES,
    RETRYABLE_STATUSES,
    TRANSIENT_ERRORS,
    was_not_sent,
)
from airflow_provider_babou.hooks._instructions import Call

log = logging.getLogger("airflow_provider_babou.hooks.babou")


def should_retry(call: Call, error: BaseException) -> bool:
    """The retry rule: GETs retry every transient fault, POSTs only what surely did not take effect."""
    if call.retry == "never" or not isinstance(error, BabouError):
        return False
    if call.body is not None and not call.body.restartable:
        return False
    if isinstance(error, BabouTransportError):
        if call.method == "GET":
            return isinstance(error.__cause__, TRANSIENT_ERRORS)
        return was_not_sent(error)
    if error.http_status is None or error.http_status not in RETRYABLE_STATUSES:
        return False
    return call.method == "GET" or error.http_status in POST_SAFE_STATUSES


@dataclass
class RetryPolicy:
    """One retry policy, handed to both ``tenacity.Retrying`` and ``tenacity.AsyncRetrying``.

    Exponential backoff with jitter (``0.5 s * 2**n``, halved at random), replaced by the server's
    ``Retry-After`` when given; every wait is capped by ``max_backoff``, attempts by
    ``max_retries`` and the whole sequence by ``deadline`` seconds.
    """

    max_retries: int
    max_backoff: float
    deadline: float
    base: float = 0.5

    def wait(self, retry_state: Any) -> float:
        """Seconds to wait before the next attempt."""
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.max_backoff))
        ceiling = min(self.max_backoff, self.base * 2 ** (retry_state.attempt_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def tenacity_kwargs(self, call: Call) -> dict[str, Any]:
        """Keyword arguments for ``Retrying``/``AsyncRetrying`` to run ``call``."""
        import tenacity

        def before_sleep(retry_state: Any) -> None:
            error = retry_state.outcome.exception()
            status = getattr(error, "http_status", None) or type(getattr(error, "__cause__", None)).__name__
            delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
            log.warning(
                "Babou %s %s failed (%s); retry %d/%d in %.2fs",
                call.method,
                _display_path(call),
                status,
                retry_state.attempt_number,
                self.max_retries,
                delay,
            )

        return {
            "retry": tenacity.retry_if_exception(lambda exc: should_retry(call, exc)),
            "wait": self.wait,
            "stop": tenacity.stop_after_attempt(self.max_retries + 1)
            | tenacity.stop_before_delay(self.deadline),
            "before_sleep": before_sleep,
            "reraise": True,
        }


def _display_path(call: Call) -> str:
    return httpx.URL(call.url).path if call.url else call.path
