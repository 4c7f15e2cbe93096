"""The Babou REST endpoints under ``/api/v1`` (spec section 3, with the section 10 decisions).

Bodies are validated by hand rather than by FastAPI models so that every failure is a 400
``VALIDATION_ERROR`` with a specific hint, bools are not taken for integers, and unknown fields
are ignored.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from airflow_provider_babou import endpoints
from airflow_provider_babou.emulator import schemas
from airflow_provider_babou.emulator.state import EmulatorState
from airflow_provider_babou.emulator.store import ApiError
from airflow_provider_babou.limits import (
    DESCRIPTION_MAX,
    MAX_UPLOAD_BYTES,
    NAME_MAX,
    PROMPT_MAX,
    SUPPORTED_CONTENT_TYPES,
)

_TYPES_HINT = "Supported types: " + ", ".join(SUPPORTED_CONTENT_TYPES)
ASSET_STATES = ("uploading", "processing", "ready", "error", "failed")
_NAME_HINT = f"Name must be between 1 and {NAME_MAX} characters"
MAX_JSON_DEPTH = 64
"""Deepest nesting of objects/arrays accepted in a JSON body (the body itself is level 1).

A body that parses but nests near Python's recursion limit could not be stored and echoed back
(``settings``) without a ``RecursionError``; deeper ones fail in the parser. Both are 400s."""
_DEPTH_HINT = f"The request body must be a JSON object nested at most {MAX_JSON_DEPTH} levels deep"
_SURROGATE_HINT = "Strings must be valid Unicode: a \\uD800-\\uDFFF escape needs its pair"
CHAPTER_DURATION_MAX = 86_400
"""Longest chapter the emulator takes, in seconds (the docs set no limit; a rendered MP4 holds a
card for under 2**17 s)."""


def emulator_state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def api_key(request: Request) -> str:
    """The caller's valid API key (dependency; raises the documented 401s)."""
    return emulator_state(request).authenticate(request.headers.get("authorization"))


router = APIRouter(
    prefix=endpoints.API_PREFIX,
    responses=schemas.errors(401, 429, 500),
    tags=["Babou API"],
)

Key = Depends(api_key)


def _ok(data: Any) -> JSONResponse:
    return JSONResponse(data)


def _invalid(hint: str, error: str = "Validation failed") -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", error, hint)


async def _json_object(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise _invalid(
            "Send the body as JSON with the header Content-Type: application/json",
            "Content-Type must be application/json",
        )
    try:
        data = json.loads(await request.body())
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        raise _invalid("The request body must be a valid JSON object", "Invalid JSON body") from None
    except RecursionError:  # json.loads recurses once per nesting level
        raise _invalid(_DEPTH_HINT, "Invalid JSON body") from None
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object", "Invalid JSON body")
    if _nesting_exceeds(data, MAX_JSON_DEPTH):
        raise _invalid(_DEPTH_HINT, "Invalid JSON body")
    try:
        # JSON's \ud800 escapes parse to lone surrogates, which no response could encode later.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise _invalid(_SURROGATE_HINT, "Invalid JSON body") from None
    return data


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _name(data: dict[str, Any]) -> str:
    name = data.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
        raise _invalid(_NAME_HINT)
    return name


def _body_doc(model: type[schemas.BaseModel]) -> dict[str, Any]:
    """openapi_extra for a hand-parsed JSON body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _page(limit: int, offset: int, items: list[dict[str, Any]], total: int, key: str) -> dict[str, Any]:
    return {key: items, "pagination": {"limit": limit, "offset": offset, "total": total}}


Limit = Query(20, ge=1, le=100, description="Page size, 1..100")
Offset = Query(0, ge=0, description="Items to skip")


# -- projects ------------------------------------------------------------------------------------


@router.post(
    endpoints.PROJECTS,
    responses={200: {"model": schemas.Project}, **schemas.errors(400)},
    openapi_extra=_body_doc(schemas.ProjectCreate),
)
async def create_project(request: Request, key: str = Key) -> JSONResponse:
    data = await _json_object(request)
    name = _name(data)
    description = data.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > DESCRIPTION_MAX):
        raise _invalid(f"Description must be at most {DESCRIPTION_MAX} characters")
    settings = data.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise _invalid("Settings must be a JSON object or null")
    return _ok(emulator_state(request).store.create_project(key, name, description, settings))


@router.get(endpoints.PROJECTS, responses={200: {"model": schemas.ProjectList}, **schemas.errors(400)})
async def list_projects(
    request: Request, key: str = Key, limit: int = Limit, offset: int = Offset
) -> JSONResponse:
    items, total = emulator_state(request).store.list_projects(key, limit, offset)
    return _ok(_page(limit, offset, items, total, "projects"))


@router.get(endpoints.PROJECT, responses={200: {"model": schemas.Project}, **schemas.errors(404)})
async def get_project(request: Request, project_id: str, key: str = Key) -> JSONResponse:
    return _ok(emulator_state(request).store.get_project(key, project_id))


# -- chapters and prompts --------------------------------------------------------------------


@router.post(
    endpoints.CHAPTERS,
    responses={200: {"model": schemas.ChapterCreated}, **schemas.errors(400, 404)},
    openapi_extra=_body_doc(schemas.ChapterCreate),
)
async def create_chapter(request: Request, project_id: str, key: str = Key) -> JSONResponse:
    store = emulator_state(request).store
    store.get_project(key, project_id)  # an unknown project is a 404 before any body check
    data = await _json_object(request)
    name = _name(data)
    duration = data.get("duration")
    if duration is not None and (type(duration) is not int or duration < 1):
        raise _invalid("Duration must be a positive integer")
    if duration is not None and duration > CHAPTER_DURATION_MAX:
        raise _invalid(f"Duration must be at most {CHAPTER_DURATION_MAX} seconds")
    return _ok(store.create_chapter(key, project_id, name, duration))


@router.get(
    endpoints.CHAPTERS,
    responses={200: {"model": schemas.ChapterList}, **schemas.errors(404)},
)
async def list_chapters(request: Request, project_id: str, key: str = Key) -> JSONResponse:
    return _ok(emulator_state(request).store.list_chapters(key, project_id))


@router.get(
    endpoints.CHAPTER,
    responses={200: {"model": schemas.ChapterDetail}, **schemas.errors(404)},
)
async def get_chapter(request: Request, project_id: str, chapter_id: str, key: str = Key) -> JSONResponse:
    return _ok(emulator_state(request).store.get_chapter(key, project_id, chapter_id))


@router.post(
    endpoints.PROMPT,
    responses={200: {"model": schemas.PromptReceipt}, **schemas.errors(400, 404, 409)},
    openapi_extra=_body_doc(schemas.PromptSubmit),
)
async def submit_prompt(request: Request, project_id: str, chapter_id: str, key: str = Key) -> JSONResponse:
    store = emulator_state(request).store
    store.get_chapter(key, project_id, chapter_id)
    data = await _json_object(request)
    content = data.get("content")
    if not isinstance(content, str) or not 1 <= len(content) <= PROMPT_MAX:
        raise _invalid(f"Content must be between 1 and {PROMPT_MAX} characters", "Invalid prompt content")
    force = data.get("force", False)
    if force is None:
        force = False
    if not isinstance(force, bool):
        raise _invalid("force must be a boolean")
    return _ok(store.submit_prompt(key, project_id, chapter_id, content, force))


# -- exports ---------------------------------------------------------------------------------------


@router.post(
    endpoints.EXPORT,
    responses={200: {"model": schemas.ExportReceipt}, **schemas.errors(400, 404, 409)},
)
async def start_export(request: Request, project_id: str, key: str = Key) -> JSONResponse:
    return _ok(emulator_state(request).store.start_export(key, project_id))


@router.get(
    endpoints.EXPORT,
    responses={200: {"model": schemas.ExportStatus}, **schemas.errors(404)},
)
async def export_status(request: Request, project_id: str, key: str = Key) -> JSONResponse:
    state = emulator_state(request)
    status, error, seconds = state.store.export_status(key, project_id)
    body: dict[str, Any] = {"status": status, "download_url": None}
    if status == "completed":
        # A fresh signed-looking URL on every poll, like a CDN link with an expiry. Its path names
        # the project, as the docs' example does: the same for every export of the project.
        expires = int(time.time() + state.config.download_ttl_seconds)
        body["download_url"] = f"{request.base_url}downloads/{project_id}.mp4?expires={expires}"
        body["duration_seconds"] = seconds
    elif status == "failed":
        body["error"] = error
    return _ok(body)


# -- assets ----------------------------------------------------------------------------------------


@router.post(
    endpoints.ASSETS,
    responses={200: {"model": schemas.Asset}, **schemas.errors(400, 413)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The raw file bytes; Content-Type is the file's MIME type.",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in SUPPORTED_CONTENT_TYPES
            },
        }
    },
)
async def upload_asset(request: Request, key: str = Key) -> JSONResponse:
    state = emulator_state(request)
    raw_type = request.headers.get("content-type")
    if not raw_type or not raw_type.strip():
        raise _invalid(_TYPES_HINT, "Content-Type header is required")
    content_type = raw_type.split(";")[0].strip().lower()
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise _invalid(_TYPES_HINT, "Unsupported content type")
    too_large = ApiError(
        413,
        "FILE_TOO_LARGE",
        "File size exceeds maximum allowed size of 100MB",
        f"Upload files of at most {MAX_UPLOAD_BYTES} bytes",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise too_large  # decided before reading the body, as a real edge would
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise too_large
    if size == 0:
        raise _invalid("Send the file's bytes as the request body", "File is empty")
    if state.store.take_upload_failure(key):
        raise ApiError(500, "UPLOAD_FAILED", "Failed to upload file to storage", "Retry the upload")
    return _ok(state.store.create_asset(key, content_type, size))


@router.get(endpoints.ASSETS, responses={200: {"model": schemas.AssetList}, **schemas.errors(400)})
async def list_assets(
    request: Request,
    key: str = Key,
    limit: int = Limit,
    offset: int = Offset,
    content_type: str | None = Query(None, alias="contentType", description="Exact MIME type"),
    state: str | None = Query(None, description="uploading, processing, ready, error (or failed)"),
) -> JSONResponse:
    states: tuple[str, ...] | None = None
    if state is not None:
        if state not in ASSET_STATES:
            raise _invalid("state must be one of: " + ", ".join(ASSET_STATES))
        # The list docs say `failed` where the object says `error`: treat them as one.
        states = ("error",) if state in ("error", "failed") else (state,)
    items, total = emulator_state(request).store.list_assets(key, limit, offset, content_type, states)
    return _ok(_page(limit, offset, items, total, "assets"))


@router.get(endpoints.ASSET, responses={200: {"model": schemas.Asset}, **schemas.errors(404)})
async def get_asset(request: Request, asset_id: str, key: str = Key) -> JSONResponse:
    return _ok(emulator_state(request).store.get_asset(key, asset_id))
