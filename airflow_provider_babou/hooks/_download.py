"""Downloading an export: one streamed request at a time, resumed with ``Range`` until whole.

Used by :meth:`BabouHook.download_export`; HTTP goes through the hook's client, the file work
through :class:`~._transfer.DownloadState`. A remote destination is written as the bytes arrive
and a resumed request appends to the same open object, so no local copy is ever made.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_babou.exceptions import (
    BabouDownloadExpiredError,
    BabouError,
    BabouInputError,
    BabouTransportError,
)
from airflow_provider_babou.hooks._http import error_for_response, is_transient, transport_error
from airflow_provider_babou.hooks._transfer import CHUNK_SIZE, DownloadState, check_destination
from airflow_provider_babou.models import DownloadResult, ExportStatus

if TYPE_CHECKING:
    from airflow_provider_babou.hooks.babou import BabouHook

log = logging.getLogger(__name__)


def download(hook: BabouHook, pid: str, destination: Any, *, overwrite: bool) -> DownloadResult:
    """Download project ``pid``'s completed export to ``destination`` (checked before any request)."""
    local, remote = check_destination(destination, overwrite=overwrite)
    export = hook.get_export(pid)
    if export.status is not ExportStatus.COMPLETED or not export.download_url:
        raise BabouInputError(
            f"the export of project {pid} is {export.status.value}, not completed: nothing to download",
            hint="wait for the export first",
        )
    url, refreshed, resumes = export.download_url, False, 0
    give_up = time.monotonic() + hook.config.retry_deadline
    state = DownloadState(local, remote)
    try:
        while True:
            try:
                _stream(hook, url, state)
                break
            except BabouError as err:
                if err.http_status == 403 and not refreshed:
                    refreshed, url = True, hook.get_export(pid).download_url or url
                    continue
                if err.http_status == 403:
                    raise BabouDownloadExpiredError(
                        "the export's download URL has expired (403), even after fetching a fresh one",
                        http_status=403,
                        hint=f"fetch the export status of {pid} again for a new download_url",
                    ) from err
                resumes += 1
                if not is_transient(err) or time.monotonic() > give_up:
                    raise
                log.warning("Download of %s interrupted at %d bytes (%s); resuming", pid, state.offset, err)
                time.sleep(min(0.5 * resumes, 5.0))
        state.finish(local, overwrite=overwrite)
    except BaseException:
        state.discard()
        raise
    path = str(remote if remote is not None else local)
    return DownloadResult(path=path, size=state.offset, sha256=state.sha256.hexdigest(), project_id=pid)


def _stream(hook: BabouHook, url: str, state: DownloadState) -> None:
    """One download request from ``state.offset``: append to the file, raise a typed error if cut."""
    headers = {"Accept-Encoding": "identity"}  # byte offsets must refer to the file itself
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    key = hook.config.api_key
    try:
        with hook.get_conn().stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 206:
                try:
                    start, total = _content_range(response.headers.get("Content-Range", ""))
                    if start != state.offset:
                        raise ValueError("a range we did not ask for")
                except ValueError as exc:  # start over rather than corrupt the file
                    state.restart()
                    raise BabouTransportError(
                        f"bad Content-Range: {exc}", method="GET", path=httpx.URL(url).path
                    ) from None
                state.total = total
            elif status == 200:
                state.restart()  # a whole file: the server ignored Range, or this is the first request
                length = response.headers.get("Content-Length", "")
                state.total = int(length) if length.isdigit() else None
            elif status == 416 and state.total is not None and state.offset >= state.total:
                return
            else:
                response.read()
                raise error_for_response(response, "GET", key)
            for chunk in response.iter_raw(CHUNK_SIZE):
                state.write(chunk)
    except httpx.TransportError as exc:
        raise transport_error(exc, "GET", url, key) from exc
    if state.total is not None and state.offset != state.total:
        if state.offset > state.total:
            state.restart()
        raise BabouTransportError(
            f"download ended at {state.offset} of {state.total} bytes",
            method="GET",
            path=httpx.URL(url).path,
        )


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or ``None`` for ``*``); ``ValueError`` if garbled."""
    unit, _, spec = value.partition(" ")
    span, _, total = spec.partition("/")
    if unit != "bytes" or not span or not total:
        raise ValueError(f"unreadable Content-Range {value[:60]!r}")
    return int(span.partition("-")[0]), None if total == "*" else int(total)
