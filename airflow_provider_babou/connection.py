"""The Babou connection, resolved: base URL (HTTPS everywhere but loopback), key (the password, else
``BABOU_API_KEY``) and the numbers of its extras, overridden by hook arguments, into a :class:`ClientConfig`.
Its fields and defaults are documented in ``docs/connection.md``; the hook resolves it on first use.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from airflow_provider_babou._compat import AirflowNotFoundException, mask_secret
from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.get_provider_info import DEFAULT_BASE_URL, DEFAULT_DASHBOARD_URL_TEMPLATE
from airflow_provider_babou.validation import check_api_key

API_KEY_ENV = "BABOU_API_KEY"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BACKOFF = 30.0
DEFAULT_RETRY_DEADLINE = 300.0
#: Requests per second per key (see ``_budget``): the emulator's default limit; Babou publishes none.
DEFAULT_RATE_LIMIT = 20.0


@dataclass(frozen=True)
class ClientConfig:
    """Everything a hook needs from its connection, resolved and checked once.

    ``api_key`` is excluded from ``repr`` so it cannot leak through logs or tracebacks.
    """

    base_url: str
    api_key: str = field(repr=False)
    timeout: float
    max_retries: int | None
    max_backoff: float
    retry_deadline: float
    rate_limit: float
    dashboard_url_template: str | None

    @property
    def api_origin(self) -> tuple[str, str, int | None]:
        """Scheme, host and port of the API: the only origin that may receive the key."""
        return origin(httpx.URL(self.base_url))


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url``, the default port filled in."""
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
    port and path in the URI-form ``port`` and ``schema`` fields (a port in ``host`` wins). A bare
    host gets ``https`` (``http`` on loopback, where the emulator runs) and the path ``/api/v1``.
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
    # The Base URL's own port wins over the Port field; the scheme's default port is left out,
    # so "https://api.babou.ai" with Port 443 is still Babou's own API (dashboard link).
    port = url_port or port
    if port == {"http": 80, "https": 443}[scheme]:
        port = None
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


#: The largest value each number may take: past these a setting is a typo, and socket and sleep
#: calls would overflow (a ``timeout`` of 1e10 did).
LIMITS = {
    "timeout": 86_400.0,  # a day per request
    "max_backoff": 86_400.0,
    "retry_deadline": 7 * 86_400.0,
    "rate_limit": 100_000.0,  # requests per second
    "max_retries": 1_000_000.0,
}


def _number(extras: dict[str, Any], name: str, override: Any, default: float | None) -> float | None:
    value = override if override is not None else extras.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not 0 <= number <= LIMITS[name]:  # NaN fails every comparison
        raise BabouInputError(
            f"connection extra {name!r} must be a number from 0 to {LIMITS[name]:g}, got {value!r}",
            hint="edit the connection's extra fields (or the hook's argument of that name)",
        )
    return number


def resolve_config(
    conn: Any,
    *,
    conn_id: str | None,
    timeout: float | None,
    max_retries: int | None,
    max_backoff: float | None,
    retry_deadline: float | None,
    rate_limit: float | None = None,
) -> ClientConfig:
    """Build a :class:`ClientConfig` from an Airflow connection; hook arguments override extras.

    The key is the connection's password; only when it has none is ``BABOU_API_KEY`` read.
    ``conn_id`` is named in the errors, unless it is ``None``.
    """
    extras = dict(getattr(conn, "extra_dejson", None) or {})
    key = (conn.password or "").strip() or os.environ.get(API_KEY_ENV, "").strip()
    check_api_key(key, conn_id=conn_id)
    base_url = build_base_url(conn.host, conn.port, conn.schema)
    # Babou's own dashboard only knows projects of Babou's own API (not the emulator's).
    default_template = DEFAULT_DASHBOARD_URL_TEMPLATE if base_url == DEFAULT_BASE_URL else None
    template = extras.get("dashboard_url_template") or default_template
    retries = _number(extras, "max_retries", max_retries, None)
    return ClientConfig(
        base_url=base_url,
        api_key=key,
        timeout=_number(extras, "timeout", timeout, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
        max_retries=None if retries is None else int(retries),
        max_backoff=_number(extras, "max_backoff", max_backoff, DEFAULT_MAX_BACKOFF) or 0.0,
        retry_deadline=_number(extras, "retry_deadline", retry_deadline, DEFAULT_RETRY_DEADLINE) or 0.0,
        rate_limit=_number(extras, "rate_limit", rate_limit, DEFAULT_RATE_LIMIT) or DEFAULT_RATE_LIMIT,
        dashboard_url_template=template,
    )


def _missing(conn_id: str) -> BabouInputError:
    return BabouInputError(
        f"Babou connection {conn_id!r} is not defined",
        hint="create a connection of type 'babou' (API Key = sk-bab-...), e.g. the env var "
        f"AIRFLOW_CONN_{conn_id.upper()}",
    )


def resolve(hook: Any, lookup: Callable[[Any, str], Any], *, name_conn: bool = True) -> ClientConfig:
    """Look up ``hook.babou_conn_id`` with ``lookup(hook, conn_id)`` and resolve it (key masked first).

    :param name_conn: name the connection id in the errors about its content.
    """
    try:
        conn = lookup(hook, hook.babou_conn_id)
    except AirflowNotFoundException:
        raise _missing(hook.babou_conn_id) from None
    if conn.password:
        mask_secret(conn.password)  # before anything can fail, so even a malformed key is masked
    config = resolve_config(conn, conn_id=hook.babou_conn_id if name_conn else None, **hook._overrides)
    mask_secret(config.api_key)
    return config


async def aresolve(hook: Any, alookup: Callable[[Any, str], Awaitable[Any]]) -> ClientConfig:
    """:func:`resolve`, with the connection looked up by the async ``alookup``."""
    try:
        conn = await alookup(hook, hook.babou_conn_id)
    except AirflowNotFoundException:
        raise _missing(hook.babou_conn_id) from None
    return resolve(hook, lambda _hook, _conn_id: conn)
