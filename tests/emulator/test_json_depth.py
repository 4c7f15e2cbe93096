"""Deeply nested JSON bodies are a 400 ``VALIDATION_ERROR``, never a 500 or a dropped connection."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.emulator.helpers import assert_error, client
from tests.keys import ALICE

JSON = {"Content-Type": "application/json"}
DEEP = 100_000  # far past Python's recursion limit (json.loads recursed into a RecursionError)


def _bodies() -> dict[str, bytes]:
    return {
        "arrays": b"[" * DEEP,
        "objects": b'{"a":' * DEEP,
        "closed arrays in a field": b'{"name": "x", "settings": {"a": ' + b"[" * DEEP + b"]" * DEEP + b"}}",
        # Parses (under the recursion limit) but is too deep to store and echo back safely.
        "parseable but deep": b'{"name": "x", "settings": {"a": ' + b"[" * 990 + b"]" * 990 + b"}}",
    }


@pytest.fixture
def api(emulator: EmulatorControl) -> Iterator[httpx.Client]:
    with client(emulator, ALICE) as c:
        yield c


@pytest.mark.parametrize("shape", list(_bodies()))
def test_deeply_nested_api_body_is_a_validation_error(
    emulator: EmulatorControl, api: httpx.Client, shape: str
) -> None:
    body = _bodies()[shape]
    project = api.post("/projects", json={"name": "p"}).json()["id"]
    chapter = api.post(f"/projects/{project}/chapters", json={"name": "c"}).json()["id"]
    chapters = f"/projects/{project}/chapters"
    for path in ("/projects", chapters, f"{chapters}/{chapter}/prompt"):
        error = assert_error(api.post(path, content=body, headers=JSON), 400, "VALIDATION_ERROR")
        assert error["hint"], error
    # Still serving, on the same keep-alive connection (a 500 from an exception closed it).
    assert api.get("/projects").status_code == 200
    counts = emulator.stats(ALICE)["key"]
    assert counts["connections"] == 1, counts
    assert counts["responses"] == {"200": 3, "400": 3}, counts
    assert counts["projects_created"] == 1


@pytest.mark.parametrize("shape", list(_bodies()))
@pytest.mark.parametrize(("method", "path"), [("PATCH", "config"), ("POST", "faults")])
def test_deeply_nested_control_body_is_a_validation_error(
    emulator: EmulatorControl, method: str, path: str, shape: str
) -> None:
    with httpx.Client(base_url=f"{emulator.url}/_emulator", timeout=10) as control:
        response = control.request(method, path, content=_bodies()[shape], headers=JSON)
        assert_error(response, 400, "VALIDATION_ERROR")
        assert control.get("config").status_code == 200
