"""Control endpoints under ``/_emulator`` (no auth; a Bearer key selects the key where relevant).

They are never rate limited, faulted or counted, and stay up during a scripted outage.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from airflow_provider_babou.emulator import schemas
from airflow_provider_babou.emulator.config import mask_key
from airflow_provider_babou.emulator.faults import ScriptedFault
from airflow_provider_babou.emulator.routes_api import emulator_state
from airflow_provider_babou.emulator.state import Outage
from airflow_provider_babou.emulator.store import ApiError

router = APIRouter(prefix="/_emulator", tags=["Emulator control"], responses=schemas.errors(400))


@router.get("/stats")
async def stats(request: Request) -> JSONResponse:
    """Counters in total, and for the calling key when a valid Bearer key is sent."""
    state = emulator_state(request)
    key = state.key_from_header(request.headers.get("authorization"))
    total = {**state.store.counts(None), **state.stats.snapshot(None)}
    mine = None if key is None else {**state.store.counts(key), **state.stats.snapshot(key)}
    return JSONResponse({"total": total, "key": mine})


@router.post("/reset")
async def reset(request: Request) -> JSONResponse:
    """Wipe data, counters, scripted faults and rate buckets; restore the start-up config."""
    state = emulator_state(request)
    state.reset()
    return JSONResponse({"reset": True, "config": state.config.public()})


@router.get("/config")
async def get_config(request: Request) -> JSONResponse:
    return JSONResponse(emulator_state(request).config.public())


@router.patch("/config")
async def patch_config(request: Request, patch: dict[str, Any]) -> JSONResponse:
    """Partial update; ``faults`` takes a profile name or an object of profile fields."""
    try:
        config = emulator_state(request).update_config(patch)
    except ValidationError as exc:
        hint = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ApiError(400, "VALIDATION_ERROR", "Invalid emulator config", hint) from None
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", "Invalid emulator config", str(exc)) from None
    return JSONResponse(config.public())


@router.post("/fail-next", responses=schemas.errors(401))
async def fail_next(request: Request, body: schemas.FailNext) -> JSONResponse:
    """Make the calling key's next ``count`` prompts/exports/assets/uploads fail."""
    state = emulator_state(request)
    key = state.authenticate(request.headers.get("authorization"))
    state.store.fail_next(key, body.kind, body.count, body.message)
    return JSONResponse({"key": mask_key(key), "kind": body.kind, "count": body.count})


@router.post("/seed", responses=schemas.errors(401))
async def seed(request: Request, body: schemas.Seed) -> JSONResponse:
    """Give the calling key ``projects`` old empty projects (an account with a history)."""
    state = emulator_state(request)
    key = state.authenticate(request.headers.get("authorization"))
    state.store.seed_projects(key, body.projects, body.age_seconds)
    return JSONResponse({"key": mask_key(key), "projects": body.projects})


@router.post("/faults")
async def script_fault(request: Request, body: schemas.ScriptFault) -> JSONResponse:
    """Inject an exact fault into the next ``count`` matching requests (any key)."""
    try:
        pattern = re.compile(body.path) if body.path is not None else None
    except re.error as exc:
        raise ApiError(400, "VALIDATION_ERROR", "Invalid path pattern", str(exc)) from None
    state = emulator_state(request)
    state.faults.script(
        ScriptedFault(body.fault, body.method, pattern, body.count, body.seconds, body.after_bytes)
    )
    return JSONResponse({"scripted": state.faults.pending()})


def _outage_status(outage: Outage | None) -> dict[str, Any]:
    if outage is None:
        return {"active": False, "mode": None, "seconds_left": 0.0}
    return {"active": True, "mode": outage.mode, "seconds_left": round(outage.seconds_left(), 3)}


@router.post("/outage", responses={200: {"model": schemas.OutageStatus}})
async def start_outage(request: Request, body: schemas.OutageRequest) -> JSONResponse:
    """Fail every ``/api/v1`` and ``/downloads`` request for ``seconds``, then recover by itself.

    ``drop`` (default): the request is read, then the connection is closed without a response;
    ``reset``: the connection is aborted (TCP RST) unread; ``503``: an nginx-style HTML 503 page.
    No request that arrives during the outage reaches a route, so none takes effect. ``seconds: 0``
    ends an outage at once; a new call replaces the current one.
    """
    state = emulator_state(request)
    return JSONResponse(_outage_status(state.start_outage(body.seconds, body.mode)))


@router.get("/outage", responses={200: {"model": schemas.OutageStatus}})
async def outage_status(request: Request) -> JSONResponse:
    """Whether an outage is in force, its mode and the seconds left."""
    return JSONResponse(_outage_status(emulator_state(request).outage()))
