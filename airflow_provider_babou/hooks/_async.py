"""The triggerer's read path: one HTTP client per (event loop, base URL, key), shared.

A triggerer runs up to a thousand waits in one event loop. They share one client (one
connection pool, one SSL context: building one costs about 24 ms of CPU) and the key's request
budget, so a 429 pauses every wait on the key, not only the one that got it. The client is closed
when its last wait leaves, and is never shared across event loops (its connections belong to
the loop that opened them).

The client is aiohttp's (:class:`AiohttpClient`): measured here, a GET costs about 0.14 ms of
CPU with it and 0.56 ms with ``httpx.AsyncClient``, and in the triggerer that cost is paid a
thousand times over. Its answers become ``httpx.Response`` objects, so error mapping and parsing
are the sync hook's own; a test's ``async_transport`` gets an ``httpx.AsyncClient`` instead.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import httpx

from airflow_provider_babou.budget import AsyncGate, budget_key, gate_for
from airflow_provider_babou.exceptions import BabouTransportError
from airflow_provider_babou.hooks._config import ClientConfig
from airflow_provider_babou.hooks._http import (
    client_kwargs,
    error_for_response,
    parse_model,
    record_answer,
    transport_error,
    user_agent,
)
from airflow_provider_babou.polling import WaitTarget

#: Connections one shared client may open: the budget paces requests, so few are ever busy.
MAX_CONNECTIONS = 10
#: Parsed requests one client keeps, least recently used dropped: about 1.3 kB each, enough for a
#: triggerer's thousand waits, and a long-lived client's memory stays bounded however many it saw.
MAX_CACHED_REQUESTS = 1024


class AiohttpClient:
    """What the read path uses of ``httpx.AsyncClient`` (``get``, ``aclose``, ``is_closed``), on aiohttp.

    It only ever GETs the API's own URLs, so the key is a default header of its session.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._headers = {"Authorization": f"Bearer {config.api_key}", "User-Agent": user_agent()}
        self._session: aiohttp.ClientSession | None = None
        # Parsing a URL costs about a quarter of a GET's CPU: a waiting URL's request is kept.
        self._request = functools.lru_cache(maxsize=MAX_CACHED_REQUESTS)(
            functools.partial(httpx.Request, "GET")
        )
        self.is_closed = False

    def __repr__(self) -> str:
        return "AiohttpClient(<redacted>)"

    async def get(self, url: str, *, timeout: float) -> httpx.Response:  # noqa: ASYNC109 - as httpx's
        """GET ``url`` within ``timeout`` seconds in all; transport failures raise httpx's errors."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector)
        try:
            limit = aiohttp.ClientTimeout(total=timeout)
            async with self._session.get(url, timeout=limit, allow_redirects=False) as answer:
                body = await answer.read()
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        request = self._request(url)
        if answer.status < 300:  # the body is all a success needs
            return httpx.Response(answer.status, content=body, request=request)
        # aiohttp already decoded the body: its length and encoding headers no longer apply.
        headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in _DECODED]
        return httpx.Response(answer.status, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        self.is_closed = True
        if self._session is not None:
            await self._session.close()


_DECODED = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass(eq=False)
class SharedClient:
    """A client, the budget gate of its key in its loop, and how many waits use it."""

    client: AiohttpClient | httpx.AsyncClient
    gate: AsyncGate
    config: ClientConfig
    key: tuple[str, str]
    users: int = 0


_configs: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Any, tuple[float, asyncio.Future[ClientConfig]]]
] = weakref.WeakKeyDictionary()
#: Seconds a resolved connection is shared by the waits of one loop: a thousand waits starting
#: together look it up once, and a changed connection is seen within a minute.
CONFIG_TTL = 60.0


async def shared_config(key: Any, resolve: Callable[[], Awaitable[ClientConfig]]) -> ClientConfig:
    """The running loop's resolved connection for ``key`` (conn id and hook overrides), or ``resolve()``."""
    configs = _configs.setdefault(asyncio.get_running_loop(), {})
    now = time.monotonic()
    cached = configs.get(key)
    if cached is None or cached[0] < now:
        # The lookup itself is shared: waits that start together would each miss the cache.
        cached = configs[key] = (now + CONFIG_TTL, asyncio.ensure_future(resolve()))
    try:
        return await asyncio.shield(cached[1])  # one wait cancelled does not cancel the others' lookup
    except Exception:
        if configs.get(key) is cached:
            del configs[key]  # a failed lookup is not kept: the next wait tries again
        raise


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], SharedClient]] = (
    weakref.WeakKeyDictionary()
)


async def acquire(config: ClientConfig, transport: httpx.AsyncBaseTransport | None = None) -> SharedClient:
    """Join the running loop's client for this base URL and key, creating it for the first wait."""
    key = budget_key(config.base_url, config.api_key)
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    shared = clients.get(key)
    if shared is None:
        client: AiohttpClient | httpx.AsyncClient = AiohttpClient(config)
        if transport is not None:
            client = httpx.AsyncClient(transport=transport, **client_kwargs(config))
        shared = clients[key] = SharedClient(client, gate_for(key, config.rate_limit), config, key)
    shared.users += 1
    return shared


async def release(shared: SharedClient) -> None:
    """Leave the shared client; the last wait to leave closes it."""
    shared.users -= 1
    if shared.users > 0:
        return
    clients = _clients.get(asyncio.get_running_loop(), {})
    if clients.get(shared.key) is shared:
        del clients[shared.key]
    await shared.client.aclose()


async def get(
    shared: SharedClient,
    target: WaitTarget,
    *,
    due: float,
    timeout: float,  # noqa: ASYNC109 - a per-request timeout handed to httpx
    limit: float | None = None,
) -> Any:
    """Take a token (most overdue first), GET the target once and parse it; no retry: the wait loop is one.

    :param timeout: seconds the GET may take; :param limit: seconds for the whole call (default ``timeout``).
    :raises BabouTransportError: no token or no answer in time.
    """
    config = shared.config
    url = config.base_url + target.path
    loop = asyncio.get_running_loop()
    end = loop.time() + (timeout if limit is None else limit)
    try:
        await shared.gate.acquire(due, end - loop.time())
    except asyncio.TimeoutError:
        raise _timed_out(url, "no request slot in time: the key's rate budget is exhausted") from None
    left = max(0.1, min(timeout, end - loop.time()))
    try:
        # The whole request is bounded, not each read (a trickle of bytes would outlive those):
        # aiohttp's total timeout does it, and a cancel scope for an httpx client (a test's).
        if isinstance(shared.client, AiohttpClient):
            response = await shared.client.get(url, timeout=left)
        else:
            with anyio.fail_after(left):
                response = await shared.client.get(url, timeout=left)
    except (TimeoutError, asyncio.TimeoutError):
        raise _timed_out(url, f"no complete answer within {left:.1f} s") from None
    except httpx.TransportError as exc:
        raise transport_error(exc, "GET", url, config.api_key) from exc
    record_answer(shared.gate.budget, response, config.max_backoff)
    if response.is_error:
        raise error_for_response(response, "GET", config.api_key, longest=config.max_backoff)
    return parse_model(target.model, response, config.api_key)


def _timed_out(url: str, message: str) -> BabouTransportError:
    return BabouTransportError(
        message,
        method="GET",
        path=httpx.URL(url).path,
        hint="Babou was slow, or other waits used the key's budget (see the connection's rate_limit)",
    )
