"""A sync request is bounded as a whole, not per read: a scripted server on 127.0.0.1 trickles bytes.

httpx's timeouts restart with every byte received, so a server sending one byte every 0.2 s keeps a
request with a 1 s ``timeout`` alive for as long as it likes. These tests start a tiny socket server
in the test (a free port, a thread, stopped at the end) that does exactly that.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.exceptions import BabouTransportError, BabouWaitTimeoutError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import PollPolicy
from tests.keys import ALICE

#: Seconds between two trickled bytes: each read gets a byte well within any timeout here.
DRIP = 0.2
BODY = json.dumps({"status": "processing", "padding": "x" * 400}).encode()


class TrickleServer:
    """Answers every request on its connection with ``BODY``, one byte every :data:`DRIP` seconds
    (the status line and headers too when ``headers_too``), for as long as the client listens."""

    def __init__(self, *, headers_too: bool) -> None:
        self.headers_too = headers_too
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.request_lines: list[str] = []

    def __enter__(self) -> TrickleServer:
        self._start(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(5)
        self.sock.close()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        with conn, contextlib.suppress(OSError):
            request = conn.recv(65536)  # the request (small, one read)
            self.request_lines.append(request.partition(b"\r\n")[0].decode())
            if not self.headers_too:
                conn.sendall(head.encode())
            for byte in (head.encode() if self.headers_too else b"") + BODY:
                if self.stopping.wait(DRIP):
                    return
                conn.sendall(bytes([byte]))


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_budget, "_budgets", {})


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def trickling_hook(
    monkeypatch: pytest.MonkeyPatch, *, headers_too: bool, port: int | None = None, **extra: float
) -> Iterator[BabouHook]:
    with TrickleServer(headers_too=headers_too) as server:
        conn = {
            "conn_type": "babou",
            "host": f"http://127.0.0.1:{port or server.port}/api/v1",
            "password": ALICE,
            "extra": {"retry_deadline": 0, **extra},
        }
        monkeypatch.setenv("AIRFLOW_CONN_BABOU_TRICKLE", json.dumps(conn))
        hook = BabouHook("babou_trickle")
        hook.trickle_server = server  # type: ignore[attr-defined]
        try:
            yield hook
        finally:
            hook.close()


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickling_answer_is_cut_at_the_timeout(monkeypatch: pytest.MonkeyPatch, headers_too: bool) -> None:
    with trickling_hook(monkeypatch, headers_too=headers_too, timeout=1) as hook:
        started = time.monotonic()
        with pytest.raises(BabouTransportError) as info:
            hook.get_export("prj_1")
        took = time.monotonic() - started
    assert 0.9 <= took < 1.5, f"a GET with timeout 1 s took {took:.1f} s"
    assert info.value.hint
    assert "timed out" in info.value.hint


def test_a_blocking_wait_ends_by_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The connection's timeout (30 s) is longer than the whole wait: the wait's deadline bounds the GET.
    with trickling_hook(monkeypatch, headers_too=False) as hook:
        started = time.monotonic()
        with pytest.raises(BabouWaitTimeoutError):
            hook.wait_for_export("prj_1", poll=PollPolicy(interval=0.5, max_interval=0.5), timeout=2.5)
        took = time.monotonic() - started
    # (the slack is the hook's first look-up of its connection, made before the wait starts its clock)
    assert took <= 2.5 + 0.25, f"a wait with timeout 2.5 s took {took:.2f} s"


def test_a_proxy_from_the_environment_is_used_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` is honoured (the client keeps httpx's proxy mounts), and a request through the
    proxy is bounded as a whole all the same: here the proxy is the trickling server, and nothing
    listens at the connection's own address (a direct request would be refused at once)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    port = _closed_port()
    with trickling_hook(monkeypatch, headers_too=True, port=port, timeout=1) as hook:
        proxy = hook.trickle_server  # type: ignore[attr-defined]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        started = time.monotonic()
        with pytest.raises(BabouTransportError, match="Timeout"):
            hook.get_export("prj_1")
        took = time.monotonic() - started
    assert proxy.request_lines[0] == f"GET http://127.0.0.1:{port}/api/v1/projects/prj_1/export HTTP/1.1"
    assert 0.9 <= took < 1.5, f"a GET through the proxy with timeout 1 s took {took:.1f} s"
