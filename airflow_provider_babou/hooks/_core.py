"""The sans-IO core of :class:`~airflow_provider_babou.hooks.babou.BabouHook`.

Everything that does not depend on *how* bytes travel lives here, once: resolving the connection
into a :class:`ClientConfig`, building request descriptions (:class:`Call`), mapping responses to
typed errors, parsing models, the retry policy, and every endpoint written as a *plan*: a
generator that yields instructions (:class:`Call`, :class:`Stream`, :class:`Sleep`,
:class:`Blocking`) and receives their results. The hook runs a plan with a sync driver
(``httpx.Client``, ``time.sleep``) or an async one (``httpx.AsyncClient``, ``asyncio.sleep``);
only those drivers differ, so sync and async behaviour (including reconciliation after an
ambiguous POST) cannot drift apart.
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import ipaddress
import json
import logging
import math
import mimetypes
import os
import random
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouConflictError,
    BabouDownloadExpiredError,
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouNotFoundError,
    BabouOutcomeUnknownError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouValidationError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.get_provider_info import DEFAULT_BASE_URL
from airflow_provider_babou.models import (
    Asset,
    BabouModel,
    Chapter,
    DownloadResult,
    Export,
    ExportReceipt,
    ExportStatus,
    Page,
    Pagination,
    Project,
    Prompt,
    PromptReceipt,
    PromptStatus,
)
from airflow_provider_babou.polling import PollPolicy, WaitState

log = logging.getLogger("airflow_provider_babou.hooks.babou")

KEY_PREFIX = "sk-bab-"
API_KEY_ENV = "BABOU_API_KEY"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_RETRY_DEADLINE = 300.0
DEFAULT_DASHBOARD_TEMPLATE = "https://app.babou.ai/projects/{project_id}"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
CHUNK_SIZE = 256 * 1024
# Seconds of clock skew tolerated when matching a prompt created "since the call began":
# the API's timestamps have whole seconds and come from the server's clock.
RECONCILE_SKEW = timedelta(seconds=2)

SUPPORTED_CONTENT_TYPES = frozenset(
    {
        "video/mp4",
        "video/quicktime",
        "video/x-msvideo",
        "video/webm",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/svg+xml",
        "audio/mpeg",
        "audio/wav",
        "audio/ogg",
        "audio/aac",
    }
)
# Spellings that ``mimetypes`` (or users) produce for the same formats.
_CONTENT_TYPE_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-aac": "audio/aac",
    "audio/mp3": "audio/mpeg",
    "image/jpg": "image/jpeg",
    "video/avi": "video/x-msvideo",
}

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# A POST answered with one of these surely did not take effect: the server refused it up front.
_POST_SAFE_STATUSES = frozenset({429, 503})
# Transport errors raised before the request could reach the server.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

T = TypeVar("T")
M = TypeVar("M", bound=BabouModel)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ClientConfig:
    """Everything a hook needs from its connection, resolved and checked once.

    ``api_key`` is excluded from ``repr`` so it cannot leak through logs or tracebacks.
    """

    base_url: str
    api_key: str = field(repr=False)
    timeout: float
    max_retries: int
    max_backoff: float
    retry_deadline: float
    dashboard_url_template: str | None

    @property
    def api_origin(self) -> tuple[str, str, int | None]:
        """Scheme, host and port of the API: the only origin that may receive the key."""
        return _origin(httpx.URL(self.base_url))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host.lower(), url.port or default_port)


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` is this machine (127.0.0.0/8, ::1, localhost): plain HTTP is allowed there."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_base_url(host: str | None, port: int | None, schema: str | None) -> str:
    """Turn a connection's host/port/schema into the API base URL, enforcing HTTPS off loopback.

    ``host`` may hold a full URL (``http://127.0.0.1:8711/api/v1``) or just a host name, with the
    port and path in the URI-form ``port`` and ``schema`` fields. A bare host gets ``https``
    (``http`` on loopback, where the emulator runs) and the path ``/api/v1``.
    """
    raw = (host or "").strip()
    if not raw:
        return DEFAULT_BASE_URL
    if "://" in raw:
        parts = urlsplit(raw)
        scheme, hostname, path = parts.scheme.lower(), parts.hostname or "", parts.path
        url_port = parts.port
    else:
        hostname, _, path = raw.partition("/")
        path = "/" + path if path else ""
        hostname, url_port = _split_host_port(hostname)
        scheme = "http" if is_loopback(hostname) else "https"
    if not hostname:
        raise BabouInputError(f"the connection's Base URL {raw!r} has no host name")
    if scheme not in ("http", "https"):
        raise BabouInputError(f"the connection's Base URL must use https (got scheme {scheme!r})")
    if scheme == "http" and not is_loopback(hostname):
        raise BabouInputError(
            f"refusing plain http for {hostname}: the API key would travel unencrypted",
            hint="use an https:// Base URL (http is allowed only for 127.0.0.1, ::1 and localhost)",
        )
    port = url_port or port
    if not path.strip("/") and schema and schema.strip("/"):
        path = "/" + schema.strip("/")
    if not path.strip("/"):
        path = urlsplit(DEFAULT_BASE_URL).path
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    if port:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, path.rstrip("/"), "", ""))


def _split_host_port(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:] else None
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, int(port) if port else None
    return hostport, None


def _number(extras: dict[str, Any], name: str, override: Any, default: float, cast: type) -> Any:
    value = override if override is not None else extras.get(name)
    if value is None or value == "":
        return cast(default)
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise BabouInputError(f"connection extra {name!r} must be a number, got {value!r}") from None
    if number < 0:
        raise BabouInputError(f"connection extra {name!r} must not be negative, got {value!r}")
    return number


def resolve_config(
    conn: Any,
    *,
    conn_id: str,
    timeout: float | None,
    max_retries: int | None,
    max_backoff: float | None,
    retry_deadline: float | None,
) -> ClientConfig:
    """Build a :class:`ClientConfig` from an Airflow connection; hook arguments override extras.

    The key is the connection's password; only when it has none is ``BABOU_API_KEY`` read.
    """
    extras = dict(getattr(conn, "extra_dejson", None) or {})
    key = (conn.password or "").strip() or os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise BabouInputError(
            f"no Babou API key: connection {conn_id!r} has no password and {API_KEY_ENV} is not set",
            hint="put the key (sk-bab-...) in the connection's API Key field",
        )
    if not key.startswith(KEY_PREFIX):
        # Never echo the key: say only what is wrong with its shape.
        raise BabouInputError(
            f"the API key of connection {conn_id!r} is malformed: Babou keys start with {KEY_PREFIX!r}",
            code="INVALID_API_KEY_FORMAT",
            hint="copy the key again from the Babou dashboard (Settings -> API Keys)",
        )
    template = extras.get("dashboard_url_template") or None
    return ClientConfig(
        base_url=build_base_url(conn.host, conn.port, conn.schema),
        api_key=key,
        timeout=float(_number(extras, "timeout", timeout, DEFAULT_TIMEOUT, float)) or DEFAULT_TIMEOUT,
        max_retries=int(_number(extras, "max_retries", max_retries, DEFAULT_MAX_RETRIES, int)),
        max_backoff=float(_number(extras, "max_backoff", max_backoff, DEFAULT_MAX_BACKOFF, float)),
        retry_deadline=float(
            _number(extras, "retry_deadline", retry_deadline, DEFAULT_RETRY_DEADLINE, float)
        ),
        dashboard_url_template=template,
    )


class BearerAuth(httpx.Auth):
    """Add the key to requests for the API's origin only (a CDN download URL never receives it).

    An auth *flow* rather than a client default header, so the check runs on every request.
    """

    def __init__(self, api_key: str, origin: tuple[str, str, int | None]) -> None:
        self._api_key = api_key
        self._origin = origin

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request


# --------------------------------------------------------------------------- instructions


class UploadBody:
    """A restartable streamed upload body: a path, a file object or an ``ObjectStoragePath``.

    Each attempt calls :meth:`open` for a fresh stream positioned at the start, so a retried
    upload re-sends the same bytes. At most ``size`` bytes are sent whatever the file does.
    """

    def __init__(self, opener: Callable[[], IO[bytes]], size: int, *, closes: bool, restartable: bool):
        self._opener = opener
        self.size = size
        self.closes = closes
        self.restartable = restartable

    def open(self) -> IO[bytes]:
        """Return a stream positioned at the first byte of the upload."""
        return self._opener()

    def chunks(self) -> Iterator[bytes]:
        """Yield the body in chunks (sync transport)."""
        stream = self.open()
        try:
            remaining = self.size
            while remaining > 0:
                chunk = stream.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            if self.closes:
                stream.close()


@dataclass
class Call:
    """One HTTP request to the API, described without sending it.

    :param method: HTTP method.
    :param path: path below the base URL (``/projects``), or ``url`` for an absolute URL.
    :param retry: ``"auto"`` (GETs retry transient faults; POSTs only what surely did not take
        effect) or ``"never"`` (one attempt, e.g. ``test_connection``).
    """

    method: str
    path: str = ""
    url: str | None = None
    params: dict[str, Any] | None = None
    json: Any = None
    body: UploadBody | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: str = "auto"


@dataclass
class Sleep:
    """Wait this many seconds (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


@dataclass
class Blocking:
    """Run blocking filesystem work (inline when sync, in a worker thread when async)."""

    func: Callable[[], Any]


class DownloadState:
    """The partial file of a download: where it is, how much is in it, its running SHA-256."""

    def __init__(self, temp_path: Path) -> None:
        self.temp_path = temp_path
        self.file: IO[bytes] | None = None
        self.offset = 0
        self.total: int | None = None
        self.sha256 = hashlib.sha256()

    def open(self) -> None:
        """Create the temporary file (exclusive: two downloads never share one)."""
        self.file = open(self.temp_path, "xb")  # noqa: SIM115 - closed by close()

    def restart(self) -> None:
        """Forget what was written (the server ignored our ``Range``)."""
        assert self.file is not None
        self.file.seek(0)
        self.file.truncate()
        self.offset = 0
        self.sha256 = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append a chunk to the file and the checksum."""
        assert self.file is not None
        self.file.write(chunk)
        self.sha256.update(chunk)
        self.offset += len(chunk)

    def close(self) -> None:
        """Flush the data to disk and close the file."""
        if self.file is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def discard(self) -> None:
        """Close and delete the temporary file after a failure."""
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.temp_path.unlink(missing_ok=True)


@dataclass
class Stream:
    """GET ``url`` into ``state`` from ``state.offset`` (with ``Range`` when resuming).

    The driver answers with a :class:`StreamOutcome`; an HTTP error status is reported, not
    raised, so the plan can decide (403 means an expired URL).
    """

    url: str
    state: DownloadState


@dataclass
class StreamOutcome:
    """How one download request ended."""

    status: int
    complete: bool
    error: BabouError | None = None


# --------------------------------------------------------------------------- responses


_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")


def _non_json_message(response: httpx.Response, text: str) -> str:
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
        message = _non_json_message(response, text)
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
    if isinstance(exc, _NOT_SENT_ERRORS):
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
    return isinstance(error, BabouTransportError) and isinstance(error.__cause__, _NOT_SENT_ERRORS)


def is_ambiguous(error: BaseException) -> bool:
    """Whether a failed POST may nonetheless have taken effect.

    True for timeouts and drops after the request went out, and for 500/502/504 (a proxy or the
    server failed at an unknown point). False for refusals (connect errors, 429, 503, 4xx).
    """
    if isinstance(error, BabouTransportError):
        return not was_not_sent(error)
    if isinstance(error, BabouServerError):
        return error.http_status not in _POST_SAFE_STATUSES
    return False


def should_retry(call: Call, error: BaseException) -> bool:
    """The retry rule: GETs retry every transient fault, POSTs only what surely did not take effect."""
    if call.retry == "never" or not isinstance(error, BabouError):
        return False
    if call.body is not None and not call.body.restartable:
        return False
    if isinstance(error, BabouTransportError):
        if call.method == "GET":
            return isinstance(error.__cause__, _TRANSIENT_ERRORS)
        return was_not_sent(error)
    if error.http_status is None or error.http_status not in _RETRYABLE_STATUSES:
        return False
    return call.method == "GET" or error.http_status in _POST_SAFE_STATUSES


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


def request_headers(call: Call) -> dict[str, str]:
    """Headers of one attempt: JSON or the upload's type and exact length (never auth)."""
    headers = dict(call.headers)
    if call.body is not None:
        headers["Content-Length"] = str(call.body.size)
    return headers


def parse_json(response: httpx.Response, method: str) -> Any:
    """Decode a success body; a non-JSON 2xx is a server fault, reported clearly."""
    try:
        return response.json()
    except ValueError:
        raise BabouServerError(
            _non_json_message(response, response.text),
            http_status=response.status_code,
            method=method,
            path=response.request.url.path,
        ) from None


def parse_model(model: type[M], response: httpx.Response, method: str) -> M:
    """Validate a success body against a model, with a typed error when the shape is wrong."""
    data = parse_json(response, method)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BabouServerError(
            f"unexpected {model.__name__} in the response: {exc.error_count()} problem(s): "
            f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
            http_status=response.status_code,
            method=method,
            path=response.request.url.path,
        ) from None


def parse_list(data: Any, key: str) -> tuple[list[Any], Pagination | None]:
    """Find the items of a list response: ``{key: [...]}``, ``{"data": [...]}`` or a bare array."""
    if isinstance(data, list):
        return data, None
    if not isinstance(data, dict):
        raise ValueError(f"expected a list or an object, got {type(data).__name__}")
    items = next((data[k] for k in (key, "data", "items") if isinstance(data.get(k), list)), None)
    if items is None:
        raise ValueError(f"no {key!r} or 'data' list in the response")
    pagination = data.get("pagination")
    try:
        page = Pagination.model_validate(pagination) if isinstance(pagination, dict) else None
    except ValidationError:
        page = None
    return items, page


def parse_page(model: type[M], response: httpx.Response, method: str, key: str) -> Page[M]:
    """Parse a list response tolerantly into a :class:`Page`."""
    data = parse_json(response, method)
    try:
        items, pagination = parse_list(data, key)
        return Page[model](items=[model.model_validate(i) for i in items], pagination=pagination)  # type: ignore[valid-type]
    except (ValueError, ValidationError) as exc:
        raise BabouServerError(
            f"unexpected list response: {exc}",
            http_status=response.status_code,
            method=method,
            path=response.request.url.path,
        ) from None


def next_offset(page: Page[Any], offset: int, limit: int) -> int | None:
    """The offset of the page after ``page``, or ``None`` when ``page`` was the last one."""
    if not page.items:
        return None
    nxt = offset + len(page.items)
    if page.pagination is not None:
        return nxt if nxt < page.pagination.total else None
    # Without pagination a short page is the last one; a full one may be followed by more.
    return nxt if len(page.items) >= limit else None


# --------------------------------------------------------------------------- input checks


_BAD_ID_RE = re.compile(r"[/\s?#%]")


def seg(name: str, value: Any) -> str:
    """Check an id before it goes into a URL path (non-empty, no ``/``, whitespace, ``?#%``)."""
    if not isinstance(value, str) or not value or _BAD_ID_RE.search(value):
        raise BabouInputError(
            f"{name} must be a non-empty id without '/', whitespace, '?', '#' or '%'; got {value!r}"
        )
    return value


def _text(name: str, value: Any, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise BabouInputError(f"{name} must be a string of {low} to {high} characters")
    return value


def _limit(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise BabouInputError(f"limit must be an integer from 1 to 100, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise BabouInputError(f"offset must be a non-negative integer, got {offset!r}")


def normalize_content_type(value: str) -> str:
    """Lower-case a MIME type, drop parameters and map common aliases (``audio/x-wav``)."""
    base = value.split(";")[0].strip().lower()
    return _CONTENT_TYPE_ALIASES.get(base, base)


def _is_local(path: Any) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def upload_body(source: Any, content_type: str | None) -> tuple[UploadBody, str]:
    """Check an upload source (exists, regular file, size, type) and make its streamed body."""
    name: str | None
    if isinstance(source, (str, os.PathLike)) and not hasattr(source, "protocol"):
        path = Path(os.fspath(source))
        if not path.exists():
            raise BabouInputError(f"cannot upload {path}: no such file")
        if not path.is_file():
            raise BabouInputError(f"cannot upload {path}: not a regular file")
        size, name = path.stat().st_size, path.name
        body = UploadBody(lambda: open(path, "rb"), size, closes=True, restartable=True)  # noqa: SIM115
    elif hasattr(source, "protocol") and hasattr(source, "open"):  # an ObjectStoragePath
        if _is_local(source):
            return upload_body(Path(source.path), content_type)
        if not source.exists():
            raise BabouInputError(f"cannot upload {source}: no such object")
        if not source.is_file():
            raise BabouInputError(f"cannot upload {source}: not a file")
        size, name = int(source.stat().st_size), source.name
        body = UploadBody(lambda: source.open("rb"), size, closes=True, restartable=True)
    elif hasattr(source, "read"):
        name = os.path.basename(str(getattr(source, "name", "") or "")) or None
        try:
            start = source.tell()
            size = source.seek(0, os.SEEK_END) - start
            source.seek(start)
        except (OSError, AttributeError, ValueError):
            raise BabouInputError(
                "cannot upload a non-seekable file object: its size must be known before sending",
                hint="pass a path or a seekable file",
            ) from None

        def rewind() -> IO[bytes]:
            source.seek(start)
            return source

        body = UploadBody(rewind, size, closes=False, restartable=True)
    else:
        raise BabouInputError(
            f"cannot upload a {type(source).__name__}: "
            "pass a path, a binary file object or an ObjectStoragePath"
        )
    if content_type is None:
        guessed = mimetypes.guess_type(name or "")[0] if name else None
        if guessed is None:
            raise BabouInputError(
                f"cannot guess the content type of {name or 'the file object'}",
                hint="pass content_type=, e.g. 'video/mp4'",
            )
        content_type = guessed
    content_type = normalize_content_type(content_type)
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise BabouInputError(
            f"unsupported content type {content_type!r}",
            hint="Babou accepts " + ", ".join(sorted(SUPPORTED_CONTENT_TYPES)),
        )
    if size > MAX_UPLOAD_BYTES:
        raise BabouInputError(
            f"file is {size} bytes; Babou accepts at most {MAX_UPLOAD_BYTES} bytes (100 MiB) per upload"
        )
    if size == 0:
        raise BabouInputError("cannot upload an empty file")
    return body, content_type


# --------------------------------------------------------------------------- plans

Plan = Generator[Any, Any, T]


def _get(path: str, params: dict[str, Any] | None = None, retry: str = "auto") -> Call:
    return Call("GET", path, params=params, retry=retry)


def _post(path: str, body: Any = None) -> Call:
    if body is None:
        # Start Export has no body and no Content-Type per the docs.
        return Call("POST", path)
    return Call("POST", path, json=body, headers={"Content-Type": "application/json"})


def get_model(model: type[M], path: str) -> Plan[M]:
    """GET ``path`` and parse it as ``model``."""
    response = yield _get(path)
    return parse_model(model, response, "GET")


def create_plan(model: type[M], call: Call, what: str, check: str) -> Plan[M]:
    """POST a non-idempotent create; an ambiguous failure becomes :class:`BabouOutcomeUnknownError`."""
    try:
        response = yield call
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        raise BabouOutcomeUnknownError(
            f"the outcome of creating {what} is unknown: {exc.message}; it may or may not exist now",
            http_status=exc.http_status,
            code=exc.code,
            hint=f"{check} before trying again, so as not to create a duplicate",
            method=call.method,
            path=call.path,
        ) from exc
    return parse_model(model, response, "POST")


def create_project(name: str, description: str | None, settings: dict[str, Any] | None) -> Plan[Project]:
    """Plan of ``POST /projects``."""
    body: dict[str, Any] = {"name": _text("name", name, 1, 30)}
    if description is not None:
        body["description"] = _text("description", description, 0, 1000)
    if settings is not None:
        body["settings"] = settings
    return create_plan(
        Project, _post("/projects", body), f"project {name!r}", f"list projects named {name!r}"
    )


def list_projects(limit: int, offset: int) -> Plan[Page[Project]]:
    """Plan of ``GET /projects``."""
    _limit(limit, offset)
    response = yield _get("/projects", {"limit": limit, "offset": offset})
    return parse_page(Project, response, "GET", "projects")


def create_chapter(project_id: str, name: str, duration: int | None) -> Plan[Chapter]:
    """Plan of ``POST /projects/{id}/chapters``."""
    pid = seg("project_id", project_id)
    body: dict[str, Any] = {"name": _text("name", name, 1, 30)}
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise BabouInputError(f"duration must be a positive integer of seconds, got {duration!r}")
        body["duration"] = duration
    return create_plan(
        Chapter,
        _post(f"/projects/{pid}/chapters", body),
        f"chapter {name!r} in project {pid}",
        f"list the chapters of project {pid}",
    )


def list_chapters(project_id: str) -> Plan[list[Chapter]]:
    """Plan of ``GET /projects/{id}/chapters``."""
    response = yield _get(f"/projects/{seg('project_id', project_id)}/chapters")
    return parse_page(Chapter, response, "GET", "chapters").items


def get_chapter(project_id: str, chapter_id: str) -> Plan[Chapter]:
    """Plan of ``GET /projects/{id}/chapters/{id}``."""
    return get_model(
        Chapter, f"/projects/{seg('project_id', project_id)}/chapters/{seg('chapter_id', chapter_id)}"
    )


def latest_prompt(chapter: Chapter, content: str, since: datetime | None = None) -> Prompt | None:
    """The newest prompt of ``chapter`` with exactly ``content`` (created at/after ``since``)."""
    found = None
    for prompt in chapter.prompts:
        if prompt.content != content:
            continue
        if since is not None and prompt.created_at is not None:
            created = prompt.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=timezone.utc)
            if created < since:
                continue
        found = prompt
    return found


def find_prompt(project_id: str, chapter_id: str, content: str) -> Plan[Prompt | None]:
    """Plan of :meth:`BabouHook.find_prompt`."""
    chapter = yield from get_chapter(project_id, chapter_id)
    return latest_prompt(chapter, content)


def _recovered_prompt(prompt: Prompt) -> PromptReceipt:
    status = prompt.status if prompt.status not in (None, PromptStatus.UNKNOWN) else PromptStatus.PROCESSING
    return PromptReceipt(
        prompt_id=prompt.id,
        status=status,
        message="Prompt submission recovered from the chapter after an ambiguous failure",
    )


def submit_prompt(project_id: str, chapter_id: str, content: str, force: bool) -> Plan[PromptReceipt]:
    """Plan of ``POST .../prompt`` with reconciliation after an ambiguous failure.

    If the POST may have taken effect, the chapter is read: a prompt with exactly this content,
    created since the call began, is ours. If there is none the POST surely failed, and it is
    sent once more; a 409 to that resend means ours landed after all, so the chapter is read again.
    """
    pid, cid = seg("project_id", project_id), seg("chapter_id", chapter_id)
    _text("content", content, 1, 5000)
    call = _post(f"/projects/{pid}/chapters/{cid}/prompt", {"content": content, "force": bool(force)})
    # Server timestamps have whole seconds: floor our start and allow a little clock skew.
    since = datetime.now(timezone.utc).replace(microsecond=0) - RECONCILE_SKEW
    try:
        response = yield call
        return parse_model(PromptReceipt, response, "POST")
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        log.warning("Babou POST %s outcome unknown (%s); checking the chapter", call.path, exc.message)
        first_error = exc
    chapter = yield from get_chapter(pid, cid)
    prompt = latest_prompt(chapter, content, since)
    if prompt is not None:
        return _recovered_prompt(prompt)
    try:
        response = yield call
        return parse_model(PromptReceipt, response, "POST")
    except BabouConflictError:
        chapter = yield from get_chapter(pid, cid)
        prompt = latest_prompt(chapter, content, since)
        if prompt is not None:
            return _recovered_prompt(prompt)
        raise
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        raise BabouOutcomeUnknownError(
            f"submitting the prompt failed twice ambiguously ({first_error.message}; {exc.message})",
            method="POST",
            path=call.path,
            hint=f"call find_prompt() on chapter {cid} before submitting again",
        ) from exc


def get_export(project_id: str) -> Plan[Export]:
    """Plan of ``GET /projects/{id}/export``."""
    return get_model(Export, f"/projects/{seg('project_id', project_id)}/export")


def start_export(project_id: str) -> Plan[ExportReceipt]:
    """Plan of ``POST /projects/{id}/export`` with reconciliation from the export status.

    After an ambiguous failure, an export ``queued``/``processing`` is taken as ours (only one can
    be in flight per project); 404 or a finished earlier export means ours did not start, so the
    POST is sent once more.
    """
    pid = seg("project_id", project_id)
    call = _post(f"/projects/{pid}/export")
    try:
        response = yield call
        return parse_model(ExportReceipt, response, "POST")
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        log.warning("Babou POST %s outcome unknown (%s); checking the export", call.path, exc.message)
        first_error = exc
    receipt = yield from _export_in_flight(pid)
    if receipt is not None:
        return receipt
    try:
        response = yield call
        return parse_model(ExportReceipt, response, "POST")
    except BabouConflictError:
        receipt = yield from _export_in_flight(pid)
        if receipt is not None:
            return receipt
        raise
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        raise BabouOutcomeUnknownError(
            f"starting the export failed twice ambiguously ({first_error.message}; {exc.message})",
            method="POST",
            path=call.path,
            hint=f"call get_export({pid!r}) before starting another export",
        ) from exc


def _export_in_flight(project_id: str) -> Plan[ExportReceipt | None]:
    try:
        export = yield from get_export(project_id)
    except BabouNotFoundError:
        return None
    if export.status in (ExportStatus.QUEUED, ExportStatus.PROCESSING):
        return ExportReceipt(
            status=export.status,
            message="Export start recovered from the export status after an ambiguous failure",
        )
    return None


def upload_asset(source: Any, content_type: str | None) -> Plan[Asset]:
    """Plan of ``POST /assets``: the raw file streamed with its exact type and length."""
    body, ctype = upload_body(source, content_type)
    call = Call("POST", "/assets", body=body, headers={"Content-Type": ctype})
    return create_plan(Asset, call, "an asset", "list assets (newest first) and compare sizes")


def list_assets(limit: int, offset: int, content_type: str | None, state: str | None) -> Plan[Page[Asset]]:
    """Plan of ``GET /assets`` (note the camelCase ``contentType`` query parameter)."""
    _limit(limit, offset)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if content_type is not None:
        params["contentType"] = content_type
    if state is not None:
        params["state"] = getattr(state, "value", state)
    response = yield _get("/assets", params)
    return parse_page(Asset, response, "GET", "assets")


def find_projects(name: str, page_size: int = 100) -> Plan[list[Project]]:
    """Plan of :meth:`BabouHook.find_projects`: every page, filtered by exact name, newest first."""
    found: list[Project] = []
    offset: int | None = 0
    while offset is not None:
        page = yield from list_projects(page_size, offset)
        found.extend(p for p in page.items if p.name == name)
        offset = next_offset(page, offset, page_size)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found, key=lambda p: _aware(p.created_at) or epoch, reverse=True)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def wait_plan(
    fetch: Callable[[], Plan[Any]],
    judge: Callable[[Any], WaitState],
    *,
    what: str,
    poll: PollPolicy,
    timeout: float,
) -> Plan[Any]:
    """Poll ``fetch`` until ``judge`` says done; raise on failure or past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delays = poll.delays()
    while True:
        obj = yield from fetch()
        state = judge(obj)
        if state.done:
            if state.succeeded:
                return obj
            raise BabouJobFailedError(
                f"{what} ended {state.state}: {state.message or 'no reason given'}", code=state.state.upper()
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BabouWaitTimeoutError(
                f"{what} is still {state.state} after {timeout:g} s",
                hint="wait longer, or check it in the Babou dashboard",
            )
        yield Sleep(min(next(delays), remaining))


def test_connection_plan(base_url: str) -> Plan[tuple[bool, str]]:
    """One cheap authenticated GET, turned into a (success, explanation) pair."""
    try:
        yield _get("/projects", {"limit": 1}, retry="never")
    except BabouAuthError as exc:
        reason = {
            "INVALID_API_KEY_FORMAT": "Babou says the API key format is invalid",
            "API_KEY_EXPIRED": "the API key has expired",
        }.get(exc.code or "", "Babou rejected the API key (unknown or revoked)")
        return False, f"{reason}: {exc.hint}"
    except BabouTransportError as exc:
        return False, f"cannot reach {base_url}: {exc.message} ({exc.hint})"
    except BabouError as exc:
        return False, f"{base_url} answered with an error: {exc}"
    return True, f"Connected to Babou at {base_url}"


# --------------------------------------------------------------------------- downloads


def prepare_destination(destination: Any, overwrite: bool) -> tuple[Path, Any | None]:
    """Return the local file to write and, for a remote ``ObjectStoragePath``, the object to fill."""
    if hasattr(destination, "protocol") and hasattr(destination, "open"):
        if _is_local(destination):
            return prepare_destination(Path(destination.path), overwrite)
        if destination.exists() and not overwrite:
            raise BabouInputError(f"{destination} already exists; pass overwrite=True to replace it")
        import tempfile

        local = Path(tempfile.mkdtemp(prefix="babou-download-")) / (destination.name or "export.mp4")
        return local, destination
    path = Path(os.fspath(destination))
    if path.is_dir():
        raise BabouInputError(f"{path} is a directory; give a file path for the video")
    if path.exists() and not overwrite:
        raise BabouInputError(f"{path} already exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise BabouInputError(f"cannot download to {path}: directory {path.parent} does not exist")
    return path, None


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{random.randrange(1 << 32):08x}.part")


def _finish(state: DownloadState, local: Path, remote: Any | None) -> None:
    state.close()
    os.replace(state.temp_path, local)
    if remote is not None:
        import shutil

        try:
            with open(local, "rb") as src, remote.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)
        finally:
            local.unlink(missing_ok=True)
            local.parent.rmdir()


def download_export(
    project_id: str, destination: Any, overwrite: bool, max_resumes: int
) -> Plan[DownloadResult]:
    """Plan of :meth:`BabouHook.download_export`.

    Streams into a temporary file beside the destination, resumes with ``Range`` after a drop
    (up to ``max_resumes`` times), refetches the export status once when the URL has expired
    (403), verifies the length and renames atomically.
    """
    pid = seg("project_id", project_id)
    local, remote = prepare_destination(destination, overwrite)
    export = yield from get_export(pid)
    if export.status is not ExportStatus.COMPLETED or not export.download_url:
        raise BabouInputError(
            f"the export of project {pid} is {export.status.value}, not completed: nothing to download",
            hint="wait_for_export() first",
        )
    url = export.download_url
    state = DownloadState(_temp_beside(local))
    yield Blocking(state.open)
    refreshed = False
    resumes = 0
    try:
        while True:
            outcome: StreamOutcome = yield Stream(url, state)
            if outcome.complete:
                break
            if outcome.status == 403 and not refreshed:
                refreshed = True
                log.warning("Babou download URL of project %s expired; fetching a fresh one", pid)
                export = yield from get_export(pid)
                if export.download_url:
                    url = export.download_url
                continue
            if outcome.status == 403:
                raise BabouDownloadExpiredError(
                    "the export's download URL has expired (403), even after fetching a fresh one",
                    http_status=403,
                    method="GET",
                    path=httpx.URL(url).path,
                    hint=f"fetch the export status again (get_export({pid!r})) for a new download_url",
                )
            error = outcome.error
            transient = isinstance(error, BabouTransportError) or (
                error is not None and error.http_status in _RETRYABLE_STATUSES
            )
            if transient and resumes < max_resumes:
                assert error is not None
                resumes += 1
                log.warning(
                    "Babou download of project %s interrupted at %d bytes (%s); resuming (%d/%d)",
                    pid,
                    state.offset,
                    error.message,
                    resumes,
                    max_resumes,
                )
                yield Sleep(min(0.5 * resumes, 5.0))
                continue
            assert error is not None
            raise error
        yield Blocking(lambda: _finish(state, local, remote))
    except GeneratorExit:
        # The driver gave up on the plan (a non-Babou error or cancellation): clean up in place.
        state.discard()
        raise
    except BaseException:
        yield Blocking(state.discard)
        raise
    return DownloadResult(
        path=str(destination), size=state.offset, sha256=state.sha256.hexdigest(), project_id=pid
    )


_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def begin_stream(response: httpx.Response, state: DownloadState) -> StreamOutcome | None:
    """Check a download response's status and range before reading its body.

    Returns an outcome to report at once (an error status), or ``None`` to go on reading.
    """
    status = response.status_code
    if status == 206:
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != state.offset:
            state.restart()  # a range we did not ask for: start over rather than corrupt the file
            return StreamOutcome(status, False, BabouTransportError("unexpected Content-Range", method="GET"))
        if match.group(3) != "*":
            state.total = int(match.group(3))
        return None
    if status == 200:
        if state.offset:
            state.restart()  # the server ignored Range and sends the whole file again
        length = response.headers.get("Content-Length")
        state.total = int(length) if length and length.isdigit() else None
        return None
    if status == 416 and state.total is not None and state.offset >= state.total:
        return StreamOutcome(status, True)
    return StreamOutcome(status, False, None)


def end_stream(status: int, state: DownloadState, method: str, url: str) -> StreamOutcome:
    """Judge a body that ended without a transport error: complete, or short (resume)."""
    if state.total is None or state.offset == state.total:
        return StreamOutcome(status, True)
    if state.offset > state.total:
        state.restart()
    return StreamOutcome(
        status,
        False,
        BabouTransportError(
            f"download ended at {state.offset} of {state.total} bytes",
            method=method,
            path=httpx.URL(url).path,
        ),
    )


def range_headers(state: DownloadState) -> dict[str, str]:
    """Headers of a download request: ``Range`` for the rest of a partial file."""
    # identity: byte offsets must refer to the file itself, not to a compressed encoding of it.
    headers = {"Accept-Encoding": "identity"}
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    return headers


def ceil_seconds(value: float) -> int:
    """Round seconds up (for messages)."""
    return math.ceil(value)
