"""Auth, projects, chapters and prompts over real HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.emulator.store import estimate
from tests.emulator.helpers import PROMPT_DONE, assert_error, client
from tests.keys import ALICE, BOB, EXPIRED

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def api(emulator: EmulatorControl) -> Iterator[httpx.Client]:
    with client(emulator, ALICE) as c:
        yield c


@pytest.mark.parametrize(
    ("header", "code", "error"),
    [
        (None, "UNAUTHORIZED", "Unauthorized - Invalid API key"),
        ("Basic abc", "UNAUTHORIZED", "Unauthorized - Invalid API key"),
        ("Bearer not-a-babou-key", "INVALID_API_KEY_FORMAT", "Invalid API key format"),
        (f"Bearer {EXPIRED}", "API_KEY_EXPIRED", "API key has expired"),
        ("Bearer sk-bab-unknown", "UNAUTHORIZED", "Unauthorized - Invalid API key"),
    ],
)
def test_auth_errors(emulator: EmulatorControl, header: str | None, code: str, error: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{emulator.api_url}/projects", headers=headers)
    body = assert_error(response, 401, code, error)
    assert "hint" not in body


def test_create_get_list_projects(api: httpx.Client) -> None:
    created = api.post("/projects", json={"name": "Launch", "description": "d", "extra": 1}).json()
    assert re.fullmatch(r"prj_[A-Za-z0-9]{21}", created["id"])
    assert ISO.match(created["created_at"])
    assert created == {
        "id": created["id"],
        "name": "Launch",
        "description": "d",
        "settings": None,
        "active_export_id": None,
        "created_at": created["created_at"],
    }
    assert api.get(f"/projects/{created['id']}").json() == created
    second = api.post("/projects", json={"name": "Two", "settings": {"a": 1}}).json()
    listing = api.get("/projects").json()
    assert [p["id"] for p in listing["projects"]] == [second["id"], created["id"]]  # newest first
    assert listing["pagination"] == {"limit": 20, "offset": 0, "total": 2}
    page = api.get("/projects", params={"limit": 1, "offset": 1}).json()
    assert [p["id"] for p in page["projects"]] == [created["id"]]
    assert page["pagination"] == {"limit": 1, "offset": 1, "total": 2}


@pytest.mark.parametrize(
    ("params", "hint"),
    [
        ({"limit": 0}, "limit must be an integer between 1 and 100"),
        ({"limit": 101}, "limit must be an integer between 1 and 100"),
        ({"limit": "x"}, "limit must be an integer between 1 and 100"),
        ({"offset": -1}, "offset must be a non-negative integer"),
        ({"offset": "y"}, "offset must be a non-negative integer"),
    ],
)
def test_list_projects_bad_paging(api: httpx.Client, params: dict[str, int | str], hint: str) -> None:
    body = assert_error(api.get("/projects", params=params), 400, "VALIDATION_ERROR")
    assert body["hint"] == hint


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({}, "Name must be between 1 and 30 characters"),
        ({"name": ""}, "Name must be between 1 and 30 characters"),
        ({"name": "x" * 31}, "Name must be between 1 and 30 characters"),
        ({"name": 5}, "Name must be between 1 and 30 characters"),
        ({"name": "ok", "description": "d" * 1001}, "Description must be at most 1000 characters"),
        ({"name": "ok", "settings": [1]}, "Settings must be a JSON object or null"),
    ],
)
def test_create_project_validation(api: httpx.Client, body: dict[str, object], hint: str) -> None:
    err = assert_error(api.post("/projects", json=body), 400, "VALIDATION_ERROR", "Validation failed")
    assert err["hint"] == hint


def test_lengths_are_characters_not_trimmed(api: httpx.Client) -> None:
    assert api.post("/projects", json={"name": "é" * 30, "description": "ü" * 1000}).status_code == 200
    assert api.post("/projects", json={"name": " " * 30}).json()["name"] == " " * 30


def test_json_body_requirements(api: httpx.Client) -> None:
    bad_type = api.post("/projects", content=b'{"name": "x"}', headers={"Content-Type": "text/plain"})
    assert assert_error(bad_type, 400, "VALIDATION_ERROR")["hint"]
    no_type = api.post("/projects", content=b'{"name": "x"}')
    assert_error(no_type, 400, "VALIDATION_ERROR", "Content-Type must be application/json")
    malformed = api.post("/projects", content=b"{nope", headers={"Content-Type": "application/json"})
    assert_error(malformed, 400, "VALIDATION_ERROR", "Invalid JSON body")
    array = api.post("/projects", json=[1])
    assert_error(array, 400, "VALIDATION_ERROR", "Invalid JSON body")
    charset = api.post(
        "/projects", content=b'{"name": "x"}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200


def test_unknown_route_and_method(api: httpx.Client) -> None:
    assert_error(api.get("/nope"), 404, "NOT_FOUND")
    assert_error(api.delete("/projects"), 405, "METHOD_NOT_ALLOWED")


def test_chapters_and_prompts(api: httpx.Client, emulator: EmulatorControl) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "Intro", "duration": 30}).json()
    assert re.fullmatch(r"cht_[A-Za-z0-9]{21}", chapter["id"])
    assert set(chapter) == {"id", "project_id", "name", "duration", "created_at"}
    assert chapter["project_id"] == project
    assert chapter["duration"] == 30
    no_duration = api.post(f"/projects/{project}/chapters", json={"name": "Outro"}).json()
    assert no_duration["duration"] is None

    listing = api.get(f"/projects/{project}/chapters").json()
    assert listing["project_id"] == project
    assert [c["id"] for c in listing["chapters"]] == [chapter["id"], no_duration["id"]]
    assert listing["chapters"][0]["status"] == "ready"
    assert listing["chapters"][0]["prompt_count"] == 0

    url = f"/projects/{project}/chapters/{chapter['id']}"
    receipt = api.post(f"{url}/prompt", json={"content": "Show the logo"}).json()
    assert re.fullmatch(r"int_[A-Za-z0-9]{21}", receipt["prompt_id"])
    assert receipt == {
        "prompt_id": receipt["prompt_id"],
        "status": "processing",
        "message": "Prompt processing started",
        "estimated_time": estimate(emulator.config()["prompt_seconds"]),  # the emulator's own timing
    }
    detail = api.get(url).json()
    assert detail["status"] == "processing"
    assert detail["prompt_count"] == 1
    assert detail["prompts"][0]["status"] == "processing"
    assert detail["prompts"][0]["result"] is None
    assert set(detail["prompts"][0]) == {"id", "content", "status", "result", "created_at"}
    time.sleep(PROMPT_DONE)
    detail = api.get(url).json()
    assert detail["status"] == "ready"
    assert detail["prompts"][0]["status"] == "completed"
    assert detail["prompts"][0]["result"] == "Video content created successfully"
    second = api.post(f"{url}/prompt", json={"content": "More"}).json()["prompt_id"]
    time.sleep(PROMPT_DONE)
    assert [p["id"] for p in api.get(url).json()["prompts"]] == [receipt["prompt_id"], second]  # oldest first


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({}, "Name must be between 1 and 30 characters"),
        ({"name": "x" * 31}, "Name must be between 1 and 30 characters"),
        ({"name": "c", "duration": 0}, "Duration must be a positive integer"),
        ({"name": "c", "duration": -3}, "Duration must be a positive integer"),
        ({"name": "c", "duration": 1.5}, "Duration must be a positive integer"),
        ({"name": "c", "duration": True}, "Duration must be a positive integer"),
        ({"name": "c", "duration": "10"}, "Duration must be a positive integer"),
    ],
)
def test_create_chapter_validation(api: httpx.Client, body: dict[str, object], hint: str) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    err = assert_error(api.post(f"/projects/{project}/chapters", json=body), 400, "VALIDATION_ERROR")
    assert err["hint"] == hint


def test_prompt_validation_and_conflict(api: httpx.Client) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    url = f"/projects/{project}/chapters/{chapter}/prompt"
    for body in ({}, {"content": ""}, {"content": "x" * 5001}, {"content": 3}):
        err = assert_error(api.post(url, json=body), 400, "VALIDATION_ERROR", "Invalid prompt content")
        assert err["hint"] == "Content must be between 1 and 5000 characters"
    assert_error(api.post(url, json={"content": "a", "force": "yes"}), 400, "VALIDATION_ERROR")
    assert api.post(url, json={"content": "x" * 5000}).status_code == 200
    conflict = assert_error(api.post(url, json={"content": "again"}), 409, "CONFLICT")
    assert conflict["error"] == "A prompt is already being processed for this chapter"
    assert conflict["hint"] == "Wait for the current prompt to complete or set force: true to override"


def test_force_supersedes(emulator: EmulatorControl, api: httpx.Client) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    url = f"/projects/{project}/chapters/{chapter}"
    first = api.post(f"{url}/prompt", json={"content": "one"}).json()["prompt_id"]
    second = api.post(f"{url}/prompt", json={"content": "two", "force": True}).json()["prompt_id"]
    prompts = {p["id"]: p for p in api.get(url).json()["prompts"]}
    assert prompts[first]["status"] == "failed"
    assert prompts[first]["result"] == "Cancelled: superseded by a newer prompt"
    assert prompts[second]["status"] == "processing"
    time.sleep(PROMPT_DONE)
    detail = api.get(url).json()
    assert detail["status"] == "ready"  # the latest prompt completed
    assert detail["prompts"][1]["status"] == "completed"
    assert "forced" not in detail["prompts"][1]  # Babou's API does not say; the stats do
    counts = emulator.stats(ALICE)["key"]
    assert (counts["prompts_submitted"], counts["prompts_forced"]) == (2, 1)


def test_fail_marker_sets_chapter_error(api: httpx.Client) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    url = f"/projects/{project}/chapters/{chapter}"
    api.post(f"{url}/prompt", json={"content": "please [[emulator:fail]]"})
    time.sleep(PROMPT_DONE)
    detail = api.get(url).json()
    assert detail["status"] == "error"
    assert detail["prompts"][0]["status"] == "failed"
    assert detail["prompts"][0]["result"]
    assert api.get(f"/projects/{project}/chapters").json()["chapters"][0]["status"] == "error"


def test_fail_next_prompt_with_message(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.fail_next(ALICE, "prompt", message="GPU on fire")
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    url = f"/projects/{project}/chapters/{chapter}"
    api.post(f"{url}/prompt", json={"content": "a"})
    time.sleep(PROMPT_DONE)
    api.post(f"{url}/prompt", json={"content": "b"})
    time.sleep(PROMPT_DONE)
    prompts = api.get(url).json()["prompts"]
    assert (prompts[0]["status"], prompts[0]["result"]) == ("failed", "GPU on fire")
    assert prompts[1]["status"] == "completed"  # count=1: only the next one failed


def test_not_found_and_isolation(emulator: EmulatorControl, api: httpx.Client) -> None:
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    assert_error(api.get("/projects/prj_missing"), 404, "NOT_FOUND", "Project not found")
    assert_error(api.get(f"/projects/{project}/chapters/cht_missing"), 404, "NOT_FOUND", "Chapter not found")
    assert_error(api.post("/projects/prj_missing/chapters", json={"name": "c"}), 404, "NOT_FOUND")
    assert_error(api.get("/projects/prj_missing/chapters"), 404, "NOT_FOUND")
    with client(emulator, BOB) as bob:
        assert bob.get("/projects").json()["projects"] == []
        assert_error(bob.get(f"/projects/{project}"), 404, "NOT_FOUND", "Project not found")
        assert_error(bob.get(f"/projects/{project}/chapters"), 404, "NOT_FOUND")
        assert_error(bob.get(f"/projects/{project}/chapters/{chapter}"), 404, "NOT_FOUND")
        prompt = bob.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": "x"})
        assert_error(prompt, 404, "NOT_FOUND")
        assert_error(bob.post(f"/projects/{project}/export"), 404, "NOT_FOUND")
        assert_error(bob.get(f"/projects/{project}/export"), 404, "NOT_FOUND")
