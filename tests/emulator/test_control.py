"""Control endpoints, stats, reset, config masking, CLI and EmulatorProcess."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from airflow_provider_babou.emulator import DEMO_API_KEY, EmulatorControl, EmulatorProcess
from airflow_provider_babou.emulator.process import EmulatorStartError
from tests.emulator.helpers import client
from tests.keys import ALICE, BOB


def test_stats_counters(emulator: EmulatorControl) -> None:
    with client(emulator, ALICE) as alice, client(emulator, BOB) as bob:
        project = alice.post("/projects", json={"name": "p"}).json()["id"]
        alice.get(f"/projects/{project}")
        alice.get("/projects/prj_missing")
        alice.post(f"/projects/{project}/chapters", json={"name": "c"})
        alice.post("/assets", content=b"x", headers={"Content-Type": "image/png"})
        bob.get("/projects")
    httpx.get(f"{emulator.api_url}/projects")  # unauthenticated: total only
    emulator.inject_fault("500", path="^/api/v1/projects$", method="GET")
    with client(emulator, BOB) as bob:
        bob.get("/projects")
    stats = emulator.stats(ALICE)
    mine, total = stats["key"], stats["total"]
    assert mine["projects_created"] == 1
    assert mine["chapters_created"] == 1
    assert mine["assets_uploaded"] == 1
    assert mine["prompts_submitted"] == 0
    assert mine["exports_started"] == 0
    assert mine["requests"] == 5
    assert mine["responses"] == {"200": 4, "404": 1}
    assert mine["requests_by_route"]["GET /api/v1/projects/{project_id}"] == 2
    assert mine["connections"] == 1  # one keep-alive connection
    assert mine["faults_injected"] == {}
    assert total["requests"] == 8
    assert total["responses"] == {"200": 5, "404": 1, "401": 1, "500": 1}
    assert total["faults_injected"] == {"500": 1}
    assert total["connections"] == 4
    assert emulator.stats()["key"] is None
    assert emulator.stats(BOB)["key"]["faults_injected"] == {"500": 1}


def test_reset_restores_everything(emulator: EmulatorControl) -> None:
    original = emulator.config()
    with client(emulator, ALICE) as api:
        api.post("/projects", json={"name": "p"})
    emulator.configure(prompt_seconds=9, faults="chaos", rate_limit=5)
    emulator.inject_fault("500")
    emulator.fail_next(ALICE, "upload")
    emulator.reset()
    assert emulator.config() == original
    assert emulator.stats()["total"]["requests"] == 0
    with client(emulator, ALICE) as api:
        assert api.get("/projects").json()["projects"] == []  # the scripted 500 is gone
        assert api.post("/assets", content=b"x", headers={"Content-Type": "image/png"}).status_code == 200


def test_config_masks_keys_and_updates_keys(emulator: EmulatorControl) -> None:
    config = emulator.config()
    assert ALICE not in str(config)
    assert config["api_keys"] == ["sk-bab-…lice", "sk-bab-…-bob"]
    assert config["prompt_seconds"] == 0.3
    assert config["rate_limit"] == 0
    assert config["seed"] == 1234
    emulator.configure(api_keys=["sk-bab-new-key-1"], expired_keys=[ALICE])
    response = httpx.get(f"{emulator.api_url}/projects", headers={"Authorization": f"Bearer {ALICE}"})
    assert response.json()["code"] == "API_KEY_EXPIRED"
    response = httpx.get(f"{emulator.api_url}/projects", headers={"Authorization": "Bearer sk-bab-new-key-1"})
    assert response.status_code == 200


def test_openapi_documents_api(emulator: EmulatorControl) -> None:
    schema = httpx.get(f"{emulator.url}/openapi.json").json()
    assert "/api/v1/projects/{project_id}/chapters/{chapter_id}/prompt" in schema["paths"]
    upload = schema["paths"]["/api/v1/assets"]["post"]
    assert "image/png" in upload["requestBody"]["content"]
    assert "413" in upload["responses"]


def test_process_default_key_and_cli_help(tmp_path: object) -> None:
    with EmulatorProcess(["--rate-limit", "0"]) as process:
        assert process.api_url == f"{process.url}/api/v1"
        assert process.pid > 0
        response = httpx.get(
            f"{process.api_url}/projects", headers={"Authorization": f"Bearer {DEMO_API_KEY}"}
        )
        assert response.status_code == 200
        pid = process.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    out = subprocess.run(
        [sys.executable, "-m", "airflow_provider_babou.emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--api-key",
        "--expired-key",
        "--faults",
        "--seed",
        "--mp4-size",
        "--download-ttl",
        "--rate-burst",
    ):
        assert flag in out


def test_process_start_error_reports_stderr() -> None:
    with pytest.raises(EmulatorStartError, match="fault profile"):
        EmulatorProcess(["--faults", "nonsense"]).start()
