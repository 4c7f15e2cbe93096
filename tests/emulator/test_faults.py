"""Transport faults (scripted and seeded profiles) and per-key rate limiting."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.emulator.helpers import assert_error, client
from tests.keys import ALICE, BOB


@pytest.fixture
def api(emulator: EmulatorControl) -> Iterator[httpx.Client]:
    with client(emulator, ALICE) as c:
        yield c


def test_scripted_status_faults(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.inject_fault("500", method="GET", path=r"/projects$")
    assert_error(api.get("/projects"), 500, "INTERNAL_ERROR")
    assert api.get("/projects").status_code == 200  # count=1
    for fault, status in (("502_html", 502), ("503_html", 503)):
        emulator.inject_fault(fault)
        response = api.get("/projects")
        assert response.status_code == status
        assert response.headers["content-type"].startswith("text/html")
        assert b"<html>" in response.content
    emulator.inject_fault("504_empty")
    response = api.get("/projects")
    assert response.status_code == 504
    assert response.content == b""
    emulator.inject_fault("429", seconds=7)
    limited = api.get("/projects")
    assert_error(limited, 429, "RATE_LIMITED")
    assert limited.headers["retry-after"] == "7"


def test_scripted_fault_matching(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.inject_fault("500", method="POST", path=r"^/api/v1/projects$", count=2)
    assert api.get("/projects").status_code == 200  # method does not match
    assert api.post("/projects", json={"name": "a"}).status_code == 500
    assert api.post("/projects", json={"name": "b"}).status_code == 500
    assert api.post("/projects", json={"name": "c"}).status_code == 200
    assert api.get("/projects").json()["pagination"]["total"] == 1  # the handler never ran on 500s


def test_drop_before_and_after(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.inject_fault("drop_before", method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/projects", json={"name": "before"})
    assert api.get("/projects").json()["pagination"]["total"] == 0  # no effect
    emulator.inject_fault("drop_after", method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/projects", json={"name": "after"})
    names = [p["name"] for p in api.get("/projects").json()["projects"]]
    assert names == ["after"]  # the effect was applied


def test_delay_after(emulator: EmulatorControl, api: httpx.Client) -> None:
    emulator.inject_fault("delay_after", method="POST", seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        api.post("/projects", json={"name": "slow"}, timeout=0.2)
    assert api.get("/projects").json()["pagination"]["total"] == 1
    emulator.inject_fault("delay_after", seconds=0.3)
    started = time.monotonic()
    assert api.get("/projects").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_control_endpoints_never_faulted(emulator: EmulatorControl) -> None:
    emulator.inject_fault("500", count=5)
    for _ in range(3):
        emulator.config()
        emulator.stats()
    assert emulator.stats()["total"]["faults_injected"] == {}


def _sequence(emulator: EmulatorControl, n: int) -> list[int | str]:
    seq: list[int | str] = []
    with client(emulator, ALICE) as api:
        for _ in range(n):
            try:
                seq.append(api.get("/projects").status_code)
            except httpx.TransportError:
                seq.append("drop")
    return seq


def test_seeded_profile_is_deterministic(emulator: EmulatorControl) -> None:
    profile = {"name": "chaos", "latency_seconds": 0.01}
    emulator.configure(faults=profile)
    first = _sequence(emulator, 60)
    emulator.reset()
    emulator.configure(faults=profile)
    second = _sequence(emulator, 60)
    assert first == second
    assert {500, 200} <= set(first)
    assert set(first) & {502, 503}
    assert 429 in first
    assert "drop" in first
    stats = emulator.stats()["total"]["faults_injected"]
    assert stats.get("500", 0) > 0
    assert stats.get("latency", 0) > 0


def test_burst_429(emulator: EmulatorControl) -> None:
    emulator.configure(faults={"burst_429": 1.0, "burst_429_length": 3})
    with client(emulator, ALICE) as api:
        responses = [api.get("/projects") for _ in range(3)]
    for response in responses:
        assert_error(response, 429, "RATE_LIMITED")
        assert response.headers["retry-after"] == "1"


def test_profile_names_and_invalid_config(emulator: EmulatorControl) -> None:
    assert emulator.configure(faults="flaky")["faults"]["error_500"] == 0.05
    assert emulator.configure(faults={"drop": 0})["faults"]["error_500"] == 0.05  # merged into current
    assert emulator.configure(faults="none")["faults"]["error_500"] == 0
    for bad in (
        {"faults": "nope"},
        {"faults": {"error_500": 0.9, "drop": 0.9}},
        {"rate_limit": -1},
        {"bogus": 1},
    ):
        response = httpx.patch(f"{emulator.url}/_emulator/config", json=bad)
        assert_error(response, 400, "VALIDATION_ERROR")
    bad_fault = httpx.post(f"{emulator.url}/_emulator/faults", json={"fault": "teapot"})
    assert_error(bad_fault, 400, "VALIDATION_ERROR")
    bad_regex = httpx.post(f"{emulator.url}/_emulator/faults", json={"fault": "500", "path": "("})
    assert_error(bad_regex, 400, "VALIDATION_ERROR", "Invalid path pattern")
    assert_error(
        httpx.post(f"{emulator.url}/_emulator/fail-next", json={"kind": "prompt"}), 401, "UNAUTHORIZED"
    )


def test_rate_limit_per_key(emulator: EmulatorControl) -> None:
    emulator.configure(rate_limit=1, rate_burst=3)
    with client(emulator, ALICE) as alice, client(emulator, BOB) as bob:
        statuses = [alice.get("/projects").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = alice.get("/projects")
        body = assert_error(limited, 429, "RATE_LIMITED")
        assert int(limited.headers["retry-after"]) >= 1
        assert body["hint"]
        assert bob.get("/projects").status_code == 200  # buckets are per key
        time.sleep(1.05)
        assert alice.get("/projects").status_code == 200
    emulator.configure(rate_limit=0)
    with client(emulator, ALICE) as alice:
        assert all(alice.get("/projects").status_code == 200 for _ in range(10))
