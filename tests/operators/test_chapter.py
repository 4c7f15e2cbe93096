"""BabouCreateChapterOperator against the emulator: reuse by name, input checks, ambiguous creates."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_babou.exceptions import BabouInputError, BabouOutcomeUnknownError
from airflow_provider_babou.operators.babou import BabouCreateChapterOperator
from tests.helpers import route_count
from tests.operators.conftest import Env, FakeTI, make_context

CREATE_CHAPTER = "POST /api/v1/projects/{project_id}/chapters"


class TestCreateChapter:
    def test_creates_then_reuses_by_name(self, env: Env) -> None:
        project = env.hook.create_project(name="p")
        op = BabouCreateChapterOperator(task_id="c", project_id=project.id, name="Intro", duration=30)
        context = make_context()
        first = op.execute(context)
        assert first["reused"] is False
        assert first["duration"] == 30
        assert context["ti"].xcoms == {  # the project id is this task's input: not pushed again
            "chapter_id": first["chapter_id"],
            "babou_project_url": f"https://app.babou.test/projects/{project.id}",
        }
        second = op.execute(make_context(FakeTI(try_number=2)))
        assert second["chapter_id"] == first["chapter_id"]
        assert second["reused"] is True
        BabouCreateChapterOperator(task_id="c", project_id=project.id, name="Intro", reuse="never").execute(
            make_context()
        )
        assert env.counts()["chapters_created"] == 2

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"project_id": "prj/1", "name": "Intro"},
            {"project_id": "prj 1", "name": "Intro"},
            {"project_id": "", "name": "Intro"},
            {"project_id": "prj_1", "name": ""},
            {"project_id": "prj_1", "name": "Intro", "duration": 0},
            {"project_id": "prj_1", "name": "Intro", "duration": -5},
            {"project_id": "prj_1", "name": "Intro", "duration": 2.5},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            BabouCreateChapterOperator(task_id="c", **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_unknown_reuse_rejected_at_parse_time(self) -> None:
        with pytest.raises(BabouInputError, match="reuse"):
            BabouCreateChapterOperator(task_id="c", project_id="p", name="x", reuse="run")  # type: ignore[arg-type]


class TestAmbiguousCreate:
    """Hardening defect 11 for chapters (which faults take effect: see ``test_project.py``)."""

    def test_lost_answer_finds_the_chapter_without_resending(self, env: Env) -> None:
        project = env.hook.create_project(name="p")
        env.emulator.inject_fault("drop_after", method="POST", path=r"/chapters$")
        result = BabouCreateChapterOperator(
            task_id="c", project_id=project.id, name="Intro", duration=30
        ).execute(make_context())
        assert result["chapter_id"].startswith("cht_")
        assert result["reused"] is False
        assert result["duration"] == 30
        assert env.counts()["faults_injected"] == {"drop_after": 1}
        assert env.counts()["chapters_created"] == 1
        assert route_count(env.emulator, CREATE_CHAPTER) == 1

    @pytest.mark.parametrize("fault", ["500", "502_html", "504_empty", "drop_before"])
    def test_create_that_did_not_take_effect_is_sent_again(self, env: Env, fault: str) -> None:
        project = env.hook.create_project(name="p")
        env.emulator.inject_fault(fault, method="POST", path=r"/chapters$")
        result = BabouCreateChapterOperator(task_id="c", project_id=project.id, name="Intro").execute(
            make_context()
        )
        assert result["reused"] is False
        assert env.counts()["faults_injected"] == {fault: 1}
        assert [c.id for c in env.hook.list_chapters(project.id)] == [result["chapter_id"]]
        assert route_count(env.emulator, CREATE_CHAPTER) == 2

    def test_reuse_never_does_not_guess(self, env: Env) -> None:
        project = env.hook.create_project(name="p")
        env.emulator.inject_fault("drop_after", method="POST", path=r"/chapters$")
        with pytest.raises(BabouOutcomeUnknownError):
            BabouCreateChapterOperator(
                task_id="c", project_id=project.id, name="Intro", reuse="never"
            ).execute(make_context())
        assert route_count(env.emulator, CREATE_CHAPTER) == 1
