"""Downloading an export: one streamed request at a time, resumed with ``Range`` (``If-Range``)
until whole; its bounds and resume rules are in ``docs/design.md``. The file work is
:class:`~airflow_provider_babou.storage.DownloadState`'s; of the hook, only :class:`DownloadClient`."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import httpx

from airflow_provider_babou.connection import ClientConfig
from airflow_provider_babou.exceptions import (
    BabouDownloadExpiredError,
    BabouDownloadStalledError,
    BabouError,
    BabouInputError,
    BabouServerError,
    BabouTransportError,
)
from airflow_provider_babou.hooks import _deadline
from airflow_provider_babou.hooks._http import error_for_response, transport_error
from airflow_provider_babou.hooks._retry import backoff
from airflow_provider_babou.models import DownloadResult, Export, ExportStatus
from airflow_provider_babou.storage import DownloadState, Pace, check_destination
from airflow_provider_babou.validation import check_positive


class DownloadClient(Protocol):
    """What a download needs of the hook (its export status, connection, client and deadline)."""

    deadline: float | None

    @property
    def config(self) -> ClientConfig: ...

    def get_export(self, project_id: str) -> Export: ...

    def get_conn(self) -> httpx.Client: ...


log = logging.getLogger(__name__)

#: Default slowest acceptable download: 16 KiB/s (a 100 MiB video in under two hours) ...
MIN_SPEED = 16 * 1024
#: ... averaged over each 30 s, so a short pause of the server is not a stall.
SPEED_WINDOW = 30.0
#: The most of an error answer's body read (a CDN may send a page of any size, or never end).
ERROR_BODY_MAX = 64 * 1024


def _usable_url(url: str | None, pid: str) -> str:
    """Refuse a ``download_url`` that is not an absolute http(s) URL: no retry can fix it."""
    try:
        parsed = httpx.URL(url or "")
        scheme, host = parsed.scheme, parsed.host
    except httpx.InvalidURL:
        scheme, host = "", ""
    if scheme in ("http", "https") and host:
        return str(url)
    shape = f"a {scheme}:// URL" if scheme else "a relative or malformed URL" if url else "no URL"
    raise BabouServerError(
        f"Babou returned an unusable download_url for project {pid}: {shape}, not http(s)",
        hint="no retry can fix this answer; report it to Babou with the project id",
    )


def download(
    hook: DownloadClient,
    pid: str,
    destination: Any,
    *,
    overwrite: bool,
    min_speed: float = MIN_SPEED,
    speed_window: float = SPEED_WINDOW,
    export: Export | None = None,
) -> DownloadResult:
    """Download project ``pid``'s completed export to ``destination`` (checked before any request);
    ``export``: its status when the caller just read it (else one GET)."""
    min_speed, speed_window = (
        check_positive("min_speed", min_speed),
        check_positive("speed_window", speed_window),
    )
    # Parents created: a deferred task may resume on a worker other than the one that checked.
    local, remote = check_destination(destination, overwrite=overwrite, create_parents=True)
    export = hook.get_export(pid) if export is None else export
    if export.status is not ExportStatus.COMPLETED:
        raise BabouInputError(
            f"the export of project {pid} is {export.status.value}, not completed: nothing to download",
            hint="wait for it first (BabouStartExportOperator with wait_for_completion=True, or "
            "BabouExportSensor)",
        )
    url, refreshed, resumes = _usable_url(export.download_url, pid), False, 0
    state = DownloadState(local, remote)
    # The resume clock, restarted by each request that took the file further than ever, at pace
    # (a server that restarts the file and cuts it again and again makes no progress).
    retry_from, furthest = time.monotonic(), 0
    try:
        while True:
            started, received = time.monotonic(), state.received
            try:
                _stream(hook, url, state, Pace(min_speed, speed_window, received))
                break
            except BabouError as err:
                if err.http_status == 403 and not refreshed:
                    refreshed, url = True, _usable_url(hook.get_export(pid).download_url or url, pid)
                    continue
                if err.http_status == 403:
                    raise BabouDownloadExpiredError(
                        "the export's download URL has expired (403), even after fetching a fresh one",
                        http_status=403,
                        hint=f"fetch the export status of {pid} again for a new download_url",
                    ) from err
                now = time.monotonic()
                kept_pace = state.received - received >= min_speed * (now - started)
                if kept_pace and state.offset > furthest and not isinstance(err, BabouDownloadStalledError):
                    retry_from = now
                furthest = max(furthest, state.offset)
                resumes += 1
                pause = backoff(resumes, None, hook.config.max_backoff)
                late = hook.deadline is not None and time.time() + pause >= hook.deadline
                if not err.transient or late or now + pause > retry_from + hook.config.retry_deadline:
                    raise
                log.warning("Download of %s interrupted at %d bytes (%s); resuming", pid, state.offset, err)
                time.sleep(pause)
        state.check_video(pid)
        state.finish(local, overwrite=overwrite)
    except BaseException:
        state.discard()
        raise
    path = str(remote if remote is not None else local)
    return DownloadResult(
        path=path, size=state.offset, sha256=state.sha256.hexdigest(), project_id=pid, download_url=url
    )


def _cut(message: str, url: str) -> BabouTransportError:
    return BabouTransportError(message, method="GET", path=httpx.URL(url).path)


def _stream(hook: DownloadClient, url: str, state: DownloadState, pace: Pace) -> None:
    """One download request from ``state.offset``: append to the file, raise a typed error if cut.

    Every socket operation, the headers' and the error body's included, ends by the hook's deadline.
    """
    headers = {"Accept-Encoding": "identity"}  # byte offsets must refer to the file itself
    if state.offset and not state.resumable():
        state.restart()  # nothing proves the server still has the same file
    if state.offset:  # If-Range: the server sends the whole file if it changed
        headers.update({"Range": f"bytes={state.offset}-", "If-Range": str(state.validator())})
    key, path = hook.config.api_key, httpx.URL(url).path
    end = None if hook.deadline is None else time.monotonic() + hook.deadline - time.time()
    try:
        with _deadline.bounded(end), hook.get_conn().stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 206:
                try:
                    start, total = _content_range(response.headers.get("Content-Range", ""))
                    if start != state.offset:
                        raise ValueError("a range we did not ask for")
                except ValueError as exc:  # start over rather than corrupt the file
                    state.restart()
                    raise _cut(f"bad Content-Range: {exc}", url) from None
                if not state.same_file(total, response.headers):
                    state.restart()
                    raise _cut("the file changed since the download began; starting again", url)
            elif status == 200:
                state.restart()  # a whole file: the server ignored Range, or this is the first request
                length = response.headers.get("Content-Length", "")
                state.identify(int(length) if length.isdigit() else None, response.headers)
            elif status == 416:  # the file is now shorter than what we have: not ours to extend
                state.restart()
                raise _cut("the file changed since the download began (416); starting again", url)
            else:
                raise error_for_response(_error_head(response), "GET", key)
            for chunk in response.iter_raw():  # as the bytes come: a trickle is seen at once
                state.write(chunk)
                pace.check(state.received, path)
    except httpx.TransportError as exc:
        if end is not None and time.monotonic() >= end:
            raise BabouDownloadStalledError(
                "the task's deadline passed during the download", method="GET", path=path
            ) from exc
        raise transport_error(exc, "GET", url, key) from exc
    if state.total is not None and state.offset != state.total:
        if state.offset > state.total:
            state.restart()
        raise _cut(f"download ended at {state.offset} of {state.total} bytes", url)


def _error_head(response: httpx.Response) -> httpx.Response:
    """An error answer with at most :data:`ERROR_BODY_MAX` bytes of its body: enough for a message."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_MAX:
            break
    kept = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "retry-after")}
    return httpx.Response(
        response.status_code, headers=kept, content=body[:ERROR_BODY_MAX], request=response.request
    )


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or ``None`` for ``*``); ``ValueError`` if garbled."""
    unit, _, spec = value.partition(" ")
    span, _, total = spec.partition("/")
    if unit != "bytes" or not span or not total:
        raise ValueError(f"unreadable Content-Range {value[:60]!r}")
    return int(span.partition("-")[0]), None if total == "*" else int(total)
