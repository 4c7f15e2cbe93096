"""Every example DAG, run through Airflow itself (``dag.test()``) against the emulator.

``dag.test()`` serialises each deferred task's trigger kwargs and runs the trigger in-process,
so these runs cover the deferrable paths end to end. The emulator's counters prove that a run
creates exactly one of everything, and that re-running every task of a run (which is what a
retry does: Airflow 3 clears XCom first) creates nothing new.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import av
import pytest

from airflow_provider_babou.deferral import DEFERRED_TRY_XCOM_KEY, RESUME_SURVIVES_RETRY
from airflow_provider_babou.emulator import EmulatorControl
from tests.conftest import REPO
from tests.helpers import key_stats
from tests.keys import EXPIRED

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def dagbag(airflow_db: None) -> Any:
    from tests.compat import DagBag, sync_for_dag_test

    bag = DagBag(str(REPO / "example_dags"))
    assert bag.import_errors == {}, bag.import_errors
    sync_for_dag_test(bag)  # Airflow 3.1's dag.test() needs the DAGs serialised in the DB
    return bag


def test_every_example_dag_shows_its_module_docstring(dagbag: Any) -> None:
    # The docstring says what the example shows; the DAG page renders doc_md.
    for dag_id, dag in dagbag.dags.items():
        docstring = ast.get_docstring(ast.parse(Path(dag.fileloc).read_text()), clean=False)
        assert docstring, dag_id
        assert dag.doc_md == docstring, dag_id


@pytest.fixture
def babou_env(make_conn: Callable[..., str], tmp_path: Path) -> Path:
    """``babou_default`` -> the reset emulator as ALICE; the test's folder for the videos."""
    make_conn()
    return tmp_path


def _run(dag: Any, logical_date: datetime | None = None, conf: dict[str, Any] | None = None) -> Any:
    for task in dag.tasks:  # retries must not wait the default five minutes
        task.retry_delay = timedelta(seconds=0)
    if logical_date is None:
        return dag.test(run_conf=conf)
    return dag.test(logical_date=logical_date, run_after=logical_date, run_conf=conf)


def _states(dag_run: Any) -> dict[str, str]:
    return {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
        for ti in dag_run.get_task_instances()
    }


def _created(emulator: EmulatorControl) -> dict[str, int]:
    counts = key_stats(emulator)
    keys = ("projects_created", "chapters_created", "prompts_submitted", "exports_started", "assets_uploaded")
    return {k: counts[k] for k in keys}


def _assert_playable(path: Path) -> None:
    with av.open(str(path)) as container:
        assert {s.type for s in container.streams} >= {"video"}


def _xcom_keys(dag_run: Any) -> dict[str, set[str]]:
    """The XCom keys of each task of ``dag_run``, as the XCom tab lists them."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    keys: dict[str, set[str]] = {}
    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.key).where(
                XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id
            )
        )
        for task_id, key in rows:
            keys.setdefault(task_id, set()).add(key)
    return keys


def _load(dagbag: Any, dag_id: str) -> Any:
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not found in example_dags/"
    return dag


def test_video_pipeline_downloads_one_playable_mp4(
    dagbag: Any, emulator: EmulatorControl, babou_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = _load(dagbag, "babou_video_pipeline")
    download = dag.get_task("download_video")
    monkeypatch.setattr(download, "destination", str(babou_env / "video.mp4"))
    when = datetime(2025, 6, 1, tzinfo=timezone.utc)

    dag_run = _run(dag, when)

    assert dag_run.state == "success", _states(dag_run)
    assert set(_states(dag_run).values()) == {"success"}
    _assert_playable(babou_env / "video.mp4")
    once = {"projects_created": 1, "chapters_created": 3, "prompts_submitted": 3, "exports_started": 1}
    assert _created(emulator) == {**once, "assets_uploaded": 0}
    # Each fact is pushed once, by the task that made it; no bookkeeping in the XCom tab. The
    # link keys are where Airflow keeps each task's extra link ("Babou project", "Babou video").
    # Airflow before 3.3 needs the deferring try recorded (see deferral.RetryAwareResumeMixin).
    links = {"babou_project_url"}
    deferred = {DEFERRED_TRY_XCOM_KEY} if RESUME_SURVIVES_RETRY else set()
    keys = _xcom_keys(dag_run)
    chapters = ("intro", "features", "outro")
    assert keys == {
        "create_project": {"return_value", "project_id", *links},
        **{f"create_chapter_{c}": {"return_value", "chapter_id", *links} for c in chapters},
        **{f"prompt_{c}": {"return_value", "prompt_id", *links, *deferred} for c in chapters},
        "start_export": {"return_value", "export_id", "babou_video_url", *links, *deferred},
        "download_video": {"return_value", "babou_video_url", *links},
    }

    # Clearing the whole run re-runs every task with XCom cleared: what was built is found again
    # (project by run marker, chapters by name, prompts by content); the export task renders
    # again, since Babou cannot tell whether the chapters changed (a *retry* reuses it, below).
    rerun = _run(dag, when)

    assert rerun.run_id == dag_run.run_id
    assert rerun.state == "success", _states(rerun)
    assert _created(emulator) == {**once, "exports_started": 2, "assets_uploaded": 0}
    _assert_playable(babou_env / "video.mp4")


def test_video_pipeline_retry_after_a_failed_wait_duplicates_nothing(
    dagbag: Any,
    emulator: EmulatorControl,
    babou_env: Path,
    make_conn: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Babou answers 500 eleven times while the triggerer waits on the export (after the export
    # started): the trigger gives up after ten consecutive failures, start_export fails, and its
    # retry must pick up that export, not start another.
    make_conn(max_retries=0)
    from airflow_provider_babou.triggers.babou import BabouExportTrigger

    waits: list[float] = []
    real_run = BabouExportTrigger.run

    async def run_with_outage(self: BabouExportTrigger) -> Any:
        if not waits:
            emulator.inject_fault("500", method="GET", path=r"/export$", count=11)
        waits.append(self.end_time)
        async for event in real_run(self):
            yield event

    monkeypatch.setattr(BabouExportTrigger, "run", run_with_outage)
    dag = _load(dagbag, "babou_video_pipeline")
    monkeypatch.setattr(dag.get_task("start_export"), "poll_interval", 0.1)
    monkeypatch.setattr(dag.get_task("download_video"), "destination", str(babou_env / "video.mp4"))

    dag_run = _run(dag)

    assert dag_run.state == "success", _states(dag_run)
    export_ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "start_export")
    assert export_ti.try_number == 2, "the outage should have failed exactly the first try"
    assert key_stats(emulator)["faults_injected"]["500"] == 11
    assert _created(emulator) == {
        "projects_created": 1,
        "chapters_created": 3,
        "prompts_submitted": 3,
        "exports_started": 1,
        "assets_uploaded": 0,
    }
    _assert_playable(babou_env / "video.mp4")


def test_video_pipeline_emits_asset_event_for_the_consumer(
    dagbag: Any, emulator: EmulatorControl, babou_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _load(dagbag, "babou_video_pipeline")
    monkeypatch.setattr(pipeline.get_task("download_video"), "destination", str(babou_env / "v.mp4"))
    assert _run(pipeline).state == "success"

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == "babou://videos/product-launch")
            .order_by(AssetEvent.id.desc())
            .first()
        )
        assert event is not None
        extra = dict(event.extra)
    assert extra["path"] == str(babou_env / "v.mp4")
    assert extra["size"] == (babou_env / "v.mp4").stat().st_size
    assert len(extra["sha256"]) == 64
    assert extra["project_id"].startswith("prj_")

    consumer = _load(dagbag, "babou_video_consumer")
    run = _run(consumer)
    assert run.state == "success", _states(run)
    published = next(ti for ti in run.get_task_instances() if ti.task_id == "publish").xcom_pull(
        task_ids="publish"
    )
    assert published["sha256"] == extra["sha256"]


def test_assets_dag_uploads_two_assets_and_references_them(
    dagbag: Any, emulator: EmulatorControl, babou_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = _load(dagbag, "babou_assets")
    # MEDIA_DIR is read at parse time; point the task's callable at the per-test folder.
    monkeypatch.setitem(
        dag.get_task("prepare_media").python_callable.__globals__, "MEDIA_DIR", str(babou_env)
    )

    dag_run = _run(dag)

    assert dag_run.state == "success", _states(dag_run)
    assert _created(emulator) == {
        "projects_created": 1,
        "chapters_created": 1,
        "prompts_submitted": 1,
        "exports_started": 0,
        "assets_uploaded": 2,
    }
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    logo_id = tis["upload_logo"].xcom_pull(task_ids="upload_logo", key="asset_id")
    clip_id = tis["upload_clip"].xcom_pull(task_ids="upload_clip", key="asset_id")
    chapter = tis["prompt_with_assets"].xcom_pull(task_ids="prompt_with_assets")
    prompt_text = json.dumps(chapter)
    assert logo_id in prompt_text
    assert clip_id in prompt_text


def test_personalized_videos_one_per_csv_row(dagbag: Any, emulator: EmulatorControl, babou_env: Path) -> None:
    dag = _load(dagbag, "babou_personalized_videos")

    dag_run = _run(dag, conf={"output": str(babou_env)})

    states = _states(dag_run)
    assert dag_run.state == "success", states
    mapped = {k: v for k, v in states.items() if k.startswith("personalized_video[")}
    assert len(mapped) == 3
    assert set(mapped.values()) == {"success"}
    videos = sorted((babou_env / "personalized").glob("*.mp4"))
    assert [v.name for v in videos] == ["c-1001.mp4", "c-1002.mp4", "c-1003.mp4"]
    for video in videos:
        _assert_playable(video)
    assert _created(emulator) == {
        "projects_created": 3,
        "chapters_created": 6,
        "prompts_submitted": 6,
        "exports_started": 3,
        "assets_uploaded": 0,
    }


def test_expired_key_fails_the_first_task_at_once_without_retries(
    dagbag: Any, emulator: EmulatorControl, make_conn: Callable[..., str]
) -> None:
    make_conn(key=EXPIRED)
    dag = _load(dagbag, "babou_video_pipeline")

    dag_run = _run(dag)

    assert dag_run.state == "failed"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["create_project"].state == "failed"
    # The DAG allows two retries, but a retry cannot fix an expired key: one try, one request.
    assert tis["create_project"].try_number == 1
    assert emulator.stats()["total"]["responses"] == {"401": 1}


def test_human_review_asks_each_round_and_reprompts_with_force(dagbag: Any) -> None:
    # Its reviews wait for a person, which dag.test() cannot give (tests/deployment/
    # test_human_review.py answers them through the REST API); here: the wiring a reviewer relies on.
    from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

    dag = _load(dagbag, "babou_human_review")
    module = dag.get_task("publish").python_callable.__globals__
    chapters = list(module["CHAPTERS"])
    assert dag.doc_md == module["__doc__"]
    for round_no in (1, 2):
        review = dag.get_task(f"review_{round_no}")
        assert type(review) is HITLOperator
        assert review.options == ["Approve", "Reject"]
        assert review.params.get_param("chapter").schema["enum"] == chapters
        assert review.params["note"] == ""
        assert f"task_ids='{module['video_task'](round_no)}'" in review.body
    assert isinstance(dag.get_task("review_3"), ApprovalOperator)
    for round_no in (2, 3):
        reprompt = dag.get_task(f"reprompt_{round_no}")
        assert reprompt.force is True
        assert reprompt.upstream_task_ids == {f"revise_{round_no}"}
        assert dag.get_task(f"revise_{round_no}").upstream_task_ids == {f"review_{round_no - 1}"}
    publish = dag.get_task("publish")
    assert publish.upstream_task_ids == {"review_1", "review_2", "review_3"}
    assert [a.uri for a in publish.outlets] == ["babou://videos/reviewed-launch"]
    # Notes on a chapter pile up, oldest first, after its prompt.
    assert module["revised_prompt"]("outro", ["Louder.", "Shorter."]) == (
        f"{module['CHAPTERS']['outro']}\nReviewer's note: Louder.\nReviewer's note: Shorter."
    )


def test_campaign_makes_one_video_per_row_in_chunks(
    dagbag: Any, emulator: EmulatorControl, babou_env: Path
) -> None:
    dag = _load(dagbag, "babou_campaign")

    dag_run = _run(dag, conf={"output": str(babou_env)})

    states = _states(dag_run)
    assert dag_run.state == "success", states
    assert states["campaign[0]"] == "success"
    folder = next((babou_env / "campaign").iterdir())
    videos = sorted(folder.glob("*.mp4"))
    assert [v.name for v in videos] == ["c-1001.mp4", "c-1002.mp4", "c-1003.mp4"]
    for video in videos:
        _assert_playable(video)
    lines = [json.loads(line) for line in (folder / "manifest-00000.jsonl").read_text().splitlines()]
    assert [(r["key"], r["stage"]) for r in lines] == [
        ("c-1001", "done"),
        ("c-1002", "done"),
        ("c-1003", "done"),
    ]
    assert all(r["size"] > 0 and len(r["sha256"]) == 64 for r in lines)
    assert _created(emulator) == {
        "projects_created": 3,
        "chapters_created": 6,
        "prompts_submitted": 6,
        "exports_started": 3,
        "assets_uploaded": 0,
    }
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == "campaign")
    result = ti.xcom_pull(task_ids="campaign", map_indexes=0)
    assert (
        result == {"rows": 3, "done": 3, "failed": 0, "manifest": str(folder / "manifest-00000.jsonl")}
        or result["done"] == 3
    )
