"""BabouCreateProjectOperator against the emulator: reuse rules, input checks, ambiguous creates."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_babou.exceptions import BabouInputError, BabouOutcomeUnknownError
from airflow_provider_babou.operators._steps import run_marker
from airflow_provider_babou.operators.babou import BabouCreateProjectOperator
from airflow_provider_babou.operators.project import ProjectReuse
from tests.helpers import route_count
from tests.operators.conftest import Env, FakeTI, make_context

CREATE_PROJECT = "POST /api/v1/projects"


class TestCreateProject:
    def test_creates_and_pushes_id_and_link(self, env: Env) -> None:
        context = make_context()
        result = BabouCreateProjectOperator(task_id="p", name="Launch", description="Q3").execute(context)
        assert result["project_id"].startswith("prj_")
        assert result["reused"] is False
        assert result["name"] == "Launch"
        assert result["description"].startswith("Q3 [airflow:")
        assert result["description"].endswith("]")
        ti = context["ti"]
        assert ti.xcoms["project_id"] == result["project_id"]
        assert ti.xcoms["babou_project_url"] == f"https://app.babou.test/projects/{result['project_id']}"

    def test_the_search_for_the_run_marker_stops_at_the_run_start(self, env: Env) -> None:
        # An account with a month of history: 3,000 projects, 30 pages of the listing.
        from datetime import datetime, timezone
        from types import SimpleNamespace

        from tests.keys import ALICE

        env.emulator.seed(ALICE, 3000, age_seconds=30 * 86400)
        run = SimpleNamespace(run_after=datetime.now(timezone.utc))
        op = BabouCreateProjectOperator(task_id="p", name="Launch")
        first = op.execute(make_context(FakeTI(try_number=1), dag_run=run))
        again = op.execute(make_context(FakeTI(try_number=2), dag_run=run))
        assert again["project_id"] == first["project_id"]
        assert again["reused"] is True
        # Each search reads newest first and stops at the first project older than the run: one
        # page each (found, or none made yet), never the account's 30.
        assert route_count(env.emulator, "GET /api/v1/projects") == 2

    def test_reuse_run_retry_gets_same_project(self, env: Env) -> None:
        op = BabouCreateProjectOperator(task_id="p", name="Launch")
        first = op.execute(make_context(FakeTI(try_number=1)))
        again = op.execute(make_context(FakeTI(try_number=2)))
        assert again["project_id"] == first["project_id"]
        assert again["reused"] is True
        other_run = op.execute(make_context(FakeTI(run_id="scheduled__2")))
        other_map = op.execute(make_context(FakeTI(map_index=3)))
        assert len({first["project_id"], other_run["project_id"], other_map["project_id"]}) == 3
        assert env.counts()["projects_created"] == 3

    def test_reuse_name_and_never(self, env: Env) -> None:
        older = env.hook.create_project(name="Shared")
        time.sleep(1.1)  # created_at has one-second resolution; newest first must be unambiguous
        newer = env.hook.create_project(name="Shared")
        result = BabouCreateProjectOperator(task_id="p", name="Shared", reuse="name").execute(make_context())
        assert result["project_id"] == newer.id != older.id
        assert result["reused"]
        never = BabouCreateProjectOperator(task_id="p", name="Shared", reuse="never")
        ids = {never.execute(make_context())["project_id"] for _ in range(2)}
        assert len(ids) == 2
        assert env.counts()["projects_created"] == 4

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"name": ""},
            {"name": "x" * 31},
            {"name": "ok", "description": "d" * 1001},
            # Fits alone, but not with the 23-character run marker appended.
            {"name": "ok", "description": "d" * 990},
            {"name": "ok", "settings": "not a dict"},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            BabouCreateProjectOperator(task_id="p", **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_long_description_fits_without_marker(self, env: Env) -> None:
        result = BabouCreateProjectOperator(
            task_id="p", name="ok", description="d" * 1000, reuse="never"
        ).execute(make_context())
        assert result["description"] == "d" * 1000

    def test_unknown_reuse_rejected_at_parse_time(self) -> None:
        with pytest.raises(BabouInputError, match="reuse"):
            BabouCreateProjectOperator(task_id="p", name="x", reuse="sometimes")  # type: ignore[arg-type]


class TestRunMarkerMatchesExactly:
    """Issue 16 item 8: only a project whose description ends with this run's marker, under this
    name, is this run's; a copy of the marker elsewhere is another project's text."""

    @pytest.mark.parametrize(
        ("name", "description"),
        [
            ("Launch", "copied from {marker} by another DAG"),
            ("Launch", "{marker}, copied"),
            ("Launch", "x{marker}"),
            ("Other", "Q3 {marker}"),
        ],
        ids=["mid-text", "at-the-start", "glued", "another-name"],
    )
    def test_a_copied_marker_is_not_adopted(self, env: Env, name: str, description: str) -> None:
        marker = run_marker(make_context())
        copy = env.hook.create_project(name=name, description=description.format(marker=marker))
        result = BabouCreateProjectOperator(task_id="p", name="Launch", description="Q3").execute(
            make_context()
        )
        assert result["reused"] is False
        assert result["project_id"] != copy.id
        assert result["description"] == f"Q3 {marker}"
        assert env.counts()["projects_created"] == 2

    @pytest.mark.parametrize("description", [None, "Q3", "notes [airflow:0123456789ab]"])
    def test_the_marker_as_last_token_is_adopted(self, env: Env, description: str | None) -> None:
        op = BabouCreateProjectOperator(task_id="p", name="Launch", description=description)
        first = op.execute(make_context())
        again = op.execute(make_context(FakeTI(try_number=2)))
        assert (again["project_id"], again["reused"]) == (first["project_id"], True)
        assert env.counts()["projects_created"] == 1


class TestAmbiguousCreate:
    """Hardening defect 11: a create whose answer was lost is reconciled within the same try.

    The emulator's ``drop_after`` runs the route, then cuts the response short: the project
    exists, the client never learns its id. ``delay_after`` (held past the hook's timeout) is the
    same with a read timeout. ``500``, ``502_html``, ``504_empty`` and ``drop_before`` are
    answered *before* the route runs (see ``emulator/middleware.py``): nothing was created,
    although the hook cannot know it (all four are ambiguous for a POST).
    """

    @pytest.mark.parametrize("reuse", ["run", "name"])
    def test_lost_answer_finds_the_project_without_resending(self, env: Env, reuse: ProjectReuse) -> None:
        env.emulator.inject_fault("drop_after", method="POST", path=r"/projects$")
        result = BabouCreateProjectOperator(task_id="p", name="Launch", reuse=reuse).execute(make_context())
        assert result["project_id"].startswith("prj_")
        assert result["reused"] is False  # found after our own lost answer: ours, not an older one
        assert env.counts()["faults_injected"] == {"drop_after": 1}
        assert env.counts()["projects_created"] == 1
        assert route_count(env.emulator, CREATE_PROJECT) == 1

    def test_answer_held_past_the_timeout_finds_the_project(self, make_conn: Any, env: Env) -> None:
        make_conn(timeout=0.5)
        env.emulator.inject_fault("delay_after", method="POST", path=r"/projects$", seconds=2)
        result = BabouCreateProjectOperator(task_id="p", name="Launch").execute(make_context())
        assert result["reused"] is False
        assert env.counts()["projects_created"] == 1
        assert route_count(env.emulator, CREATE_PROJECT) == 1

    @pytest.mark.parametrize("fault", ["500", "502_html", "504_empty", "drop_before"])
    @pytest.mark.parametrize("reuse", ["run", "name"])
    def test_create_that_did_not_take_effect_is_sent_again(
        self, env: Env, fault: str, reuse: ProjectReuse
    ) -> None:
        env.emulator.inject_fault(fault, method="POST", path=r"/projects$")
        result = BabouCreateProjectOperator(task_id="p", name="Launch", reuse=reuse).execute(make_context())
        assert result["reused"] is False
        assert env.counts()["faults_injected"] == {fault: 1}
        assert env.counts()["projects_created"] == 1
        assert route_count(env.emulator, CREATE_PROJECT) == 2
        assert env.hook.get_project(result["project_id"]).name == "Launch"

    def test_keeps_checking_and_resending_within_the_retry_deadline(self, env: Env) -> None:
        # Bounded by time, not by a count of three: the fourth POST goes through in the same try.
        env.emulator.inject_fault("500", method="POST", path=r"/projects$", count=3)
        BabouCreateProjectOperator(task_id="p", name="Launch").execute(make_context())
        assert env.counts()["projects_created"] == 1
        assert route_count(env.emulator, CREATE_PROJECT) == 4

    def test_gives_up_at_the_retry_deadline_with_nothing_created(
        self, env: Env, make_conn: Callable[..., str]
    ) -> None:
        make_conn(retry_deadline=1.5, max_backoff=0.2)
        env.emulator.inject_fault("500", method="POST", path=r"/projects$", count=1000)
        started = time.monotonic()
        with pytest.raises(BabouOutcomeUnknownError):
            BabouCreateProjectOperator(task_id="p", name="Launch").execute(make_context())
        assert time.monotonic() - started < 5
        assert env.counts()["projects_created"] == 0
        assert route_count(env.emulator, CREATE_PROJECT) >= 3

    def test_reuse_never_does_not_guess(self, env: Env) -> None:
        # Without a way to recognise its project, the operator must not re-send blindly.
        env.emulator.inject_fault("drop_after", method="POST", path=r"/projects$")
        with pytest.raises(BabouOutcomeUnknownError):
            BabouCreateProjectOperator(task_id="p", name="Launch", reuse="never").execute(make_context())
        assert env.counts()["projects_created"] == 1
        assert route_count(env.emulator, CREATE_PROJECT) == 1
