"""Pydantic models describing requests and responses, used for the OpenAPI schema.

Handlers return plain JSON (validated by hand, so errors follow the Babou envelope); these models
document the exact shapes and let schemathesis check responses against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_babou.limits import DESCRIPTION_MAX, NAME_MAX, PROMPT_MAX


class ErrorBody(BaseModel):
    """The flat Babou error envelope; ``hint`` is omitted when there is none."""

    error: str
    code: str
    hint: str | None = None


class Pagination(BaseModel):
    limit: int
    offset: int
    total: int


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    settings: dict[str, Any] | None = None


class Project(BaseModel):
    id: str
    name: str
    description: str | None
    settings: dict[str, Any] | None
    active_export_id: str | None
    created_at: str


class ProjectList(BaseModel):
    projects: list[Project]
    pagination: Pagination


class ChapterCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    duration: int | None = Field(None, ge=1)


class ChapterCreated(BaseModel):
    id: str
    project_id: str
    name: str
    duration: int | None
    created_at: str


class Chapter(ChapterCreated):
    status: Literal["ready", "processing", "error"]
    prompt_count: int


class ChapterList(BaseModel):
    project_id: str
    chapters: list[Chapter]


class Prompt(BaseModel):
    id: str
    content: str
    status: Literal["processing", "completed", "failed"]
    result: str | None
    created_at: str


class ChapterDetail(Chapter):
    prompts: list[Prompt]


class PromptSubmit(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: str = Field(min_length=1, max_length=PROMPT_MAX)
    force: bool = False


class PromptReceipt(BaseModel):
    prompt_id: str
    status: Literal["processing"]
    message: str
    estimated_time: str


class ExportReceipt(BaseModel):
    status: Literal["queued"]
    message: str
    estimated_time: str


class ExportStatus(BaseModel):
    """``download_url`` is set only when completed; ``error`` only when failed."""

    status: Literal["queued", "processing", "completed", "failed"]
    download_url: str | None
    error: str | None = None
    duration_seconds: int | None = None


class Asset(BaseModel):
    id: str
    name: str
    url: str | None
    content_type: str
    size: int | None
    state: Literal["uploading", "processing", "ready", "error"]
    duration: float | None
    width: int | None
    height: int | None
    created_at: str


class AssetList(BaseModel):
    assets: list[Asset]
    pagination: Pagination


class FailNext(BaseModel):
    """Body of ``POST /_emulator/fail-next``; ``count: 0`` clears the kind."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["prompt", "export", "asset", "upload"]
    count: int = Field(1, ge=0)
    message: str | None = None


class Seed(BaseModel):
    """Body of ``POST /_emulator/seed``: ``projects`` empty projects made ``age_seconds`` ago."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    projects: int = Field(ge=0, le=1_000_000)
    age_seconds: float = Field(86400.0, ge=0, le=10 * 365 * 86400)


class ScriptFault(BaseModel):
    """Body of ``POST /_emulator/faults``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    fault: Literal[
        "500", "502_html", "503_html", "504_empty", "429", "drop_before", "drop_after", "delay_after"
    ]
    method: str | None = None
    path: str | None = None
    count: int = Field(1, ge=1)
    seconds: float | None = Field(None, ge=0)
    after_bytes: int | None = Field(None, ge=0)


class OutageRequest(BaseModel):
    """Body of ``POST /_emulator/outage``; ``seconds: 0`` ends an outage early."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seconds: float = Field(ge=0, le=3600)
    mode: Literal["drop", "reset", "503"] = "drop"


class OutageStatus(BaseModel):
    """An outage's state: ``active`` false (and ``mode`` null) when none is in force."""

    active: bool
    mode: Literal["drop", "reset", "503"] | None
    seconds_left: float


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all using the envelope."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": "Error envelope"}
    return out
