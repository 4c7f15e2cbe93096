"""Create Babou objects on the emulator with plain httpx, and point ``babou_default`` at it.

Plain HTTP keeps these tests independent of the hook's write methods: only the waits are tested.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.keys import ALICE

# A 1x1 PNG: the emulator only checks the Content-Type, but a real image keeps the upload honest.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a5e0d2c80000000049454e44ae426082"
)


def use_connection(monkeypatch: pytest.MonkeyPatch, api_url: str, api_key: str = ALICE, **extra: Any) -> None:
    """Make ``babou_default`` point at the emulator with ``api_key`` (env connection, no DB)."""
    conn: dict[str, Any] = {"conn_type": "babou", "host": api_url, "password": api_key}
    if extra:
        conn["extra"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_DEFAULT", json.dumps(conn))


class Babou:
    """A tiny synchronous Babou client for setting up test objects."""

    def __init__(self, api_url: str, api_key: str = ALICE) -> None:
        self.client = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10.0
        )

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.post(path, **kwargs)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def project(self, name: str = "trigger test") -> str:
        return str(self._post("/projects", json={"name": name})["id"])

    def chapter(self, project_id: str, name: str = "intro") -> str:
        return str(self._post(f"/projects/{project_id}/chapters", json={"name": name})["id"])

    def prompt(self, project_id: str, chapter_id: str, content: str = "A calm intro") -> str:
        receipt = self._post(
            f"/projects/{project_id}/chapters/{chapter_id}/prompt", json={"content": content}
        )
        return str(receipt["prompt_id"])

    def prompt_ids(self, content: str = "A calm intro") -> tuple[str, str, str]:
        """Create a project and a chapter and submit one prompt; return the three ids."""
        project_id = self.project()
        chapter_id = self.chapter(project_id)
        return project_id, chapter_id, self.prompt(project_id, chapter_id, content)

    def export(self, project_id: str) -> None:
        self._post(f"/projects/{project_id}/export")

    def asset(self) -> str:
        return str(self._post("/assets", content=PNG, headers={"Content-Type": "image/png"})["id"])

    def close(self) -> None:
        self.client.close()
