"""Babou's endpoint paths, below the base URL ``/api/v1``: one table for the hook, the waits and the emulator.

Each is a ``str.format`` template of the ids it names; the emulator's FastAPI routes use the same
text (``{project_id}`` is a path parameter there). Imports nothing, so the emulator can share it.
"""

from __future__ import annotations

#: The path below the host that every endpoint hangs from.
API_PREFIX = "/api/v1"

PROJECTS = "/projects"
PROJECT = "/projects/{project_id}"
CHAPTERS = "/projects/{project_id}/chapters"
CHAPTER = "/projects/{project_id}/chapters/{chapter_id}"
PROMPT = "/projects/{project_id}/chapters/{chapter_id}/prompt"
EXPORT = "/projects/{project_id}/export"
ASSETS = "/assets"
ASSET = "/assets/{asset_id}"
