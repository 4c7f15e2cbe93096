"""``babou_human_review`` in a real deployment, the reviews answered through Airflow's REST API.

The four components run as separate processes on SQLite against the session's emulator (see
``harness``). The test triggers a run, waits until ``review_1`` waits for a person (``deferred`` on
a HITL trigger on Airflow 3.1, ``awaiting_input`` on 3.3), checks the review's body links the
video, rejects the ``features`` chapter with a note (``PATCH .../hitlDetails``), checks Babou got
that chapter's prompt with the note appended, submitted with ``force``, and a second render, then
approves ``review_2`` and checks the published MP4 and the Asset event (``/api/v2/assets/events``).
The reviewer is a user of the simple auth manager, so the event names who approved.

Wall clock on the project's 2-core machines: the module takes 114 s on Airflow 3.3.2 and 93 s on
3.1.0 (deployment start ~25 s, the reject-then-approve run 37-48 s, the no-note run ~20 s).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from tests.conftest import REPO
from tests.deployment.harness import Deployment, key_leaks, running_deployment
from tests.deployment.services import SqliteDatabase
from tests.emulator.helpers import client
from tests.keys import ALICE

pytestmark = pytest.mark.deployment

DAG_ID = "babou_human_review"
REVIEWER = "reviewer"
NOTE = "Make the feature cards slide in slower, one per second."
ROUND_TIMEOUT = 120.0  # a render (or a re-render) reaches its review


@pytest.fixture(scope="module")
def deployment(babou_emulator_server: EmulatorProcess) -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="babou-review-"))
    conn = {"conn_type": "babou", "host": babou_emulator_server.api_url, "password": ALICE}
    with running_deployment(
        home,
        DAG_ID,
        SqliteDatabase(home / "airflow.db"),
        [REPO / "example_dags" / f"{DAG_ID}.py"],
        AIRFLOW_CONN_BABOU_DEFAULT=json.dumps(conn),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{REVIEWER}:admin",
        BABOU_OUTPUT_DIR=str(home / "videos"),
        BABOU_PUBLISH_DIR=str(home / "published"),
    ) as deployment:
        yield deployment


def _wait_for_review(deployment: Deployment, run_id: str, task_id: str) -> dict[str, Any]:
    """Wait until ``task_id`` waits for a person; return its HITL detail (from the REST API).

    A person answers minutes later; the test waits until the scheduler has also taken the report
    of the worker that parked the review, as it would have by then: an answer in the seconds
    before can lose the try to an Airflow race (apache/airflow#72716) and its retry asks again.
    """

    def waiting() -> bool | None:
        rows = deployment.query(
            "SELECT state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            DAG_ID,
            run_id,
            task_id,
        )
        if not rows:
            return None
        state, try_number = rows[0]
        if state in ("failed", "upstream_failed", "skipped"):
            raise AssertionError(f"{task_id} is {state}\n{deployment.tries_report(run_id)}")
        parked = state in ("deferred", "awaiting_input")
        return True if parked and deployment.executor_reported(run_id, task_id, try_number) else None

    deployment.wait_for(f"{task_id} to wait for a reviewer", waiting, ROUND_TIMEOUT)
    detail: dict[str, Any] = deployment.api("GET", _hitl_path(run_id, task_id))
    assert detail["response_received"] is False
    return detail


def _hitl_path(run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


def _xcom(deployment: Deployment, run_id: str, task_id: str) -> Any:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return deployment.api("GET", path, params={"deserialize": True})["value"]


def test_reject_reprompts_the_chapter_then_approve_publishes(
    deployment: Deployment, emulator: EmulatorControl
) -> None:
    started = time.monotonic()
    deployment.wait_until_parsed()
    deployment.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    run_id = deployment.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})[
        "dag_run_id"
    ]

    # Round 1: the review shows the rendered video's link and file.
    first = _wait_for_review(deployment, run_id, "review_1")
    reached_review = time.monotonic() - started
    video = _xcom(deployment, run_id, "render")
    assert first["options"] == ["Approve", "Reject"]
    assert f"[Babou video]({video['download_url']})" in first["body"], first["body"]
    assert f"`{video['path']}`" in first["body"]
    assert video["path"].endswith("/round-1.mp4")
    assert Path(video["path"]).is_file()

    deployment.api(
        "PATCH",
        _hitl_path(run_id, "review_1"),
        json={"chosen_options": ["Reject"], "params_input": {"chapter": "features", "note": NOTE}},
    )

    # Round 2: the rejected chapter was re-prompted with the note (forced), the video rendered again.
    second = _wait_for_review(deployment, run_id, "review_2")
    counts = emulator.stats(ALICE)["key"]
    assert {k: counts[k] for k in ("prompts_submitted", "prompts_forced", "exports_started")} == {
        "prompts_submitted": 4,
        "prompts_forced": 1,
        "exports_started": 2,
    }, deployment.tries_report(run_id)
    project_id = video["project_id"]
    with client(emulator, ALICE) as babou:
        chapters = babou.get(f"/projects/{project_id}/chapters").json()["chapters"]
        prompts = {
            c["name"]: babou.get(f"/projects/{project_id}/chapters/{c['id']}").json()["prompts"]
            for c in chapters
        }
    assert {name: len(p) for name, p in prompts.items()} == {"intro": 1, "features": 2, "outro": 1}
    revised = prompts["features"][-1]
    assert revised["content"] == f"{prompts['features'][0]['content']}\nReviewer's note: {NOTE}"
    assert revised["status"] == "completed"
    video_2 = _xcom(deployment, run_id, "download_2")
    assert video_2["path"].endswith("/round-2.mp4")
    assert f"[Babou video]({video_2['download_url']})" in second["body"], second["body"]

    deployment.api(
        "PATCH",
        _hitl_path(run_id, "review_2"),
        json={"chosen_options": ["Approve"], "params_input": {"chapter": "intro", "note": ""}},
    )
    state = deployment.wait_for("the DAG run to finish", deployment.run_state, ROUND_TIMEOUT)
    elapsed = time.monotonic() - started

    assert state == "success", deployment.failure(f"run {state}\n{deployment.tries_report(run_id)}")
    states = {task: st for task, _, st, _ in deployment.task_instances(run_id)}
    assert states["revise_3"] == "success"  # short-circuited: approved, nothing to revise
    assert {states[t] for t in ("reprompt_3", "export_3", "download_3", "review_3")} == {"skipped"}
    assert states["publish"] == "success"
    tries = {task: n for task, _, _, n in deployment.task_instances(run_id)}
    assert (tries["review_1"], tries["review_2"]) == (1, 1), deployment.tries_report(run_id)  # asked once

    published = Path(deployment.env["BABOU_PUBLISH_DIR"]) / DAG_ID
    videos = sorted(published.glob("*.mp4"))
    assert len(videos) == 1, f"published: {sorted(published.rglob('*'))}"
    data = videos[0].read_bytes()
    assert hashlib.sha256(data).hexdigest() == video_2["sha256"]  # round 2's video, not round 1's
    with av.open(str(videos[0])) as container:
        assert {s.type for s in container.streams} >= {"video"}

    events = deployment.api(
        "GET", "/api/v2/assets/events", params={"source_dag_id": DAG_ID, "source_task_id": "publish"}
    )["asset_events"]
    assert len(events) == 1, events
    assert events[0]["uri"] == "babou://videos/reviewed-launch"
    assert events[0]["source_run_id"] == run_id
    assert events[0]["extra"] == {
        "project_id": project_id,
        "path": str(videos[0]),
        "size": len(data),
        "sha256": video_2["sha256"],
        "round": 2,
        "reviewer": REVIEWER,
    }

    leaks = key_leaks([deployment.logs, deployment.component_logs], ALICE)
    assert not leaks, f"the API key appears in {leaks}"
    print(f"\nreview_1 reached after {reached_review:.0f}s; run done after {elapsed:.0f}s")
    deployment.passed = True


def test_reject_without_a_note_fails_the_revision_with_what_to_do(
    deployment: Deployment, emulator: EmulatorControl
) -> None:
    deployment.passed = False  # set again once this test passed: a failure keeps AIRFLOW_HOME
    deployment.wait_until_parsed()
    deployment.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    run_id = deployment.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})[
        "dag_run_id"
    ]
    _wait_for_review(deployment, run_id, "review_1")

    deployment.api(
        "PATCH",
        _hitl_path(run_id, "review_1"),
        json={"chosen_options": ["Reject"], "params_input": {"chapter": "features", "note": "  "}},
    )
    state = deployment.wait_for("the DAG run to finish", deployment.run_state, ROUND_TIMEOUT)

    assert state == "failed", deployment.tries_report(run_id)
    tis = {task: (st, n) for task, _, st, n in deployment.task_instances(run_id)}
    assert tis["revise_2"] == ("failed", 1)  # a typed input error: no retry
    assert tis["reprompt_2"][0] == "upstream_failed"
    assert tis["publish"][0] == "upstream_failed"
    log = deployment.attempt_log(run_id, "revise_2", -1, 1).read_text()
    assert "a Reject needs a note saying what to change" in log
    assert "clear review_1 and answer again" in log
    counts = emulator.stats(ALICE)["key"]
    assert (counts["prompts_submitted"], counts["exports_started"]) == (3, 1)  # nothing re-rendered
    deployment.passed = True
