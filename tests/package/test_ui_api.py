"""What Airflow's UI reads from the api-server about the provider, and its Test button.

Airflow's api-server app runs in-process (FastAPI's test client, the session's metadata DB). The
Test button's request is built the way the UI bundle builds it from the listed connection (3.1.0
and 3.3.2 alike): ``port: Number(connection.port)``, which is ``0`` for a connection without a
port, and the password as listed, i.e. masked. ``tests/browser/take_screenshots.py`` shows the
same in a real browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import metadata
from typing import Any

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.get_provider_info import get_provider_info
from tests.keys import ALICE

MERGES_MASKED_PASSWORD = Version(airflow_version) >= Version("3.3")  # 3.1 tests the "***" itself
READS_CONN_FIELDS = Version(airflow_version) >= Version("3.3")  # the form from get_provider_info


@pytest.fixture(scope="module")
def api(airflow_db: None) -> Iterator[Any]:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with TestClient(create_app("core")) as client:
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="ui", role="admin"))
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def press_test(api: Any, conn_id: str) -> Any:
    """What the Test button in the connection list posts (the UI's TestConnectionButton)."""
    # The list row of this connection; fetched alone, as other tests' rows in this database may be
    # encrypted with a Fernet key this process does not have.
    listed = api.get(f"/api/v2/connections/{conn_id}").json()
    body = {
        "conn_type": listed["conn_type"],
        "connection_id": listed["connection_id"],
        "description": listed["description"] or "",
        "extra": listed["extra"] or "{}",
        "host": listed["host"] or "",
        "login": listed["login"] or "",
        "password": listed["password"] or "",
        "port": listed["port"] or 0,  # Number(null) is 0
        "schema": listed["schema"] or "",
    }
    return api.post("/api/v2/connections/test", json=body)


@pytest.fixture
def saved(api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Save connections as the connection form does (POST); delete them afterwards."""
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    created: list[str] = []

    def save(conn_id: str, **fields: Any) -> str:
        response = api.post(
            "/api/v2/connections", json={"connection_id": conn_id, "conn_type": "babou", **fields}
        )
        assert response.status_code == 201, response.text
        created.append(conn_id)
        return conn_id

    yield save
    for conn_id in created:
        api.delete(f"/api/v2/connections/{conn_id}")


def test_test_button_works_once_the_port_is_filled(api: Any, saved: Any, emulator: EmulatorControl) -> None:
    # The form shows Port (placeholder 443) so that a stored port matches what the button sends.
    conn_id = saved("babou_ui_port", host=emulator.api_url, password=ALICE, port=443)
    response = press_test(api, conn_id)
    assert response.status_code == 200, response.text
    if MERGES_MASKED_PASSWORD:
        assert response.json() == {"status": True, "message": f"Connected to Babou at {emulator.api_url}"}
        assert emulator.stats()["total"]["requests"] == 1
    else:  # Airflow 3.1 hands the hook the masked "***": the message says so and names the CLI
        assert response.json()["status"] is False
        assert "masked key '***'" in response.json()["message"]
        assert "airflow connections test" in response.json()["message"]


def test_providers_page_shows_plain_description_and_our_docs_link(api: Any) -> None:
    (provider,) = [
        p
        for p in api.get("/api/v2/providers").json()["providers"]
        if p["package_name"] == "airflow-provider-babou"
    ]
    # Airflow strips ` _ < > and the UI glues the word after an inline URL to it: no markup, no URL.
    assert provider["description"] == (
        "Babou text-to-video API: projects, chapters, prompts, exports and assets, with deferrable "
        "operators and sensors, and a local emulator of the API"
    )
    urls = dict(entry.split(", ", 1) for entry in metadata("airflow-provider-babou").get_all("Project-URL"))
    assert urls["Documentation"].startswith("https://")
    if "documentation_url" in provider:  # Airflow 3.3 links the name to it; 3.1.0 to its own site
        assert provider["documentation_url"] == urls["Documentation"]


def test_connection_form_prefills_nothing_and_shows_every_extra(api: Any) -> None:
    (meta,) = [h for h in api.get("/ui/connections/hook_meta").json() if h["connection_type"] == "babou"]
    if not READS_CONN_FIELDS:  # Airflow 3.1 builds custom forms only from FAB widgets: a generic form
        assert (meta["extra_fields"], meta["standard_fields"]) == (None, None)
        return
    extras = meta["extra_fields"]
    (declared,) = get_provider_info()["connection-types"]
    assert set(extras) == set(declared["conn-fields"])  # all of them (retry_deadline too)
    # A value here would be pre-filled and saved into every connection, freezing the hook's defaults.
    assert {name: field["value"] for name, field in extras.items()} == dict.fromkeys(extras)
    assert all(field["description"] for field in extras.values())
    standard = meta["standard_fields"]
    assert standard["port"]["hidden"] is False
    assert "Test button" in standard["port"]["placeholder"]
    assert (standard["password"]["title"], standard["host"]["title"]) == ("API Key", "Base URL")
