"""BabouGenerateVideoOperator against the emulator: the one-task path from chapters to an MP4."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_babou._compat import TaskDeferred
from airflow_provider_babou.exceptions import (
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.operators.babou import BabouGenerateVideoOperator
from airflow_provider_babou.operators.video import VideoProgress
from airflow_provider_babou.triggers.babou import BabouEventError, BabouExportTrigger, BabouPromptTrigger
from tests.helpers import route_count
from tests.operators.conftest import (
    BAD_DESTINATIONS,
    FAST,
    Env,
    FakeTI,
    bad_destinations,
    deferred,
    drive,
    make_context,
    resume,
)

CHAPTERS = [
    {"name": "Intro", "prompt": "A logo reveal", "duration": 10},
    {"name": "Outro", "prompt": "A call to action"},
]
CREATE_PROJECT = "POST /api/v1/projects"
CREATE_CHAPTER = "POST /api/v1/projects/{project_id}/chapters"
START_EXPORT = "POST /api/v1/projects/{project_id}/export"


def _generate(tmp_path: Path, **kwargs: Any) -> BabouGenerateVideoOperator:
    params: dict[str, Any] = {
        "task_id": "g",
        "project_name": "Launch video",
        "chapters": CHAPTERS,
        "destination": str(tmp_path / "launch.mp4"),
        **FAST,
    }
    params.update(kwargs)
    return BabouGenerateVideoOperator(**params)


def _finish(op: BabouGenerateVideoOperator, context: Any, deferral: Any, *, keep_kwargs: bool = True) -> Any:
    """Drive each trigger and resume, as the triggerer would, until the task returns."""
    for _ in range(6):
        try:
            return resume(op, context, deferral, drive(deferral.trigger), keep_kwargs=keep_kwargs)
        except TaskDeferred as nxt:
            deferral = nxt
        assert deferral.timeout is None
    raise AssertionError("the task never finished")


def _project_id(deferral: Any) -> str:
    project_id = VideoProgress.model_validate(deferral.kwargs["progress"]).project_id
    assert project_id is not None
    return project_id


class TestGenerateVideo:
    def test_blocking_end_to_end_and_retry_creates_nothing_twice(self, env: Env, tmp_path: Path) -> None:
        op = _generate(tmp_path, deferrable=False)
        context = make_context()
        result = op.execute(context)
        assert Path(result["path"]).read_bytes()[4:8] == b"ftyp"
        assert [c["name"] for c in result["chapters"]] == ["Intro", "Outro"]
        assert result["export"]["status"] == "completed"
        assert context["ti"].xcoms["project_id"] == result["project_id"]
        assert set(context["ti"].xcoms["chapter_ids"]) == {"Intro", "Outro"}
        # The retry (e.g. the task failed after the download) reuses everything.
        op.overwrite = True
        again = op.execute(make_context(FakeTI(try_number=2)))
        assert again["project_id"] == result["project_id"]
        assert again["chapters"] == result["chapters"]
        counts = env.counts()
        assert counts["projects_created"] == 1
        assert counts["chapters_created"] == 2
        assert counts["prompts_submitted"] == 2
        assert counts["exports_started"] == 1

    @pytest.mark.parametrize("keep_kwargs", [True, False], ids=["triggerer", "dag-test-drops-kwargs"])
    def test_deferrable_walks_the_stages(self, env: Env, tmp_path: Path, keep_kwargs: bool) -> None:
        op = _generate(tmp_path, deferrable=True)
        context = make_context()
        deferral = deferred(op, context)
        assert isinstance(deferral.trigger, BabouPromptTrigger)
        assert deferral.method_name == "resume_prompts"
        # New contract: the resume kwargs carry a VideoProgress dump under "progress" (was "state").
        assert set(deferral.kwargs) == {"progress"}
        progress = VideoProgress.model_validate(deferral.kwargs["progress"])
        assert progress.project_id == context["ti"].xcoms["project_id"]
        assert [c.name for c in progress.chapters] == ["Intro", "Outro"]
        assert progress.resubmitted is True
        assert context["ti"].xcoms["prompt_ids"]["Intro"] == deferral.trigger.prompt_id
        stages = [deferral.method_name]
        for _ in range(6):
            try:
                result = resume(op, context, deferral, drive(deferral.trigger), keep_kwargs=keep_kwargs)
                break
            except TaskDeferred as nxt:
                deferral = nxt
                assert deferral.timeout is None
                stages.append(deferral.method_name)
        else:
            raise AssertionError(f"never finished, stages {stages}")
        assert stages[0] == "resume_prompts"
        assert stages[-1] == "resume_export"
        assert result["size"] > 0
        assert Path(result["path"]).exists()
        counts = env.counts()
        assert counts["projects_created"] == 1
        assert counts["chapters_created"] == 2
        assert counts["prompts_submitted"] == 2
        assert counts["exports_started"] == 1

    def test_failure_after_creation_names_the_ids(self, env: Env, tmp_path: Path) -> None:
        chapters = [{"name": "Good", "prompt": "fine"}, {"name": "Bad", "prompt": "[[emulator:fail]]"}]
        op = _generate(tmp_path, chapters=chapters, deferrable=False)
        with pytest.raises(BabouJobFailedError) as info:
            op.execute(make_context())
        text = str(info.value)
        project = next(env.hook.iter_projects())
        assert project.id in text
        assert "'Good'" in text
        assert "'Bad'" in text
        assert "a retry reuses them" in text
        assert "already in Babou" in text
        for chapter in env.hook.list_chapters(project.id):
            assert chapter.id in text

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"project_name": ""},
            {"chapters": []},
            {"chapters": "[{'name': 'a'}]"},
            {"chapters": [{"name": "a", "prompt": "b"}, {"name": "a", "prompt": "c"}]},
            {"chapters": [{"name": "a", "prompt": ""}]},
            {"chapters": [{"name": "a", "prompt": "b", "duration": 0}]},
            {"chapters": [{"name": "a", "prompt": "b", "voice": "x"}]},
            {"chapters": [{"name": "a" * 31, "prompt": "b"}]},
            {"description": "d" * 990},
        ],
    )
    def test_bad_input_before_any_request(self, env: Env, tmp_path: Path, kwargs: dict[str, Any]) -> None:
        with pytest.raises(BabouInputError):
            _generate(tmp_path, **kwargs).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_existing_destination_before_any_request(self, env: Env, tmp_path: Path) -> None:
        (tmp_path / "launch.mp4").write_bytes(b"old")
        with pytest.raises(BabouInputError, match="already exists"):
            _generate(tmp_path).execute(make_context())
        assert env.counts()["requests"] == 0

    def test_timeout_says_what_is_pending(self, env: Env, tmp_path: Path) -> None:
        env.emulator.configure(prompt_seconds=30)
        op = _generate(tmp_path, deferrable=False, timeout=0.5)
        with pytest.raises(BabouWaitTimeoutError) as info:
            op.execute(make_context())
        assert "prompt" in str(info.value)
        assert "prj_" in str(info.value)


def test_generate_resume_rejects_bad_events() -> None:
    op = BabouGenerateVideoOperator(
        task_id="g", project_name="p", chapters=[{"name": "a", "prompt": "b"}], destination="/tmp/x.mp4"
    )
    # The resume kwarg is "progress" now (a VideoProgress dump); it was "state".
    progress = VideoProgress(project_id="prj_1", deadline=time.time() + 5).model_dump(mode="json")
    with pytest.raises(BabouEventError):
        op.resume_prompts(make_context(), None, progress=progress)
    with pytest.raises(BabouEventError, match="unknown status"):
        op.resume_export(make_context(), {"status": "weird"}, progress=progress)
    timeout = {
        "status": "timeout",
        "message": "Timed out waiting for export of project prj_1: still 'processing'",
    }
    with pytest.raises(BabouWaitTimeoutError, match="prj_1") as info:
        op.resume_export(make_context(), timeout, progress=progress)
    assert "already in Babou" in str(info.value)


class TestOneProjectPerRun:
    """Defect 1: the project is found by this task instance's run marker, never by name."""

    def test_each_run_gets_its_own_project_and_a_retry_reuses_it(self, env: Env, tmp_path: Path) -> None:
        op = _generate(tmp_path, deferrable=True)
        run_1 = deferred(op, make_context(FakeTI(run_id="scheduled__2026-01-01T00:00:00+00:00")))
        run_2 = deferred(op, make_context(FakeTI(run_id="scheduled__2026-01-02T00:00:00+00:00")))
        mapped = deferred(
            op, make_context(FakeTI(run_id="scheduled__2026-01-02T00:00:00+00:00", map_index=1))
        )
        retry = deferred(
            op, make_context(FakeTI(run_id="scheduled__2026-01-01T00:00:00+00:00", try_number=2))
        )
        assert len({_project_id(run_1), _project_id(run_2), _project_id(mapped)}) == 3
        assert _project_id(retry) == _project_id(run_1)
        assert retry.kwargs["progress"]["chapters"] == run_1.kwargs["progress"]["chapters"]
        assert retry.kwargs["progress"]["resubmitted"] is False  # its prompts were attached to
        counts = env.counts()
        assert counts["projects_created"] == 3
        assert counts["chapters_created"] == 6
        assert counts["prompts_submitted"] == 6
        assert route_count(env.emulator, CREATE_PROJECT) == 3

    def test_blocking_runs_share_a_name_not_a_project(self, env: Env, tmp_path: Path) -> None:
        first = _generate(tmp_path, deferrable=False, destination=str(tmp_path / "1.mp4")).execute(
            make_context(FakeTI(run_id="scheduled__1"))
        )
        second = _generate(tmp_path, deferrable=False, destination=str(tmp_path / "2.mp4")).execute(
            make_context(FakeTI(run_id="scheduled__2"))
        )
        assert first["project_id"] != second["project_id"]
        assert env.counts()["projects_created"] == 2
        assert env.counts()["exports_started"] == 2

    def test_resume_without_kwargs_finds_its_own_runs_project(self, env: Env, tmp_path: Path) -> None:
        # dag.test() drops the defer kwargs: the progress is rebuilt from Babou, by run marker too.
        op = _generate(tmp_path, deferrable=True)
        context = make_context(FakeTI(run_id="scheduled__1"))
        mine = deferred(op, context)
        time.sleep(1.1)  # created_at has one-second resolution: the other run's project is the newest
        deferred(op, make_context(FakeTI(run_id="scheduled__2")))
        # Resumed with the event only, it defers again (on the other prompt, or on the export).
        nxt = deferred(op, context, "resume_prompts", drive(mine.trigger))
        assert _project_id(nxt) == _project_id(mine)
        assert env.counts()["projects_created"] == 2


class TestAmbiguousCreates:
    """Defect 11: a create whose answer was lost is reconciled within the same try, in one try.

    ``drop_after`` runs the route and then cuts the answer (took effect); ``500``, ``502_html``,
    ``504_empty`` and ``drop_before`` are answered before the route runs (did not take effect).
    """

    @pytest.mark.parametrize(
        ("fault", "path", "route", "sent"),
        [
            ("drop_after", r"/projects$", CREATE_PROJECT, 1),
            ("500", r"/projects$", CREATE_PROJECT, 2),
            ("502_html", r"/projects$", CREATE_PROJECT, 2),
            ("drop_before", r"/projects$", CREATE_PROJECT, 2),
            ("drop_after", r"/chapters$", CREATE_CHAPTER, 2),
            ("504_empty", r"/chapters$", CREATE_CHAPTER, 3),
        ],
    )
    def test_one_try_one_object(
        self, env: Env, tmp_path: Path, fault: str, path: str, route: str, sent: int
    ) -> None:
        env.emulator.inject_fault(fault, method="POST", path=path)
        result = _generate(tmp_path, deferrable=False).execute(make_context())
        assert Path(result["path"]).exists()
        counts = env.counts()
        assert counts["faults_injected"] == {fault: 1}
        assert counts["projects_created"] == 1
        assert counts["chapters_created"] == 2
        assert counts["prompts_submitted"] == 2
        assert counts["exports_started"] == 1
        assert route_count(env.emulator, route) == sent


class TestDestination:
    """Defect 5: the destination is checked before anything is created or rendered."""

    @pytest.mark.parametrize("case", BAD_DESTINATIONS)
    def test_checked_before_any_request(self, env: Env, tmp_path: Path, case: str) -> None:
        destination, words = bad_destinations(tmp_path)[case]
        op = _generate(tmp_path, destination=destination, deferrable=False)
        with pytest.raises(BabouInputError, match=words) as info:
            op.execute(make_context())
        assert "already in Babou" not in str(info.value)
        assert env.posts() == 0
        assert env.counts()["requests"] == 0

    def test_destination_taken_while_rendering_names_what_exists(self, env: Env, tmp_path: Path) -> None:
        op = _generate(tmp_path, deferrable=True)
        context = make_context()
        deferral = deferred(op, context)
        (tmp_path / "launch.mp4").write_bytes(b"someone else's file")
        with pytest.raises(BabouError, match="already exists") as info:
            _finish(op, context, deferral)
        text = str(info.value)
        assert "already in Babou" in text
        assert context["ti"].xcoms["project_id"] in text
        for chapter_id in context["ti"].xcoms["chapter_ids"].values():
            assert chapter_id in text
        assert (tmp_path / "launch.mp4").read_bytes() == b"someone else's file"


class TestExportReuse:
    """Defect 4: the same rules as BabouStartExportOperator (``_steps.start_or_attach_export``)."""

    @pytest.mark.parametrize("try_number", [1, 2])
    def test_attaches_to_export_in_flight(self, env: Env, tmp_path: Path, try_number: int) -> None:
        env.emulator.configure(export_processing_seconds=30)
        op = _generate(tmp_path, deferrable=True)
        context = make_context()
        deferral = deferred(op, context)
        while deferral.method_name != "resume_export":  # the prompts complete, the export starts
            with pytest.raises(TaskDeferred) as nxt:
                resume(op, context, deferral, drive(deferral.trigger))
            deferral = nxt.value
        assert env.counts()["exports_started"] == 1
        again = deferred(op, make_context(FakeTI(try_number=try_number)))
        assert again.method_name == "resume_export"
        assert isinstance(again.trigger, BabouExportTrigger)
        assert _project_id(again) == _project_id(deferral)
        assert env.counts()["exports_started"] == 1
        assert route_count(env.emulator, START_EXPORT) == 1

    def test_first_try_renders_again_a_retry_reuses(self, env: Env, tmp_path: Path) -> None:
        op = _generate(tmp_path, deferrable=False, overwrite=True)
        first = op.execute(make_context())
        assert env.counts()["exports_started"] == 1
        op.execute(make_context(FakeTI(try_number=2)))  # a retry: nothing changed, the export is reused
        assert env.counts()["exports_started"] == 1
        again = op.execute(make_context(FakeTI(try_number=1)))  # a first try never takes an old export
        assert again["project_id"] == first["project_id"]
        assert env.counts()["exports_started"] == 2
        assert env.counts()["prompts_submitted"] == 2

    def test_retry_that_submitted_a_prompt_renders_again(self, env: Env, tmp_path: Path) -> None:
        _generate(tmp_path, deferrable=False, overwrite=True).execute(make_context())
        changed = [CHAPTERS[0], {"name": "Outro", "prompt": "A new call to action"}]
        result = _generate(tmp_path, deferrable=False, overwrite=True, chapters=changed).execute(
            make_context(FakeTI(try_number=2))
        )
        assert result["export"]["status"] == "completed"
        counts = env.counts()
        assert counts["prompts_submitted"] == 3
        assert counts["exports_started"] == 2


def test_deferred_prompt_failure_names_what_exists(env: Env, tmp_path: Path) -> None:
    chapters = [{"name": "Bad", "prompt": "[[emulator:fail]]"}]
    op = _generate(tmp_path, chapters=chapters, deferrable=True)
    context = make_context()
    deferral = deferred(op, context)
    with pytest.raises(BabouJobFailedError) as info:
        _finish(op, context, deferral)
    text = str(info.value)
    assert "already in Babou" in text
    assert context["ti"].xcoms["project_id"] in text
    assert context["ti"].xcoms["chapter_ids"]["Bad"] in text
