"""Plain functions shared by the sync hook and the async read path (nothing here sends): client
settings, answers into models and failures into typed errors (the key scrubbed), :func:`was_not_sent`."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Generator
from datetime import timezone
from typing import Any, TypeVar

import httpx
from airflow import __version__ as airflow_version
from pydantic import ValidationError

from airflow_provider_babou import __version__
from airflow_provider_babou.budget import KeyBudget
from airflow_provider_babou.connection import ClientConfig, origin
from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouConflictError,
    BabouError,
    BabouNotFoundError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouValidationError,
    scrub,
    scrub_values,
    shorten,
)
from airflow_provider_babou.models import BabouModel, Page

M = TypeVar("M", bound=BabouModel)

# Transport errors raised before the request could reach the server.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def user_agent() -> str:
    """The provider's, Airflow's and httpx's versions, sent with every request."""
    return f"airflow-provider-babou/{__version__} apache-airflow/{airflow_version} httpx/{httpx.__version__}"


class BearerAuth(httpx.Auth):
    """The key, on requests to the API's origin only (a CDN download URL never gets it), per request."""

    def __init__(self, api_key: str, origin: tuple[str, str, int | None]) -> None:
        self._api_key = api_key
        self._origin = origin

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request


def client_kwargs(config: ClientConfig) -> dict[str, Any]:
    """Settings of every httpx client: timeout, User-Agent, the key for the API origin only."""
    return {
        "timeout": httpx.Timeout(config.timeout),
        "headers": {"User-Agent": user_agent()},
        "auth": BearerAuth(config.api_key, config.api_origin),
        "follow_redirects": False,
    }


def _head(response: httpx.Response, secret: str | None) -> str:
    # The reason phrase is server text too: any words may follow the status code.
    return scrub(f"{response.status_code} {response.reason_phrase or ''}".strip(), secret)


def _load(text: str) -> Any:
    """JSON text -> value; ``ValueError`` for anything unparseable, however deeply nested."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read ``Retry-After`` as seconds or an HTTP-date; ``None`` when absent, garbled or not finite."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


_AUTH_HINTS = {
    "INVALID_API_KEY_FORMAT": "Babou keys start with 'sk-bab-'; copy the key again from the dashboard",
    "API_KEY_EXPIRED": "the key has expired: create a new one in the Babou dashboard "
    "(Settings -> API Keys) and store it in the connection",
    "UNAUTHORIZED": "the key is unknown or revoked: check the connection's API Key",
}
_BY_STATUS: dict[int, type[BabouError]] = {
    401: BabouAuthError,
    404: BabouNotFoundError,
    409: BabouConflictError,
    429: BabouRateLimitError,
}


def error_for_response(
    response: httpx.Response, method: str, secret: str | None = None, *, longest: float | None = None
) -> BabouError:
    """Map an error response to its typed exception, JSON envelope or not, with every text scrubbed.

    :param longest: the connection's ``max_backoff``: a longer ``Retry-After`` is cut to it.
    """
    status = response.status_code
    text = response.text if response.content else ""
    try:
        payload = _load(text) if text.strip() else None
    except ValueError:
        payload = None
    code = hint = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), (str, dict)):
        err = payload["error"]
        if isinstance(err, dict):  # tolerate a nested envelope, though the docs say flat
            payload, err = {**payload, **err}, err.get("message") or err.get("error") or ""
        message = shorten(str(err), secret) or _head(response, secret)
        code = shorten(payload["code"], secret) if isinstance(payload.get("code"), str) else None
        hint = shorten(payload["hint"], secret) if isinstance(payload.get("hint"), str) else None
    else:
        body = f"non-JSON body: {shorten(text, secret)}" if text.strip() else "empty body"
        message = f"{_head(response, secret)} ({body})"
    kwargs: dict[str, Any] = {"http_status": status, "code": code, "hint": hint, "method": method}
    kwargs["path"] = response.request.url.path if response.request is not None else ""
    if status == 401:
        kwargs["hint"] = hint or _AUTH_HINTS.get(code or "", _AUTH_HINTS["UNAUTHORIZED"])
    if status == 429:
        kwargs["retry_after"] = _capped(parse_retry_after(response.headers.get("Retry-After")), longest)
    cls = _BY_STATUS.get(status) or (BabouServerError if status >= 500 else BabouValidationError)
    return cls(message, **kwargs)


def transport_error(
    exc: Exception, method: str, url: httpx.URL | str, secret: str | None
) -> BabouTransportError:
    """Wrap an httpx transport failure; the original stays as ``__cause__`` for retry decisions."""
    if isinstance(exc, NOT_SENT_ERRORS):
        hint = "check that the Base URL is right and the host is reachable"
    elif isinstance(exc, httpx.TimeoutException):
        hint = "the request timed out; raise the connection's timeout extra if this persists"
    else:
        hint = "the connection failed mid-request"
    detail = shorten(str(exc), secret) or type(exc).__name__
    error = BabouTransportError(
        f"{type(exc).__name__}: {detail}", method=method, path=httpx.URL(url).path, hint=hint
    )
    error.__cause__ = exc
    return error


def was_not_sent(error: BaseException) -> bool:
    """Whether a failure surely happened before the request reached the server."""
    return isinstance(error, BabouTransportError) and isinstance(error.__cause__, NOT_SENT_ERRORS)


def _capped(seconds: float | None, longest: float | None) -> float | None:
    return seconds if seconds is None or longest is None else min(seconds, longest)


def record_answer(budget: KeyBudget, response: httpx.Response, longest: float | None = None) -> None:
    """Tell the key's budget how Babou answered: a 429 pauses and slows the key, else it may speed up.

    :param longest: the connection's ``max_backoff``: no single 429 pauses the key for longer.
    """
    if response.status_code == 429:
        budget.throttled(parse_retry_after(response.headers.get("Retry-After")), longest=longest)
    else:
        budget.succeeded()


def _bad_body(response: httpx.Response, message: str) -> BabouServerError:
    return BabouServerError(
        message,
        http_status=response.status_code,
        method=response.request.method,
        path=response.request.url.path,
    )


def parse_json(response: httpx.Response, secret: str | None = None) -> Any:
    """Decode a success body; a non-JSON or absurdly nested 2xx is a server fault, said clearly.

    Every string in it is scrubbed of the key here, where it enters: a failed export's ``error``
    that echoes the key reaches no event, exception or log.
    """
    try:
        data = _load(response.text)
    except ValueError as exc:
        raise _bad_body(
            response, f"{_head(response, secret)} (unreadable JSON: {shorten(str(exc), secret)})"
        ) from None
    try:
        return scrub_values(data, secret)
    except RecursionError:
        raise _bad_body(response, f"{_head(response, secret)} (JSON nested too deeply)") from None


def parse_model(model: type[M], response: httpx.Response, secret: str | None = None) -> M:
    """Validate a success body against ``model``, with a typed error when the shape is wrong."""
    try:
        return model.model_validate(parse_json(response, secret))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _bad_body(
            response, f"unexpected {model.__name__} in the response: {first['loc']} {first['msg']}"
        ) from None


def parse_page(model: type[M], response: httpx.Response, key: str, secret: str | None = None) -> Page[M]:
    """Parse a list answer (:meth:`Page.parse`, tolerant of its shape); a typed error when it is wrong."""
    try:
        return Page.parse(model, parse_json(response, secret), key)
    except LookupError as exc:
        raise _bad_body(response, f"unexpected list response: {exc.args[0]}") from None
    except ValidationError as exc:
        raise _bad_body(
            response, f"unexpected {model.__name__} in the list: {exc.errors()[0]['msg']}"
        ) from None


def asset_filters(content_type: str | None, state: str | None) -> dict[str, str]:
    """The List Assets query filters that were given (``contentType`` is camelCase in the docs)."""
    filters = {"contentType": content_type, "state": getattr(state, "value", state)}
    return {k: v for k, v in filters.items() if v is not None}
