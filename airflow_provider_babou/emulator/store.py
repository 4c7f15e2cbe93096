"""In-memory, thread-safe emulator data with lazily computed state machines.

Nothing runs in the background: each object stores the wall-clock times at which it changes state,
and its current state is computed when read. That keeps the emulator deterministic and cheap.
Every public method takes the store's lock.
"""

from __future__ import annotations

import math
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_babou.emulator.config import FAIL_EXPORT_MARKER, FAIL_PROMPT_MARKER, EmulatorConfig
from airflow_provider_babou.emulator.video import DEFAULT_CHAPTER_SECONDS, Segment, VideoPlan

_ALPHABET = string.ascii_letters + string.digits

PROMPT_DONE_RESULT = "Video content created successfully"
PROMPT_FAILED_RESULT = "Prompt processing failed: the emulator was told to fail this prompt"
SUPERSEDED_RESULT = "Cancelled: superseded by a newer prompt"
EXPORT_FAILED_DEFAULT = "Export failed: the emulator was told to fail this export"
ASSET_FAILED_DEFAULT = "Asset processing failed"


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 21 random alphanumerics (the documented ID shape)."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


def iso(ts: float) -> str:
    """Whole-second UTC ISO 8601 with ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def estimate(seconds: float) -> str:
    """Babou's ``estimated_time`` for a job the emulator completes in exactly ``seconds``: from that
    time to half as long again ("45-68 seconds"), in minutes from a low end of one minute."""
    low, high = math.floor(seconds), max(1, math.ceil(seconds * 1.5))
    if low < 60:
        return f"{low}-{high} seconds"
    return f"{low // 60}-{math.ceil(high / 60)} minutes"


class ApiError(Exception):
    """An error answered with the flat Babou envelope ``{"error", "code", "hint"?}``."""

    def __init__(
        self,
        status: int,
        code: str,
        error: str,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.code = code
        self.error = error
        self.hint = hint
        self.headers = headers

    def body(self) -> dict[str, str]:
        data = {"error": self.error, "code": self.code}
        if self.hint is not None:
            data["hint"] = self.hint
        return data


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


@dataclass
class Prompt:
    id: str
    content: str
    created: float
    done_at: float
    fail_message: str | None = None
    superseded: bool = False
    forced: bool = False  # submitted with force: true (counted in the stats, not shown by the API)

    def status(self, now: float) -> str:
        if self.superseded:
            return "failed"
        if now < self.done_at:
            return "processing"
        return "failed" if self.fail_message is not None else "completed"

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        if status == "processing":
            result = None
        elif self.superseded:
            result = SUPERSEDED_RESULT
        else:
            result = self.fail_message or PROMPT_DONE_RESULT
        return {
            "id": self.id,
            "content": self.content,
            "status": status,
            "result": result,
            "created_at": iso(self.created),
        }


@dataclass
class Chapter:
    id: str
    project_id: str
    name: str
    duration: int | None
    created: float
    prompts: list[Prompt] = field(default_factory=list)

    def status(self, now: float) -> str:
        if not self.prompts:
            return "ready"
        if any(p.status(now) == "processing" for p in self.prompts):
            return "processing"
        return "error" if self.prompts[-1].status(now) == "failed" else "ready"

    def completed(self, now: float) -> bool:
        """Counts for export: the latest prompt completed (a chapter without prompts does not)."""
        return bool(self.prompts) and self.prompts[-1].status(now) == "completed"

    def segment(self) -> Segment:
        """The chapter as an export shows it: name, latest prompt, length (2 s without a duration)."""
        return Segment(self.name, self.prompts[-1].content, self.duration or DEFAULT_CHAPTER_SECONDS)

    def to_json(self, now: float, *, summary: bool = True, detail: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "duration": self.duration,
            "created_at": iso(self.created),
        }
        if summary:
            data["status"] = self.status(now)
            data["prompt_count"] = len(self.prompts)
        if detail:
            data["prompts"] = [p.to_json(now) for p in self.prompts]
        return data


@dataclass
class Export:
    id: str
    project_id: str
    owner: str
    created: float
    processing_at: float
    done_at: float
    # What the video shows: the chapters included when the export started, as they were then.
    plan: VideoPlan
    fail_message: str | None = None

    @property
    def video_seconds(self) -> int:
        return sum(segment.seconds for segment in self.plan.segments)

    def status(self, now: float) -> str:
        if now < self.processing_at:
            return "queued"
        if now < self.done_at:
            return "processing"
        return "failed" if self.fail_message is not None else "completed"


@dataclass
class Project:
    id: str
    owner: str
    name: str
    description: str | None
    settings: dict[str, Any] | None
    created: float
    seq: int
    chapters: list[Chapter] = field(default_factory=list)
    export: Export | None = None
    # 1-based chapter positions whose prompts asked the next export to fail.
    fail_export_chapters: list[int] = field(default_factory=list)

    def active_export_id(self, now: float) -> str | None:
        if self.export is not None and self.export.status(now) in ("queued", "processing"):
            return self.export.id
        return None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "settings": self.settings,
            "active_export_id": self.active_export_id(now),
            "created_at": iso(self.created),
        }


# Plausible metadata an asset gets once "processed", by top-level MIME type.
_READY_META: dict[str, tuple[int | None, int | None, float | None]] = {
    "video": (1920, 1080, 12.0),
    "image": (1920, 1080, None),
    "audio": (None, None, 30.0),
}


@dataclass
class Asset:
    id: str
    owner: str
    content_type: str
    size: int
    created: float
    ready_at: float
    seq: int
    fail_message: str | None = None

    def state(self, now: float) -> str:
        if now < self.ready_at:
            return "processing"
        return "error" if self.fail_message is not None else "ready"

    def to_json(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        width = height = None
        duration: float | None = None
        if state == "ready":
            width, height, duration = _READY_META.get(self.content_type.split("/")[0], (None, None, None))
        return {
            "id": self.id,
            "name": "uploaded-file",
            "url": f"s3://babou-assets/assets/{self.id}-original",
            "content_type": self.content_type,
            "size": self.size,
            "state": state,
            "duration": duration,
            "width": width,
            "height": height,
            "created_at": iso(self.created),
        }


@dataclass
class _FailNext:
    count: int
    message: str | None


FAIL_KINDS = ("prompt", "export", "asset", "upload")


class Store:
    """All projects, chapters, prompts, exports and assets, partitioned by API key."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._projects: dict[str, Project] = {}
        self._assets: dict[str, Asset] = {}
        self._exports: dict[str, Export] = {}
        self._fail_next: dict[tuple[str, str], _FailNext] = {}
        self._seq = 0

    # -- helpers (caller holds the lock) -------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _project(self, key: str, project_id: str) -> Project:
        project = self._projects.get(project_id)
        if project is None or project.owner != key:
            raise not_found("Project")
        return project

    def _chapter(self, key: str, project_id: str, chapter_id: str) -> tuple[Project, Chapter]:
        project = self._project(key, project_id)
        for chapter in project.chapters:
            if chapter.id == chapter_id:
                return project, chapter
        raise not_found("Chapter")

    def _take_fail(self, key: str, kind: str, default: str) -> str | None:
        """Consume one scripted failure of ``kind``: its message (or ``default``), else None."""
        entry = self._fail_next.get((key, kind))
        if entry is None or entry.count <= 0:
            return None
        entry.count -= 1
        if entry.count == 0:
            del self._fail_next[(key, kind)]
        return entry.message or default

    # -- control ---------------------------------------------------------------------------------

    def fail_next(self, key: str, kind: str, count: int, message: str | None) -> None:
        with self.lock:
            self._fail_next[(key, kind)] = _FailNext(count, message)

    def take_upload_failure(self, key: str) -> bool:
        with self.lock:
            return self._take_fail(key, "upload", "") is not None

    # -- projects --------------------------------------------------------------------------------

    def create_project(
        self, key: str, name: str, description: str | None, settings: dict[str, Any] | None
    ) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            project = Project(new_id("prj"), key, name, description, settings, now, self._next_seq())
            self._projects[project.id] = project
            return project.to_json(now)

    def seed_projects(self, key: str, count: int, age_seconds: float) -> None:
        """Give ``key`` ``count`` empty projects made ``age_seconds`` ago (an account's history)."""
        with self.lock:
            created = time.time() - age_seconds
            for index in range(count):
                project = Project(new_id("prj"), key, f"old {index}", None, None, created, self._next_seq())
                self._projects[project.id] = project

    def list_projects(self, key: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            now = time.time()
            mine = sorted((p for p in self._projects.values() if p.owner == key), key=lambda p: -p.seq)
            return [p.to_json(now) for p in mine[offset : offset + limit]], len(mine)

    def get_project(self, key: str, project_id: str) -> dict[str, Any]:
        with self.lock:
            return self._project(key, project_id).to_json(time.time())

    # -- chapters and prompts ------------------------------------------------------------------

    def create_chapter(self, key: str, project_id: str, name: str, duration: int | None) -> dict[str, Any]:
        with self.lock:
            project = self._project(key, project_id)
            now = time.time()
            chapter = Chapter(new_id("cht"), project.id, name, duration, now)
            project.chapters.append(chapter)
            return chapter.to_json(now, summary=False)

    def list_chapters(self, key: str, project_id: str) -> dict[str, Any]:
        with self.lock:
            project = self._project(key, project_id)
            now = time.time()
            return {"project_id": project.id, "chapters": [c.to_json(now) for c in project.chapters]}

    def get_chapter(self, key: str, project_id: str, chapter_id: str) -> dict[str, Any]:
        with self.lock:
            _, chapter = self._chapter(key, project_id, chapter_id)
            return chapter.to_json(time.time(), detail=True)

    def submit_prompt(
        self, key: str, project_id: str, chapter_id: str, content: str, force: bool
    ) -> dict[str, Any]:
        with self.lock:
            project, chapter = self._chapter(key, project_id, chapter_id)
            now = time.time()
            in_flight = [p for p in chapter.prompts if p.status(now) == "processing"]
            if in_flight and not force:
                raise ApiError(
                    409,
                    "CONFLICT",
                    "A prompt is already being processed for this chapter",
                    "Wait for the current prompt to complete or set force: true to override",
                )
            for old in in_flight:
                old.superseded = True
            fail = self._take_fail(key, "prompt", PROMPT_FAILED_RESULT)
            if fail is None and FAIL_PROMPT_MARKER in content:
                fail = PROMPT_FAILED_RESULT
            if FAIL_EXPORT_MARKER in content:
                project.fail_export_chapters.append(project.chapters.index(chapter) + 1)
            prompt = Prompt(new_id("int"), content, now, now + self.config.prompt_seconds, fail, forced=force)
            chapter.prompts.append(prompt)
            return {
                "prompt_id": prompt.id,
                "status": "processing",
                "message": "Prompt processing started",
                "estimated_time": estimate(self.config.prompt_seconds),
            }

    # -- exports ---------------------------------------------------------------------------------

    def start_export(self, key: str, project_id: str) -> dict[str, Any]:
        with self.lock:
            project = self._project(key, project_id)
            now = time.time()
            if project.active_export_id(now) is not None:
                raise ApiError(
                    409,
                    "CONFLICT",
                    "An export is already in progress for this project",
                    "Wait for the current export to complete or check its status",
                )
            included = [c for c in project.chapters if c.completed(now)]
            if not included:
                raise ApiError(
                    400,
                    "VALIDATION_ERROR",
                    "Project has no completed chapters",
                    "Add chapters and submit prompts before exporting",
                )
            fail = self._take_fail(key, "export", EXPORT_FAILED_DEFAULT)
            if fail is None and project.fail_export_chapters:
                fail = f"Failed to render chapter {project.fail_export_chapters[0]}"
                project.fail_export_chapters.clear()
            processing_at = now + self.config.export_queued_seconds
            export = Export(
                new_id("exp"),
                project.id,
                key,
                now,
                processing_at,
                processing_at + self.config.export_processing_seconds,
                VideoPlan(project.name, tuple(c.segment() for c in included)),
                fail,
            )
            project.export = export
            self._exports[export.id] = export
            took = self.config.export_queued_seconds + self.config.export_processing_seconds
            return {"status": "queued", "message": "Export started", "estimated_time": estimate(took)}

    def export_status(self, key: str, project_id: str) -> tuple[str, str | None, int]:
        """The project's latest export as (status, error or None, video seconds)."""
        with self.lock:
            project = self._project(key, project_id)
            export = project.export
            if export is None:
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    "No export found for this project",
                    "Start an export first using POST /api/v1/projects/{projectId}/export",
                )
            status = export.status(time.time())
            error = export.fail_message if status == "failed" else None
            return status, error, export.video_seconds

    def download(self, project_id: str) -> tuple[str, str, VideoPlan] | None:
        """The project's newest completed export as (export id, owner's key, video plan), else None.

        Its URL names the project, as the docs' example does: a newer export is served under the
        same URL once it completes; until then (or if it fails) the previous video is.
        """
        with self.lock:
            now = time.time()
            project = self._projects.get(project_id)
            done = [
                e
                for e in self._exports.values()
                if e.project_id == project_id and e.status(now) == "completed"
            ]
            if project is None or not done:
                return None
            export = max(done, key=lambda e: e.created)
            return export.id, export.owner, export.plan

    # -- assets ----------------------------------------------------------------------------------

    def create_asset(self, key: str, content_type: str, size: int) -> dict[str, Any]:
        with self.lock:
            now = time.time()
            fail = self._take_fail(key, "asset", ASSET_FAILED_DEFAULT)
            asset = Asset(
                new_id("ast"),
                key,
                content_type,
                size,
                now,
                now + self.config.asset_seconds,
                self._next_seq(),
                fail,
            )
            self._assets[asset.id] = asset
            return asset.to_json(now)

    def list_assets(
        self, key: str, limit: int, offset: int, content_type: str | None, states: tuple[str, ...] | None
    ) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            now = time.time()
            mine = [
                a
                for a in sorted(self._assets.values(), key=lambda a: -a.seq)
                if a.owner == key
                and (content_type is None or a.content_type == content_type)
                and (states is None or a.state(now) in states)
            ]
            return [a.to_json(now) for a in mine[offset : offset + limit]], len(mine)

    def get_asset(self, key: str, asset_id: str) -> dict[str, Any]:
        with self.lock:
            asset = self._assets.get(asset_id)
            if asset is None or asset.owner != key:
                raise not_found("Asset")
            return asset.to_json(time.time())

    # -- stats -----------------------------------------------------------------------------------

    def counts(self, key: str | None) -> dict[str, int]:
        """Creation counters for one key, or all keys when ``key`` is None."""
        with self.lock:
            projects = [p for p in self._projects.values() if key is None or p.owner == key]
            chapters = [c for p in projects for c in p.chapters]
            return {
                "projects_created": len(projects),
                "chapters_created": len(chapters),
                "prompts_submitted": sum(len(c.prompts) for c in chapters),
                "prompts_forced": sum(p.forced for c in chapters for p in c.prompts),
                "exports_started": sum(1 for e in self._exports.values() if key is None or e.owner == key),
                "assets_uploaded": sum(1 for a in self._assets.values() if key is None or a.owner == key),
            }
