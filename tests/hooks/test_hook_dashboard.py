"""The "Babou project" link target: the connection's template, else Babou's own dashboard."""

from __future__ import annotations

import json

import pytest

from airflow_provider_babou.hooks.babou import BabouHook
from tests.keys import ALICE


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({}, "https://app.babou.ai/projects/prj_1"),
        ({"host": "http://127.0.0.1:8711/api/v1"}, None),
        (
            {
                "host": "http://127.0.0.1:8711/api/v1",
                "extra": {"dashboard_url_template": "http://d/{project_id}"},
            },
            "http://d/prj_1",
        ),
    ],
)
def test_dashboard_url(
    monkeypatch: pytest.MonkeyPatch, conn: dict[str, object], expected: str | None
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BABOU_DASH", json.dumps({"conn_type": "babou", "password": ALICE, **conn})
    )
    assert BabouHook("babou_dash").dashboard_url("prj_1") == expected
