"""Small helpers shared by the emulator tests (plain httpx, no provider code)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from airflow_provider_babou.emulator import EmulatorControl

# The session emulator's timings (tests/conftest.py), plus a margin for a loaded machine.
PROMPT_DONE = 0.3 + 0.25
EXPORT_DONE = 0.1 + 0.3 + 0.25
ASSET_DONE = 0.3 + 0.25


def client(emulator: EmulatorControl, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=emulator.api_url, headers=headers, timeout=10)


def assert_error(
    response: httpx.Response, status: int, code: str, error: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert set(body) <= {"error", "code", "hint"}
    if error is not None:
        assert body["error"] == error
    return body


def project_with_completed_chapter(api: httpx.Client, content: str = "Make a video") -> tuple[str, str]:
    """A project whose single chapter has one completed prompt."""
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c", "duration": 5}).json()["id"]
    assert (
        api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": content}).status_code
        == 200
    )
    time.sleep(PROMPT_DONE)
    return project, chapter
