"""Export downloads: ``GET``/``HEAD /downloads/{project_id}.mp4?expires=<unix seconds>``.

The path names the project, as the docs' example ``.../exports/prj_abc123xyz.mp4`` does: it serves
the project's newest completed export, so a re-export replaces the file behind the same URL. No
Authorization is needed (the URL itself is the credential, like a signed CDN link); after
``expires`` (ASCII digits only, else 403 ``URL_INVALID``) the URL answers 403 ``URL_EXPIRED``.
Supports single byte ranges; a syntactically invalid ``Range`` is ignored (RFC 9110 14.2). The
``ETag`` is the export id: an ``If-Range`` naming another export gets the whole (new) file.

The first request for an export (``HEAD`` too: its ``Content-Length`` is the video's size) waits
for the video to render on a worker thread; later ones are served from the cached file. A
response holds its file open, so an emulator reset during a download lets it finish.
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
    try:
        for chunk in mp4.iter_range(start, end):
            yield chunk
    finally:
        mp4.close()


_MP4 = {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {**_MP4, "description": "The whole file"},
    206: {**_MP4, "description": "The requested byte range"},
    416: {"description": "Range not satisfiable"},
    **schemas.errors(403, 404, 500),
}


@router.head(
    "/downloads/{project_id}.mp4", response_class=Response, responses=_RESPONSES, operation_id="head_download"
)
@router.get(
    "/downloads/{project_id}.mp4", response_class=Response, responses=_RESPONSES, operation_id="download"
)
async def download(request: Request, project_id: str, expires: str | None = Query(None)) -> Response:
    state = emulator_state(request)
    # isdigit() alone takes "²", which int() refuses.
    if expires is None or not (expires.isascii() and expires.isdigit()):
        raise ApiError(403, "URL_INVALID", "Download URL is invalid", _FRESH_HINT)
    if time.time() >= int(expires):
        raise ApiError(403, "URL_EXPIRED", "Download URL has expired", _FRESH_HINT)
    export = state.store.download(project_id)
    if export is None:
        raise ApiError(404, "NOT_FOUND", "Export not found")
    export_id, owner, plan = export
    video = state.videos.get(export_id, plan, lambda: state.stats.video_rendered(owner))
    try:
        mp4 = VirtualMp4(await asyncio.wrap_future(video), state.config.mp4_size)
    except FileNotFoundError:  # an emulator reset deleted the video before this request opened it
        raise ApiError(404, "NOT_FOUND", "Export not found") from None
    # The export id is a strong ETag: a re-export behind the same URL is another file.
    etag = f'"{export_id}"'
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4", "ETag": etag}
    start, end, status = 0, mp4.size, 200
    # If-Range that is not this file's ETag (a date, or another export's): the whole file (RFC 9110 13.1.5).
    if_range = request.headers.get("if-range")
    wanted = (request.headers.get("range") or "") if if_range in (None, etag) else ""
    parsed = parse_range(wanted, mp4.size)
    if parsed is False:
        mp4.close()
        return Response(status_code=416, headers={"Content-Range": f"bytes */{mp4.size}", **headers})
    if parsed is not None:
        start, end = parsed
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{mp4.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        mp4.close()
        return Response(status_code=status, headers=headers)
    return StreamingResponse(_stream(mp4, start, end), status_code=status, headers=headers)
