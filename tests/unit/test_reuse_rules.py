"""The reuse rules' matching, alone: which prompt renders, which project carries a run marker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_babou.models import Chapter, Project
from airflow_provider_babou.operators._steps import carries_marker, description_with_marker

MARKER = "[airflow:0123456789ab]"
NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def _chapter(*prompts: tuple[str, str, Any]) -> Chapter:
    return Chapter.model_validate(
        {
            "id": "cht_1",
            "name": "c",
            "prompts": [{"id": i, "content": c, "created_at": t} for i, c, t in prompts],
        }
    )


def test_only_the_latest_prompt_renders() -> None:
    chapter = _chapter(("int_a", "A", NOW), ("int_b", "B", NOW))
    assert chapter.rendering_prompt("A") is None
    assert chapter.latest_prompt("A") is not None  # still found by content, for find_prompt_by_content
    latest = chapter.rendering_prompt("B")
    assert latest is not None
    assert latest.id == "int_b"
    assert _chapter().rendering_prompt("A") is None


def test_the_latest_prompt_is_ours_only_if_created_since() -> None:
    chapter = _chapter(("int_a", "A", NOW))
    assert chapter.rendering_prompt("A", since=NOW - timedelta(seconds=1)) is not None
    assert chapter.rendering_prompt("A", since=NOW + timedelta(seconds=1)) is None
    assert _chapter(("int_a", "A", None)).rendering_prompt("A", since=NOW) is not None  # no time: kept


@pytest.mark.parametrize(
    ("description", "name", "ours"),
    [
        (MARKER, "Launch", True),
        (f"Q3 {MARKER}", "Launch", True),
        (f"Q3 [airflow:ffffffffffff] {MARKER}", "Launch", True),
        (f"Q3 {MARKER} [airflow:ffffffffffff]", "Launch", False),  # another run's project, text copied
        (f"copied {MARKER} here", "Launch", False),
        (f"x{MARKER}", "Launch", False),
        (f"{MARKER} ", "Launch", False),
        (f"Q3 {MARKER}", "Other", False),
        (None, "Launch", False),
    ],
)
def test_a_run_marker_counts_only_as_the_last_token(description: str | None, name: str, ours: bool) -> None:
    project = Project(id="prj_1", name=name, description=description)
    assert carries_marker(project, MARKER, name="Launch") is ours


@pytest.mark.parametrize("description", [None, "", "Q3", f"copied {MARKER}"])
def test_what_description_with_marker_writes_is_recognised(description: str | None) -> None:
    project = Project(id="prj_1", name="Launch", description=description_with_marker(description, MARKER))
    assert carries_marker(project, MARKER, name="Launch")
