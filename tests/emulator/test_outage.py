"""Scripted total outages (``POST /_emulator/outage``): every API and download request fails, none
takes effect, the control API stays up, and the emulator recovers by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.emulator.helpers import EXPORT_DONE, assert_error, client, project_with_completed_chapter
from tests.keys import ALICE

OUTAGE = 1.0


@pytest.fixture
def api(emulator: EmulatorControl) -> Iterator[httpx.Client]:
    with client(emulator, ALICE) as c:
        yield c


def _wait_until_up(api: httpx.Client, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while True:
        try:
            if api.get("/projects").status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        assert time.monotonic() - started < timeout, "the emulator did not recover from the outage"
        time.sleep(0.05)


def test_drop_outage_fails_everything_without_effect_and_recovers(
    emulator: EmulatorControl, api: httpx.Client
) -> None:
    project, chapter = project_with_completed_chapter(api)
    assert api.post(f"/projects/{project}/export").status_code == 200
    time.sleep(EXPORT_DONE)
    download_url = api.get(f"/projects/{project}/export").json()["download_url"]
    before = {k: v for k, v in emulator.stats(ALICE)["key"].items() if k.endswith(("_created", "_started"))}

    status = emulator.outage(OUTAGE)  # mode "drop" by default
    assert status["active"] is True
    assert status["mode"] == "drop"
    assert 0 < status["seconds_left"] <= OUTAGE
    chapters = f"/projects/{project}/chapters"
    writes = [
        ("/projects", {"name": "during outage"}),
        (chapters, {"name": "during outage"}),
        (f"{chapters}/{chapter}/prompt", {"content": "during outage", "force": True}),
        (f"/projects/{project}/export", None),
    ]
    for path, body in writes:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            api.post(path, json=body)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("/projects")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(download_url, timeout=5)  # a fresh connection, no key: downloads are down too
    # The control API stays up and reports the outage.
    assert emulator.outage_status()["active"] is True
    assert emulator.config()["faults"]["name"] == "none"
    assert emulator.stats(ALICE)["key"]["faults_injected"] == {"outage_drop": len(writes) + 1}

    assert _wait_until_up(api) < OUTAGE + 1.0
    assert emulator.outage_status() == {"active": False, "mode": None, "seconds_left": 0.0}
    counts = emulator.stats(ALICE)["key"]
    assert {k: counts[k] for k in before} == before  # nothing that arrived during it took effect
    assert httpx.get(download_url, timeout=5).status_code == 200


def test_503_and_reset_modes(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.outage(OUTAGE, "503")
    response = api.post("/projects", json={"name": "x"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert b"503 Service Temporarily Unavailable" in response.content
    emulator.outage(OUTAGE, "reset")  # replaces the 503 outage
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{emulator.api_url}/projects", json={"name": "x"}, headers=api.headers, timeout=5)
    emulator.outage(0)  # ends it early
    assert api.get("/projects").json()["pagination"]["total"] == 0
    faults = emulator.stats(ALICE)["key"]["faults_injected"]
    assert faults == {"outage_503": 1, "outage_reset": 1}


def test_request_in_latency_when_the_outage_starts_takes_no_effect(
    emulator: EmulatorControl, api: httpx.Client
) -> None:
    emulator.configure(faults={"latency": 1.0, "latency_seconds": 0.5})
    outcome: list[object] = []

    def post() -> None:
        try:
            outcome.append(api.post("/projects", json={"name": "slow"}).status_code)
        except httpx.TransportError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=post)
    worker.start()
    time.sleep(0.2)  # the request is in its 0.5 s latency
    emulator.outage(OUTAGE)
    worker.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.RemoteProtocolError), outcome
    emulator.outage(0)
    emulator.configure(faults="none")
    assert api.get("/projects").json()["pagination"]["total"] == 0


def test_outage_validation_and_reset(emulator: EmulatorControl) -> None:
    for bad in ({"seconds": -1}, {"seconds": 5, "mode": "refuse"}, {"mode": "drop"}, {"seconds": 4000}):
        response = httpx.post(f"{emulator.url}/_emulator/outage", json=bad)
        assert_error(response, 400, "VALIDATION_ERROR")
    emulator.outage(60)
    emulator.reset()  # clears the outage with everything else
    assert emulator.outage_status()["active"] is False
    with client(emulator, ALICE) as api:
        assert api.get("/projects").status_code == 200
