"""Export downloads: ``GET``/``HEAD /downloads/{export_id}.mp4?expires=<unix seconds>``.

No Authorization is needed (the URL itself is the credential, like a signed CDN link); after
``expires`` the URL answers 403 ``URL_EXPIRED``. Supports single byte ranges.

The first request for an export (``HEAD`` too: its ``Content-Length`` is the video's size) waits
for the video to render on a worker thread; later ones are served from the cached file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from airflow_provider_babou.emulator import schemas
from airflow_provider_babou.emulator.media import VirtualMp4, parse_range
from airflow_provider_babou.emulator.routes_api import emulator_state
from airflow_provider_babou.emulator.store import ApiError

router = APIRouter(tags=["Downloads"])

_FRESH_HINT = "Get the export status again for a fresh download_url"


async def _stream(mp4: VirtualMp4, start: int, end: int) -> AsyncIterator[bytes]:
    for chunk in mp4.iter_range(start, end):
        yield chunk


_MP4 = {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {**_MP4, "description": "The whole file"},
    206: {**_MP4, "description": "The requested byte range"},
    416: {"description": "Range not satisfiable"},
    **schemas.errors(403, 404, 500),
}


@router.head(
    "/downloads/{export_id}.mp4", response_class=Response, responses=_RESPONSES, operation_id="head_download"
)
@router.get(
    "/downloads/{export_id}.mp4", response_class=Response, responses=_RESPONSES, operation_id="download"
)
async def download(request: Request, export_id: str, expires: str | None = Query(None)) -> Response:
    state = emulator_state(request)
    if expires is None or not expires.isdigit():
        raise ApiError(403, "URL_INVALID", "Download URL is invalid", _FRESH_HINT)
    if time.time() >= int(expires):
        raise ApiError(403, "URL_EXPIRED", "Download URL has expired", _FRESH_HINT)
    export = state.store.completed_export(export_id)
    if export is None:
        raise ApiError(404, "NOT_FOUND", "Export not found")
    owner, plan = export
    video = state.videos.get(export_id, plan, lambda: state.stats.video_rendered(owner))
    mp4 = VirtualMp4(await asyncio.wrap_future(video), state.config.mp4_size)
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
    start, end, status = 0, mp4.size, 200
    range_header = request.headers.get("range")
    if range_header:
        parsed = parse_range(range_header, mp4.size)
        if parsed is False:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{mp4.size}", **headers})
        if parsed is not None and parsed is not True:
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{mp4.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(_stream(mp4, start, end), status_code=status, headers=headers)
