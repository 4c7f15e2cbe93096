"""Pydantic models of what the Babou API returns.

Parsing is tolerant by design (see ``babou-api.md`` section 10): unknown fields are ignored,
optional keys may be missing, timestamps may carry fractions or offsets, ids are not checked
for shape, and status words the docs use interchangeably (``error``/``failed``) are synonyms.
A status word we have never seen parses as ``UNKNOWN``, which is never terminal: a wait keeps
polling rather than guessing.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: The terminal status words, shared by every status enum.
_SUCCESS_VALUES = frozenset({"completed", "ready"})
_FAILURE_VALUES = frozenset({"failed", "error"})


class _Status(str, Enum):
    """A status word; any case and surrounding spaces, a synonym (:data:`_SYNONYMS`) or ``unknown``."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            synonym = _SYNONYMS.get(cls, {}).get(lowered, lowered)
            for member in cls:
                if member.value == synonym:
                    return member
        return cls("unknown")

    @property
    def is_terminal(self) -> bool:
        """Whether the object will not change state any more."""
        return self.is_success or self.is_failure

    @property
    def is_success(self) -> bool:
        """Whether this is the successful terminal state."""
        return self.value in _SUCCESS_VALUES

    @property
    def is_failure(self) -> bool:
        """Whether this is a failed terminal state."""
        return self.value in _FAILURE_VALUES


class PromptStatus(_Status):
    """State of one prompt (an "interaction" on a chapter)."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"


class ChapterStatus(_Status):
    """Chapter status derived by Babou from its prompts.

    ``ready`` is not a success on its own: a chapter with no prompts is ``ready`` too.
    """

    READY = "ready"
    PROCESSING = "processing"
    ERROR = "error"
    UNKNOWN = "unknown"


class ExportStatus(_Status):
    """State of a project's export."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"


class AssetState(_Status):
    """State of an uploaded asset; the docs say both ``error`` and ``failed``."""

    UPLOADING = "uploading"
    PROCESSING = "processing"
    READY = "ready"
    ERROR = "error"
    UNKNOWN = "unknown"


#: Status words the docs use interchangeably, per enum: a word -> the member value it stands for.
_SYNONYMS: dict[type[_Status], dict[str, str]] = {
    PromptStatus: {"error": "failed", "cancelled": "failed", "canceled": "failed"},
    # The MCP docs show "completed" for a chapter whose prompt finished.
    ChapterStatus: {"completed": "ready", "failed": "error"},
    ExportStatus: {"error": "failed"},
    AssetState: {"failed": "error"},
}


class BabouModel(BaseModel):
    """Base of every response model: unknown fields are ignored, never an error."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Pagination(BabouModel):
    """The ``pagination`` block of a list response."""

    limit: int
    offset: int
    total: int


class Project(BabouModel):
    """A project: the container of chapters, exported as one video."""

    id: str
    name: str
    description: str | None = None
    settings: dict[str, Any] | None = None
    active_export_id: str | None = None
    created_at: datetime | None = None


class Prompt(BabouModel):
    """A prompt as nested in Get Chapter.

    ``status`` may be absent; :meth:`Chapter.prompt_status` then works it out.
    """

    id: str
    content: str = ""
    status: PromptStatus | None = None
    result: str | None = None
    created_at: datetime | None = None


class Chapter(BabouModel):
    """A chapter; ``status``, ``prompt_count`` and ``prompts`` come only from list/get responses."""

    id: str
    project_id: str | None = None
    name: str
    duration: float | None = None
    created_at: datetime | None = None
    status: ChapterStatus | None = None
    prompt_count: int | None = None
    prompts: list[Prompt] = Field(default_factory=list)

    def find_prompt(self, prompt_id: str) -> Prompt | None:
        """Return the nested prompt with this id, if the chapter holds it."""
        return next((p for p in self.prompts if p.id == prompt_id), None)

    def latest_prompt(self, content: str, since: datetime | None = None) -> Prompt | None:
        """The newest prompt with exactly ``content`` (created at or after ``since``, when given).

        It may be superseded by a newer prompt of other content: see :meth:`rendering_prompt`.
        """
        found = None
        for prompt in self.prompts:
            if prompt.content == content and (
                since is None or aware(prompt.created_at, datetime.max) >= since
            ):
                found = prompt
        return found

    def rendering_prompt(self, content: str, since: datetime | None = None) -> Prompt | None:
        """The chapter's latest prompt, the one an export renders, if it has exactly ``content``
        (and was created at or after ``since``, when given); else ``None``.

        Babou lists prompts oldest first, so the latest is the last.
        """
        latest = self.prompts[-1] if self.prompts else None
        if latest is None or latest.content != content:
            return None
        if since is not None and aware(latest.created_at, datetime.max) < since:
            return None
        return latest

    def prompt_status(self, prompt_id: str) -> PromptStatus:
        """Work out a prompt's state, using the chapter status when the prompt has no ``status``.

        Without a ``status`` key a prompt is done when its ``result`` is set and the chapter is not
        processing; it failed when the chapter is in ``error`` and it is the latest prompt.
        """
        prompt = self.find_prompt(prompt_id)
        if prompt is None:
            return PromptStatus.UNKNOWN
        if prompt.status is not None and prompt.status is not PromptStatus.UNKNOWN:
            return prompt.status
        if self.status is ChapterStatus.PROCESSING or prompt.result is None:
            return PromptStatus.PROCESSING
        if self.status is ChapterStatus.ERROR and self.prompts[-1].id == prompt_id:
            return PromptStatus.FAILED
        return PromptStatus.COMPLETED


class PromptReceipt(BabouModel):
    """What Submit Prompt returns at once; the prompt then runs for 30-90 seconds."""

    prompt_id: str
    status: PromptStatus = PromptStatus.PROCESSING
    message: str | None = None
    estimated_time: str | None = None


class ExportReceipt(BabouModel):
    """What Start Export returns; the export is addressed by its project afterwards."""

    status: ExportStatus = ExportStatus.QUEUED
    message: str | None = None
    estimated_time: str | None = None


class Export(BabouModel):
    """Get Export Status: ``download_url`` once completed, ``error`` once failed."""

    status: ExportStatus
    download_url: str | None = None
    error: str | None = None
    duration_seconds: float | None = None

    @property
    def in_flight(self) -> bool:
        """Whether the export is queued or processing."""
        return self.status in (ExportStatus.QUEUED, ExportStatus.PROCESSING)

    def fingerprint(self) -> tuple[Any, ...]:
        """What the docs let a client tell two finished exports apart by: ``status`` and ``error``.

        Not the ``download_url``: the documented one names the project, the same for each of its
        exports; nor ``duration_seconds``, which the docs do not promise.
        """
        return (self.status, self.error)


class Asset(BabouModel):
    """An uploaded media file (image, clip, audio) that prompts can reference."""

    id: str
    name: str | None = None
    url: str | None = None
    content_type: str | None = None
    size: int | None = None
    state: AssetState
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    created_at: datetime | None = None


class ChapterList(BabouModel):
    """A project's chapters as List Chapters answers them, each with ``status`` and ``prompt_count``.

    Parsed as tolerantly as any list: ``{"chapters": [...]}``, ``{"data": [...]}`` or a bare array.
    """

    chapters: list[Chapter]

    @model_validator(mode="before")
    @classmethod
    def _any_list_shape(cls, data: Any) -> Any:
        found = list_in(data, "chapters")
        return data if found is None else {"chapters": found}


def aware(value: datetime | None, default: datetime) -> datetime:
    """``value`` with a time zone (UTC if it had none); ``default`` when missing."""
    value = default if value is None else value
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


T = TypeVar("T", bound=BabouModel)
M = TypeVar("M", bound=BabouModel)


def list_in(data: Any, key: str) -> list[Any] | None:
    """The list of a list answer: ``{key: [...]}``, ``{"data"/"items": [...]}`` or a bare array."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return next((data[k] for k in (key, "data", "items") if isinstance(data.get(k), list)), None)
    return None


class Page(BabouModel, Generic[T]):
    """One page of a list endpoint; ``pagination`` is ``None`` when the API sent none."""

    items: list[T]
    pagination: Pagination | None = None

    @classmethod
    def parse(cls, model: type[M], data: Any, key: str) -> Page[M]:
        """A list answer, tolerantly: ``{key: [...]}``, ``{"data"/"items": [...]}`` or a bare array;
        an unreadable ``pagination`` is none. ``ValueError`` when no list is found; pydantic's
        ``ValidationError`` for an item of the wrong shape."""
        items, pagination = list_in(data, key), None
        if isinstance(data, dict):
            with contextlib.suppress(ValidationError):
                pagination = Pagination.model_validate(data["pagination"]) if "pagination" in data else None
        if items is None:
            raise LookupError(f"no {key!r} or 'data' list")
        return Page[model](items=[model.model_validate(i) for i in items], pagination=pagination)  # type: ignore[valid-type]


class DownloadResult(BabouModel):
    """A finished download: where it is, how big, its SHA-256, and the URL it came from (it expires)."""

    path: str
    size: int
    sha256: str
    project_id: str
    download_url: str | None = None
