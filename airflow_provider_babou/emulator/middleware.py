"""ASGI middleware for ``/api/v1`` and ``/downloads``: counting, fault injection, rate limiting.

Order per request: count it → a scripted outage fails it (no draw) → draw a fault (one draw per
request, see :mod:`~airflow_provider_babou.emulator.faults`) → optional latency → the outage
again (one may have started during the latency) → immediate fault responses or ``drop_before`` →
per-key rate limit → the route, with ``delay_after`` / ``drop_after`` applied to its response.
``/_emulator/*`` passes straight through and is never counted, faulted or hit by an outage.

A dropped connection is made by sending the response head (with its full ``Content-Length``) and
part of the body, then raising :class:`DropConnection`: uvicorn then closes the socket mid-response,
which is what a client sees when a proxy or the network fails.

An outage's ``drop`` sends nothing at all: it closes the request's connection itself (found among
the server's connections by the client address; see ``EmulatorState.connections``), since an
ASGI app that fails before starting a response makes uvicorn answer 500.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.routing import Match, Router

from airflow_provider_babou.emulator.faults import Decision
from airflow_provider_babou.emulator.state import EmulatorState, Outage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# BaseExceptionGroup is a builtin from Python 3.11; on 3.10 nothing is ever wrapped in one.
_GROUP: Any = getattr(builtins, "BaseExceptionGroup", ())

_HTML = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}


class DropConnection(Exception):
    """Raised after a partial response so the server aborts the connection."""


class _DropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberate connection drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _is_drop(exc)


def _is_drop(exc: BaseException | None) -> bool:
    if isinstance(exc, DropConnection):
        return True
    if _GROUP and isinstance(exc, _GROUP):
        return any(_is_drop(e) for e in exc.exceptions)
    return False


def silence_drop_tracebacks() -> None:
    """Install the filter on uvicorn's error logger (call after uvicorn configured logging)."""
    logging.getLogger("uvicorn.error").addFilter(_DropFilter())


async def _drain(receive: Receive) -> None:
    """Receive the request body to its end (or until the client disconnects)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _json_head(status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> Message:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}


class EmulatorMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, state: EmulatorState, router: Router) -> None:
        self.app = app
        self.state = state
        self.router = router

    def _route_label(self, scope: Scope) -> str:
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return f"{scope['method']} {getattr(route, 'path', '?')}"
        return f"{scope['method']} (unmatched)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/api/v1") or path.startswith("/downloads")):
            await self.app(scope, receive, send)
            return
        state = self.state
        auth = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
                break
        key = state.key_from_header(auth)
        client = scope.get("client")
        state.stats.request(key, self._route_label(scope), tuple(client) if client else None)

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.stats.response(key, message["status"])
            await send(message)

        outage = state.outage()
        if outage is not None:
            await self._fail_for_outage(outage, scope, receive, counted_send, key)
            return
        decision = state.faults.decide(scope["method"], path, key)
        if decision is not None:
            state.stats.fault(key, decision.fault)
            if decision.fault == "latency":
                await asyncio.sleep(decision.seconds or 0)
                decision = None
                outage = state.outage()
                if outage is not None:
                    await self._fail_for_outage(outage, scope, receive, counted_send, key)
                    return

        if decision is not None and await self._immediate(decision, receive, counted_send):
            return
        if key is not None and path.startswith("/api/v1"):
            retry = state.limiter.take(key)
            if retry is not None:
                await self._send_429(counted_send, retry)
                return
        wrapped = counted_send if decision is None else self._wrap_send(decision, counted_send)
        try:
            await self.app(scope, receive, wrapped)
        except _GROUP as group:
            # anyio task groups inside streaming responses wrap our exception.
            if _is_drop(group):
                raise DropConnection() from None
            raise

    async def _fail_for_outage(
        self, outage: Outage, scope: Scope, receive: Receive, send: Send, key: str | None
    ) -> None:
        """Fail a request as a total outage does: the route never runs."""
        self.state.stats.fault(key, f"outage_{outage.mode}")
        if outage.mode == "503":
            await self._immediate(Decision("503_html"), receive, send)
            return
        if outage.mode == "drop":
            # Read the request first, so the close is a clean FIN ("server disconnected without
            # sending a response") rather than a reset with request bytes unread.
            await _drain(receive)
        if not await self._close_connection(scope, abort=outage.mode == "reset"):
            raise DropConnection()  # not under the CLI's uvicorn: the best an ASGI app can do

    async def _close_connection(self, scope: Scope, *, abort: bool) -> bool:
        """Close (or abort) the connection ``scope`` came on; False when it cannot be found."""
        connections = self.state.connections
        client = scope.get("client")
        if connections is None or client is None:
            return False
        client = tuple(client)
        for protocol in list(connections):
            transport = getattr(protocol, "transport", None)
            if getattr(protocol, "client", None) != client or transport is None:
                continue
            if abort:
                # SO_LINGER 0: the close sends a TCP RST ("connection reset by peer"), not a FIN.
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
            # Return only once the server has seen the connection go (connection_lost), so it
            # does not answer the request with its own 500 for "no response started".
            for _ in range(200):
                if protocol not in connections:
                    break
                await asyncio.sleep(0.005)
            return True
        return False

    async def _send_429(self, send: Send, retry_after: float) -> None:
        body = json.dumps(
            {
                "error": "Rate limit exceeded",
                "code": "RATE_LIMITED",
                "hint": f"Retry after {int(retry_after)} seconds",
            }
        ).encode()
        await send(_json_head(429, body, [(b"retry-after", str(int(retry_after)).encode())]))
        await send({"type": "http.response.body", "body": body})

    async def _immediate(self, decision: Decision, receive: Receive, send: Send) -> bool:
        """Answer faults that never reach the route; True when the request is done."""
        fault = decision.fault
        if fault == "500":
            body = json.dumps(
                {"error": "Internal server error", "code": "INTERNAL_ERROR", "hint": "Retry the request"}
            ).encode()
            await send(_json_head(500, body))
            await send({"type": "http.response.body", "body": body})
            return True
        if fault in ("502_html", "503_html"):
            status = int(fault[:3])
            title = f"{status} {_HTML[status]}"
            body = (
                f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            ).encode()
            head = {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())],
            }
            await send(head)
            await send({"type": "http.response.body", "body": body})
            return True
        if fault == "504_empty":
            await send({"type": "http.response.start", "status": 504, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return True
        if fault == "429":
            await self._send_429(send, decision.seconds if decision.seconds is not None else 1)
            return True
        if fault == "drop_before":
            # Read the request to its end first: closing a socket with request bytes still unread
            # makes the kernel send a reset instead of a FIN, and the client then sees
            # "connection reset" (and loses the partial response) rather than a response cut
            # short. Whether the body had been read yet was a race (an older uvicorn lost it
            # more often); the route still never runs.
            await _drain(receive)
            body = b'{"id": "prj_truncated", "name": "this response was cut off by the emulator"}'
            await send(_json_head(200, body))
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise DropConnection()
        return False

    def _wrap_send(self, decision: Decision, send: Send) -> Send:
        """``delay_after``: hold the finished response; ``drop_after``: cut its body short."""
        if decision.fault == "delay_after":

            async def delayed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await asyncio.sleep(decision.seconds or 0)
                await send(message)

            return delayed

        sent = 0
        limit = decision.after_bytes

        async def dropping(message: Message) -> None:
            nonlocal sent, limit
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = bytes(message.get("body", b""))
            if limit is None:
                limit = len(body) // 2
            room = limit - sent
            if len(body) < room or (len(body) == room and message.get("more_body", False)):
                sent += len(body)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if not message.get("more_body", False):
                    raise DropConnection()
                return
            await send({"type": "http.response.body", "body": body[:room], "more_body": True})
            raise DropConnection()

        return dropping
