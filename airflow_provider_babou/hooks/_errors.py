"""Failures as typed errors: HTTP error responses, ``Retry-After``, transport errors.

Also the two judgements every retry and reconciliation decision rests on: whether a failed
request surely never reached the server (:func:`was_not_sent`), and whether a failed POST may
nonetheless have taken effect (:func:`is_ambiguous`).
"""

from __future__ import annotations

import email.utils
import html
import json
import re
import time
from datetime import timezone
from typing import Any

import httpx

from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouConflictError,
    BabouError,
    BabouNotFoundError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouValidationError,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# A POST answered with one of these surely did not take effect: the server refused it up front.
POST_SAFE_STATUSES = frozenset({429, 503})
# Transport errors raised before the request could reach the server.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")


def non_json_message(response: httpx.Response, text: str) -> str:
    head = f"{response.status_code} {response.reason_phrase or ''}".strip()
    cleaned = _SPACE_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", text))).strip()
    if not cleaned:
        return f"{head} (empty body)"
    return f"{head} (non-JSON body: {cleaned[:200]})"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read ``Retry-After`` as integer seconds or an HTTP-date; ``None`` when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_AUTH_HINTS = {
    "INVALID_API_KEY_FORMAT": "Babou keys start with 'sk-bab-'; copy the key again from the dashboard",
    "API_KEY_EXPIRED": "the key has expired: create a new one in the Babou dashboard "
    "(Settings -> API Keys) and store it in the connection",
    "UNAUTHORIZED": "the key is unknown or revoked: check the connection's API Key",
}


def error_for_response(response: httpx.Response, method: str, secret: str | None = None) -> BabouError:
    """Map an error response to the typed exception, JSON envelope or not.

    :param secret: the API key, scrubbed from any text the server echoed (defence in depth).
    """
    status = response.status_code
    path = response.request.url.path if response.request is not None else ""
    text = response.text if response.content else ""
    payload: Any = None
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    code = hint = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), (str, dict)):
        err = payload["error"]
        if isinstance(err, dict):  # tolerate a nested envelope, though the docs say flat
            payload = {**payload, **err}
            err = err.get("message") or err.get("error") or ""
        message = str(err) or response.reason_phrase
        code = payload.get("code") if isinstance(payload.get("code"), str) else None
        hint = payload.get("hint") if isinstance(payload.get("hint"), str) else None
    else:
        message = non_json_message(response, text)
    if secret:
        message = message.replace(secret, "***")
        hint = hint.replace(secret, "***") if hint else hint
    kwargs: dict[str, Any] = {
        "http_status": status,
        "code": code,
        "hint": hint,
        "method": method,
        "path": path,
    }
    if status == 401:
        kwargs["hint"] = hint or _AUTH_HINTS.get(code or "", _AUTH_HINTS["UNAUTHORIZED"])
        return BabouAuthError(message, **kwargs)
    if status == 404:
        return BabouNotFoundError(message, **kwargs)
    if status == 409:
        return BabouConflictError(message, **kwargs)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return BabouRateLimitError(message, retry_after=retry_after, **kwargs)
    if status >= 500:
        return BabouServerError(message, **kwargs)
    if status in (400, 413, 422) or 400 <= status < 500:
        return BabouValidationError(message, **kwargs)
    return BabouError(message, **kwargs)


def transport_error(exc: Exception, method: str, url: httpx.URL | str) -> BabouTransportError:
    """Wrap an httpx transport failure; the original stays as ``__cause__`` for retry decisions."""
    path = httpx.URL(url).path
    kind = type(exc).__name__
    detail = str(exc) or kind
    if isinstance(exc, NOT_SENT_ERRORS):
        hint = "check that the Base URL is right and the host is reachable"
    elif isinstance(exc, httpx.TimeoutException):
        hint = "the request timed out; raise the connection's timeout extra if this persists"
    else:
        hint = "the connection failed mid-request"
    error = BabouTransportError(f"{kind}: {detail}", method=method, path=path, hint=hint)
    error.__cause__ = exc
    return error


def was_not_sent(error: BaseException) -> bool:
    """Whether a failure surely happened before the request reached the server."""
    return isinstance(error, BabouTransportError) and isinstance(error.__cause__, NOT_SENT_ERRORS)


def is_ambiguous(error: BaseException) -> bool:
    """Whether a failed POST may nonetheless have taken effect.

    True for timeouts and drops after the request went out, and for 500/502/504 (a proxy or the
    server failed at an unknown point). False for refusals (connect errors, 429, 503, 4xx).
    """
    if isinstance(error, BabouTransportError):
        return not was_not_sent(error)
    if isinstance(error, BabouServerError):
        return error.http_status not in POST_SAFE_STATUSES
    return False
