"""The triggerer's read path: one ``httpx.AsyncClient`` per (event loop, base URL, key), shared.

A triggerer runs up to a thousand waits in one event loop. They share one client (one
connection pool, one SSL context: building one costs about 24 ms of CPU) and the key's request
budget, so a 429 pauses every wait on the key, not only the one that got it. The client is closed
when its last wait leaves, and is never shared across event loops (its connections belong to
the loop that opened them).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from airflow_provider_babou.exceptions import BabouTransportError
from airflow_provider_babou.hooks._budget import AsyncGate, KeyBudget, budget_key, gate_for
from airflow_provider_babou.hooks._config import ClientConfig
from airflow_provider_babou.hooks._http import (
    client_kwargs,
    error_for_response,
    parse_model,
    parse_retry_after,
    transport_error,
)
from airflow_provider_babou.polling import WaitTarget

#: Connections one shared client may open: the budget paces requests, so few are ever busy.
MAX_CONNECTIONS = 10


@dataclass(eq=False)
class SharedClient:
    """A client, the budget gate of its key in its loop, and how many waits use it."""

    client: httpx.AsyncClient
    gate: AsyncGate
    config: ClientConfig
    key: tuple[str, str]
    users: int = 0


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], SharedClient]] = (
    weakref.WeakKeyDictionary()
)


async def acquire(config: ClientConfig, transport: httpx.AsyncBaseTransport | None = None) -> SharedClient:
    """Join the running loop's client for this base URL and key, creating it for the first wait."""
    key = budget_key(config.base_url, config.api_key)
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    shared = clients.get(key)
    if shared is None:
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
        client = httpx.AsyncClient(transport=transport, limits=limits, **client_kwargs(config))
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


def record(budget: KeyBudget, response: httpx.Response) -> None:
    """Tell the key's budget how Babou answered: a 429 pauses and slows the key, else it may speed up."""
    if response.status_code == 429:
        budget.throttled(parse_retry_after(response.headers.get("Retry-After")))
    else:
        budget.succeeded()


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
        # httpx's timeouts are per read: a slow trickle of bytes would outlive them, so the
        # whole request is bounded too (a cancel scope: no extra task per request).
        with anyio.fail_after(left):
            response = await shared.client.get(url, timeout=left)
    except TimeoutError:
        raise _timed_out(url, f"no complete answer within {left:.1f} s") from None
    except httpx.TransportError as exc:
        raise transport_error(exc, "GET", url, config.api_key) from exc
    record(shared.gate.budget, response)
    if response.is_error:
        raise error_for_response(response, "GET", config.api_key)
    return parse_model(target.model, response, config.api_key)


def _timed_out(url: str, message: str) -> BabouTransportError:
    return BabouTransportError(
        message,
        method="GET",
        path=httpx.URL(url).path,
        hint="Babou was slow, or other waits used the key's budget (see the connection's rate_limit)",
    )
