"""Builds the emulator's FastAPI app: routes, Babou-style error handlers, middleware."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_babou.emulator import routes_api, routes_control, routes_download
from airflow_provider_babou.emulator.config import EmulatorConfig
from airflow_provider_babou.emulator.middleware import EmulatorMiddleware
from airflow_provider_babou.emulator.state import EmulatorState
from airflow_provider_babou.emulator.store import ApiError

log = logging.getLogger(__name__)

# Hints for FastAPI-validated query parameters (everything else is validated by hand).
_QUERY_HINTS = {
    "limit": "limit must be an integer between 1 and 100",
    "offset": "offset must be a non-negative integer",
}


def _envelope(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _envelope(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 never escapes: it becomes the documented 400 ``VALIDATION_ERROR``."""
    assert isinstance(exc, RequestValidationError)
    hint = "Check the request parameters and body"
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        if len(loc) >= 2 and loc[0] == "query" and loc[1] in _QUERY_HINTS:
            hint = _QUERY_HINTS[loc[1]]
            break
        if loc and loc[0] == "body":
            if err.get("type") == "json_invalid":
                return _envelope(ApiError(400, "VALIDATION_ERROR", "Invalid JSON body", "Send a JSON object"))
            hint = f"{'.'.join(loc[1:]) or 'body'}: {err.get('msg')}"
            break
    return _envelope(ApiError(400, "VALIDATION_ERROR", "Validation failed", hint))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's own body parsing (the control endpoints' models) failed on something other
        # than a JSONDecodeError, e.g. a RecursionError on a deeply nested body.
        hint = "Send a valid JSON object that is not deeply nested"
        return _envelope(ApiError(400, "VALIDATION_ERROR", "Invalid JSON body", hint))
    codes = {404: ("NOT_FOUND", "Not found"), 405: ("METHOD_NOT_ALLOWED", "Method not allowed")}
    code, error = codes.get(exc.status_code, ("HTTP_ERROR", str(exc.detail)))
    return _envelope(ApiError(exc.status_code, code, error, headers=dict(exc.headers or {})))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("Unhandled emulator error", exc_info=exc)
    return _envelope(ApiError(500, "INTERNAL_ERROR", "Internal server error"))


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator app with its own state (``app.state.emulator``)."""
    state = EmulatorState(config or EmulatorConfig())
    app = FastAPI(
        title="Babou API emulator",
        description=(
            "Local emulator of the Babou text-to-video REST API (https://api.babou.ai/api/v1) for "
            "tests and demos, plus /_emulator control endpoints. See docs/emulator.md."
        ),
        version="1.0.0",
        openapi_url="/openapi.json",
    )
    app.state.emulator = state
    app.include_router(routes_api.router)
    app.include_router(routes_download.router)
    app.include_router(routes_control.router)
    handlers: dict[Any, Any] = {
        ApiError: _api_error,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
        Exception: _unexpected,
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, handler)
    app.add_middleware(EmulatorMiddleware, state=state, router=app.router)
    _declare_bearer(app)
    return app


def _declare_bearer(app: FastAPI) -> None:
    """Document Bearer auth on /api/v1 in the OpenAPI schema (checked by hand in the routes)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "sk-bab-… API key"}
            }
            for path, ops in schema.get("paths", {}).items():
                if path.startswith("/api/v1"):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
