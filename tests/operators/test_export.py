"""BabouStartExportOperator against the emulator: attach, reuse and start rules, waits, retries."""

from __future__ import annotations

import pytest

from airflow_provider_babou import deferral as deferral_module
from airflow_provider_babou._compat import HAS_RESUMABLE_JOB_MIXIN
from airflow_provider_babou.deferral import DEFERRED_TRY_XCOM_KEY
from airflow_provider_babou.exceptions import (
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouServerError,
)
from airflow_provider_babou.operators.babou import BabouStartExportOperator
from airflow_provider_babou.triggers.babou import BabouExportTrigger
from tests.helpers import FAST_POLL
from tests.keys import ALICE
from tests.operators.conftest import (
    FAST,
    Env,
    FakeTaskStateStore,
    FakeTI,
    deferred,
    drive,
    make_context,
    resume,
)


class TestStartExport:
    def test_blocking_export_completes_and_links_video(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        context = make_context()
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, deferrable=False, **FAST
        ).execute(context)
        assert result["status"] == "completed"
        assert result["project_id"] == project_id
        assert context["ti"].xcoms["babou_video_url"] == result["download_url"]
        assert "project_id" not in context["ti"].xcoms  # the input, in return_value only

    def test_retry_with_state_store_reuses_completed_export(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        store = FakeTaskStateStore()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        first = op.execute(make_context(FakeTI(try_number=1), task_state_store=store))
        if HAS_RESUMABLE_JOB_MIXIN:  # Airflow 3.3+: the started export is recorded in the store
            assert store["babou_export"]["project_id"] == project_id
        else:  # older Airflow has no store to use: the retry finds the export through Babou
            assert store == {}
        second = op.execute(make_context(FakeTI(try_number=2), task_state_store=store))
        assert second["status"] == "completed"
        assert second["download_url"].split("?")[0] == first["download_url"].split("?")[0]
        assert env.counts()["exports_started"] == 1

    def test_retry_with_state_store_reconnects_to_running_export(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        store = FakeTaskStateStore()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        deferred(op, make_context(FakeTI(try_number=1), task_state_store=store))
        deferral = deferred(op, make_context(FakeTI(try_number=2), task_state_store=store))
        assert isinstance(deferral.trigger, BabouExportTrigger)
        assert env.counts()["exports_started"] == 1

    def test_retry_with_state_store_after_failed_export_renders_again(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        env.emulator.fail_next(ALICE, "export", message="Renderer exploded")
        store = FakeTaskStateStore()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        with pytest.raises(BabouJobFailedError, match="Renderer exploded"):
            op.execute(make_context(FakeTI(try_number=1), task_state_store=store))
        result = op.execute(make_context(FakeTI(try_number=2), task_state_store=store))
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 2

    def test_deferring_records_the_try_only_where_airflow_needs_it(self, env: Env) -> None:
        # Only Airflow before 3.3 can hand a retry the previous try's event: from 3.3 on, the
        # XCom tab shows no bookkeeping.
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        first_try = FakeTI(try_number=1)
        deferred(op, make_context(first_try))
        assert (DEFERRED_TRY_XCOM_KEY in first_try.xcoms) is deferral_module.RESUME_SURVIVES_RETRY

    @pytest.mark.parametrize("map_index", [-1, 3], ids=["unmapped", "mapped"])
    def test_retry_never_resumes_an_earlier_trys_event(
        self, env: Env, monkeypatch: pytest.MonkeyPatch, map_index: int
    ) -> None:
        # Airflow 3.1 keeps next_method/next_kwargs across a retry: try 2 is "resumed" with
        # try 1's failed event. It must start over (and reuse the export), not re-raise it.
        monkeypatch.setattr(deferral_module, "RESUME_SURVIVES_RETRY", True)  # 3.1's behaviour, on any Airflow
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        first_try = FakeTI(try_number=1, map_index=map_index)
        deferral = deferred(op, make_context(first_try))
        assert deferral.method_name == "execute_complete"
        assert first_try.xcoms[DEFERRED_TRY_XCOM_KEY] == 1
        gave_up = {
            "status": "error",
            "message": "Gave up after 6 failed polls",
            "state": "unknown",
            "elapsed": 1.0,
            "object": None,
            "project_id": project_id,
            "error_type": "BabouServerError",
        }
        with pytest.raises(BabouServerError, match="Gave up"):  # the same try: the event counts
            resume(op, make_context(first_try), deferral, gave_up)
        env.hook.wait_for_export(project_id, poll=FAST_POLL)
        retry = FakeTI(try_number=2, map_index=map_index, xcoms=dict(first_try.xcoms))  # kept by a deferral
        result = resume(op, make_context(retry), deferral, gave_up)
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 1

    def test_without_waiting_returns_queued_state(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        context = make_context()
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, wait_for_completion=False
        ).execute(context)
        assert result["status"] in ("queued", "processing")
        assert result["project_id"] == project_id
        assert context["ti"].xcoms["export_id"].startswith("exp_")

    def test_failed_export_fails_with_babou_error_text(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        env.emulator.fail_next(ALICE, "export", message="Renderer exploded")
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        with pytest.raises(BabouJobFailedError, match="Renderer exploded"):
            op.execute(make_context())
        # A retry after a failed export renders again rather than reusing the failure.
        assert op.execute(make_context(FakeTI(try_number=2)))["status"] == "completed"
        assert env.counts()["exports_started"] == 2

    def test_deferrable_round_trip(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        context = make_context()
        deferral = deferred(op, context)
        assert isinstance(deferral.trigger, BabouExportTrigger)
        assert deferral.method_name == "execute_complete"
        assert deferral.trigger.project_id == project_id
        assert deferral.trigger.expected is not None  # the start's estimated_time
        event = drive(deferral.trigger)
        result = op.execute_complete(context, event)
        assert result["status"] == "completed"
        assert context["ti"].xcoms["babou_video_url"]

    def test_no_completed_chapters_is_babou_validation_error(self, env: Env) -> None:
        project = env.hook.create_project(name="empty")
        with pytest.raises(BabouError, match="no completed chapters"):
            BabouStartExportOperator(task_id="e", project_id=project.id).execute(make_context())

    def test_bad_project_id_before_any_request(self, env: Env) -> None:
        with pytest.raises(BabouInputError):
            BabouStartExportOperator(task_id="e", project_id="a/b").execute(make_context())
        assert env.counts()["requests"] == 0


class TestExportReuseRules:
    """Defect 4: one set of reuse rules (``_steps.start_or_attach_export``) for every operator.

    In flight: attach, never start a second. Completed: reuse only on a retry (the same task
    instance, ``try_number > 1``); a first try renders again, since Babou cannot tell whether the
    chapters changed since.
    """

    def test_attaches_to_export_in_flight(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        env.hook.start_export(project_id)
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, deferrable=False, **FAST
        ).execute(make_context())
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 1

    @pytest.mark.parametrize("try_number", [1, 2])
    def test_deferrable_attaches_to_export_in_flight(self, env: Env, try_number: int) -> None:
        project_id, _ = env.project_with_prompt()
        env.emulator.configure(export_processing_seconds=30)
        env.hook.start_export(project_id)
        context = make_context(FakeTI(try_number=try_number))
        deferral = deferred(
            BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST), context
        )
        assert isinstance(deferral.trigger, BabouExportTrigger)
        assert deferral.trigger.expected is None  # attached: no receipt, no estimate
        assert context["ti"].xcoms["export_id"].startswith("exp_")
        assert env.counts()["exports_started"] == 1
        assert env.counts()["requests_by_route"].get("POST /api/v1/projects/{project_id}/export") == 1

    def test_retry_without_state_store_reuses_completed_export(self, env: Env) -> None:
        project_id, _ = env.project_with_prompt()
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=False, **FAST)
        first = op.execute(make_context(FakeTI(try_number=1)))
        second = op.execute(make_context(FakeTI(try_number=2)))
        # Same file; the signed URL's expiry may have been re-issued in between.
        assert second["download_url"].split("?")[0] == first["download_url"].split("?")[0]
        assert second["status"] == "completed"
        assert env.counts()["exports_started"] == 1

    def test_first_try_does_not_reuse_an_earlier_completed_export(self, env: Env) -> None:
        project_id = env.completed_export()
        before = env.hook.get_export(project_id)
        result = BabouStartExportOperator(
            task_id="e", project_id=project_id, deferrable=False, **FAST
        ).execute(make_context(FakeTI(try_number=1)))
        assert result["status"] == "completed"
        assert env.counts()["exports_started"] == 2
        # A client cannot tell the two finished exports apart (same status, same project URL).
        assert env.hook.get_export(project_id).fingerprint() == before.fingerprint()
