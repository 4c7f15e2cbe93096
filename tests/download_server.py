"""A scripted export server on 127.0.0.1 for download shapes the emulator cannot produce.

It answers ``GET /api/v1/projects/<id>/export`` with a completed export whose ``download_url`` is
:attr:`DownloadServer.url_path` (made absolute unless it has a scheme), and ``GET /files/...`` with
the :class:`File` that :attr:`DownloadServer.pick` returns for the n-th file request: a file that
changes between requests, trickles, is cut after some bytes, or answers 403. ``Range`` and
``If-Range`` are honoured unless the file says otherwise. Started on a free port in a thread of
the test process, stopped (its trickling answers too) on leaving the ``with`` block. Answers are
written raw, so the status line and headers can trickle too (``head_drip``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def mp4(size: int, fill: bytes = b"A") -> bytes:
    """An MP4-looking body (an ``ftyp`` box first) of ``size`` bytes."""
    return (MP4_HEAD + fill * size)[:size]


@dataclass
class File:
    """One answer of the file route."""

    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    cut_after: int | None = None  # close the connection after this many body bytes
    trickle: tuple[int, float] | None = None  # (bytes, seconds between writes)
    if_range: bool = True  # honour If-Range (a server that does not sends the range anyway)
    status: int = 200  # 403: an expired URL; not 200: ``body`` (if any) is the error's body
    head_drip: float | None = None  # seconds between two bytes of the status line and headers


class DownloadServer:
    """``with DownloadServer() as server:``; ``server.api_url`` is a Babou connection's host."""

    def __init__(self) -> None:
        self.url_path = "/files/video.mp4?sig=1"
        self.pick: Callable[[int], File] = lambda n: File(mp4(1000))
        self.requests: list[dict[str, Any]] = []  # the file requests: path, Range, If-Range
        self.api_requests = 0
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = f"{self.base}/api/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DownloadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler(owner: DownloadServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/api/v1/"):
                owner.api_requests += 1
                url = (
                    owner.url_path
                    if "://" in owner.url_path or not owner.url_path.startswith("/")
                    else (owner.base + owner.url_path)
                )
                self._send(200, json.dumps({"status": "completed", "download_url": url}).encode())
                return
            number = len(owner.requests)
            owner.requests.append(
                {
                    "path": self.path,
                    "range": self.headers.get("Range"),
                    "if_range": self.headers.get("If-Range"),
                }
            )
            self._file(owner.pick(number))

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _file(self, file: File) -> None:
            if file.status != 200:
                body = file.body or json.dumps({"error": "expired", "code": "URL_EXPIRED"}).encode()
                self._answer(file, file.status, body, {"Content-Type": "application/json"})
                return
            body, status, headers = file.body, 200, {"Content-Type": "video/mp4", "Accept-Ranges": "bytes"}
            if file.etag:
                headers["ETag"] = file.etag
            if file.last_modified:
                headers["Last-Modified"] = file.last_modified
            wanted, condition = self.headers.get("Range"), self.headers.get("If-Range")
            valid = condition is None or not file.if_range or condition in (file.etag, file.last_modified)
            if wanted and valid:
                start = int(wanted.removeprefix("bytes=").partition("-")[0])
                if start >= len(body):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                    return
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                body, status = body[start:], 206
            self._answer(file, status, body, headers)

        def _answer(self, file: File, status: int, body: bytes, headers: dict[str, str]) -> None:
            fields = {"Content-Length": str(len(body)), **headers}
            head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
            if file.cut_after is not None:
                self.wfile.write(head.encode() + body[: file.cut_after])
                self.close_connection = True
                return
            step, pause = file.trickle or (len(body) or 1, 0.0)
            try:
                for byte in head.encode() if file.head_drip else ():
                    if owner.stopping.wait(file.head_drip):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                if not file.head_drip:
                    self.wfile.write(head.encode())
                for i in range(0, len(body), step):
                    if owner.stopping.is_set():
                        break
                    self.wfile.write(body[i : i + step])
                    self.wfile.flush()
                    time.sleep(pause)
            except OSError:  # the client gave up: what this server is for
                self.close_connection = True

    return Handler
