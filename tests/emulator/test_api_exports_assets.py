"""Exports and assets: state machines, conflicts, scripted failures, filters."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.emulator.store import estimate
from tests.emulator.helpers import (
    ASSET_DONE,
    EXPORT_DONE,
    PROMPT_DONE,
    assert_error,
    client,
    project_with_completed_chapter,
)
from tests.keys import ALICE, BOB

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


@pytest.fixture
def api(emulator: EmulatorControl) -> Iterator[httpx.Client]:
    with client(emulator, ALICE) as c:
        yield c


def test_export_lifecycle(api: httpx.Client, emulator: EmulatorControl) -> None:
    project, _ = project_with_completed_chapter(api)
    before = assert_error(
        api.get(f"/projects/{project}/export"), 404, "NOT_FOUND", "No export found for this project"
    )
    assert before["hint"] == "Start an export first using POST /api/v1/projects/{projectId}/export"
    started = api.post(f"/projects/{project}/export")
    config = emulator.config()
    took = config["export_queued_seconds"] + config["export_processing_seconds"]
    assert started.json() == {
        "status": "queued",
        "message": "Export started",
        "estimated_time": estimate(took),  # the emulator's own timing
    }
    assert api.get(f"/projects/{project}/export").json() == {"status": "queued", "download_url": None}
    active = api.get(f"/projects/{project}").json()["active_export_id"]
    assert re.fullmatch(r"exp_[A-Za-z0-9]{21}", active)
    conflict = assert_error(api.post(f"/projects/{project}/export"), 409, "CONFLICT")
    assert conflict["error"] == "An export is already in progress for this project"
    assert conflict["hint"] == "Wait for the current export to complete or check its status"
    time.sleep(0.15)
    assert api.get(f"/projects/{project}/export").json() == {"status": "processing", "download_url": None}
    time.sleep(EXPORT_DONE)
    done = api.get(f"/projects/{project}/export").json()
    assert done["status"] == "completed"
    assert done["duration_seconds"] == 5
    assert done["download_url"].startswith(
        str(api.base_url.copy_with(path="/")) + "downloads/" + project + ".mp4?expires="
    )
    assert "error" not in done
    assert api.get(f"/projects/{project}").json()["active_export_id"] is None
    assert api.post(f"/projects/{project}/export").status_code == 200  # re-export after completion


def test_export_needs_completed_chapter(api: httpx.Client) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    err = assert_error(
        api.post(f"/projects/{project}/export"), 400, "VALIDATION_ERROR", "Project has no completed chapters"
    )
    assert err["hint"] == "Add chapters and submit prompts before exporting"
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    assert_error(api.post(f"/projects/{project}/export"), 400, "VALIDATION_ERROR")  # no prompts yet
    api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": "x"})
    assert_error(api.post(f"/projects/{project}/export"), 400, "VALIDATION_ERROR")  # still processing
    assert_error(api.post("/projects/prj_missing/export"), 404, "NOT_FOUND", "Project not found")


def test_export_only_counts_completed_chapters(api: httpx.Client) -> None:
    project, _ = project_with_completed_chapter(api)
    failing = api.post(f"/projects/{project}/chapters", json={"name": "bad", "duration": 7}).json()["id"]
    api.post(f"/projects/{project}/chapters/{failing}/prompt", json={"content": "[[emulator:fail]]"})
    time.sleep(PROMPT_DONE)
    api.post(f"/projects/{project}/export")
    time.sleep(EXPORT_DONE)
    assert api.get(f"/projects/{project}/export").json()["duration_seconds"] == 5


def test_fail_export_marker(api: httpx.Client) -> None:
    project, _ = project_with_completed_chapter(api)
    second = api.post(f"/projects/{project}/chapters", json={"name": "two"}).json()["id"]
    api.post(f"/projects/{project}/chapters/{second}/prompt", json={"content": "x [[emulator:fail-export]]"})
    time.sleep(PROMPT_DONE)
    assert api.get(f"/projects/{project}/chapters/{second}").json()["status"] == "ready"
    api.post(f"/projects/{project}/export")
    time.sleep(EXPORT_DONE)
    failed = api.get(f"/projects/{project}/export").json()
    assert failed == {"status": "failed", "download_url": None, "error": "Failed to render chapter 2"}
    assert api.get(f"/projects/{project}").json()["active_export_id"] is None
    api.post(f"/projects/{project}/export")  # only the next export failed
    time.sleep(EXPORT_DONE)
    assert api.get(f"/projects/{project}/export").json()["status"] == "completed"


def test_fail_next_export(emulator: EmulatorControl, api: httpx.Client) -> None:
    project, _ = project_with_completed_chapter(api)
    emulator.fail_next(ALICE, "export", message="Renderer crashed")
    api.post(f"/projects/{project}/export")
    time.sleep(EXPORT_DONE)
    assert api.get(f"/projects/{project}/export").json()["error"] == "Renderer crashed"


def test_upload_and_get_asset(api: httpx.Client) -> None:
    uploaded = api.post("/assets", content=PNG, headers={"Content-Type": "image/png"}).json()
    assert re.fullmatch(r"ast_[A-Za-z0-9]{21}", uploaded["id"])
    assert uploaded == {
        "id": uploaded["id"],
        "name": "uploaded-file",
        "url": f"s3://babou-assets/assets/{uploaded['id']}-original",
        "content_type": "image/png",
        "size": len(PNG),
        "state": "processing",
        "duration": None,
        "width": None,
        "height": None,
        "created_at": uploaded["created_at"],
    }
    time.sleep(ASSET_DONE)
    ready = api.get(f"/assets/{uploaded['id']}").json()
    assert ready["state"] == "ready"
    assert ready["width"] == 1920
    assert ready["height"] == 1080
    assert ready["duration"] is None
    video = api.post("/assets", content=b"v" * 10, headers={"Content-Type": "video/mp4"}).json()
    audio = api.post("/assets", content=b"a" * 10, headers={"Content-Type": "audio/mpeg"}).json()
    time.sleep(ASSET_DONE)
    assert api.get(f"/assets/{video['id']}").json()["duration"] > 0
    audio_ready = api.get(f"/assets/{audio['id']}").json()
    assert audio_ready["width"] is None
    assert audio_ready["duration"] > 0
    assert_error(api.get("/assets/ast_missing"), 404, "NOT_FOUND", "Asset not found")


def test_upload_errors(emulator: EmulatorControl, api: httpx.Client) -> None:
    missing = assert_error(
        api.post("/assets", content=PNG), 400, "VALIDATION_ERROR", "Content-Type header is required"
    )
    assert "image/png" in missing["hint"]
    bad = assert_error(
        api.post("/assets", content=PNG, headers={"Content-Type": "application/zip"}),
        400,
        "VALIDATION_ERROR",
        "Unsupported content type",
    )
    assert "video/mp4" in bad["hint"]
    assert_error(
        api.post("/assets", content=b"", headers={"Content-Type": "image/png"}), 400, "VALIDATION_ERROR"
    )
    emulator.fail_next(ALICE, "upload")
    failed = api.post("/assets", content=PNG, headers={"Content-Type": "image/png"})
    assert_error(failed, 500, "UPLOAD_FAILED", "Failed to upload file to storage")
    assert api.post("/assets", content=PNG, headers={"Content-Type": "image/png"}).status_code == 200


def test_upload_too_large_decided_from_content_length(emulator: EmulatorControl) -> None:
    """413 arrives although no body byte was sent."""
    url = urlsplit(emulator.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            (
                "POST /api/v1/assets HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {ALICE}\r\nContent-Type: video/mp4\r\n"
                f"Content-Length: {100 * 1024 * 1024 + 1}\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"}" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413")
    assert b'"code":"FILE_TOO_LARGE"' in data
    assert b"File size exceeds maximum allowed size of 100MB" in data


def test_fail_next_asset_and_list_filters(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.fail_next(ALICE, "asset", message="Corrupt file")
    broken = api.post("/assets", content=PNG, headers={"Content-Type": "image/png"}).json()
    video = api.post("/assets", content=b"v", headers={"Content-Type": "video/mp4"}).json()
    processing = api.get("/assets", params={"state": "processing"}).json()
    assert {a["id"] for a in processing["assets"]} == {broken["id"], video["id"]}
    time.sleep(ASSET_DONE)
    assert api.get(f"/assets/{broken['id']}").json()["state"] == "error"
    for word in ("error", "failed"):
        assert [a["id"] for a in api.get("/assets", params={"state": word}).json()["assets"]] == [
            broken["id"]
        ]
    assert [a["id"] for a in api.get("/assets", params={"state": "ready"}).json()["assets"]] == [video["id"]]
    by_type = api.get("/assets", params={"contentType": "video/mp4"}).json()
    assert [a["id"] for a in by_type["assets"]] == [video["id"]]
    assert by_type["pagination"] == {"limit": 20, "offset": 0, "total": 1}
    everything = api.get("/assets", params={"limit": 1}).json()
    assert [a["id"] for a in everything["assets"]] == [video["id"]]  # newest first
    assert everything["pagination"] == {"limit": 1, "offset": 0, "total": 2}
    assert_error(api.get("/assets", params={"state": "weird"}), 400, "VALIDATION_ERROR")
    assert_error(api.get("/assets", params={"limit": 500}), 400, "VALIDATION_ERROR")
    with client(emulator, BOB) as bob:
        assert bob.get("/assets").json()["pagination"]["total"] == 0
        assert_error(bob.get(f"/assets/{video['id']}"), 404, "NOT_FOUND", "Asset not found")
