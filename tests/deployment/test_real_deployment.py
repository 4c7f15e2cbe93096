"""``babou_video_pipeline`` through a real Airflow deployment, against the session's emulator.

Scheduler, dag-processor, triggerer and api-server run as separate processes (LocalExecutor,
SQLite) in a fresh AIRFLOW_HOME, so the deferred waits run in a real triggerer process, which
resolves the connection through the async code path that ``dag.test()`` never exercises
(see apache/airflow#70398). Everything is bounded; every process started here is stopped by PID
(process group) in the fixture's teardown, even when the test fails (see ``harness``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from tests.conftest import REPO
from tests.deployment.harness import TAIL_CHARS, Deployment, key_leaks, running_deployment
from tests.deployment.services import SqliteDatabase
from tests.keys import ALICE

pytestmark = pytest.mark.deployment

DAG_ID = "babou_video_pipeline"
RUN_TIMEOUT = 180.0  # the DAG run reaches a final state


@pytest.fixture(scope="module")
def deployment(babou_emulator_server: EmulatorProcess) -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="babou-deployment-"))
    output_dir = home / "videos"
    output_dir.mkdir()
    conn = {"conn_type": "babou", "host": babou_emulator_server.api_url, "password": ALICE}
    with running_deployment(
        home,
        DAG_ID,
        SqliteDatabase(home / "airflow.db"),
        [REPO / "example_dags" / f"{DAG_ID}.py"],
        AIRFLOW_CONN_BABOU_DEFAULT=json.dumps(conn),
        BABOU_OUTPUT_DIR=str(output_dir),
    ) as deployment:
        yield deployment


def test_video_pipeline_runs_in_a_real_deployment(deployment: Deployment, emulator: EmulatorControl) -> None:
    started = time.monotonic()
    deployment.wait_until_parsed()
    deployment.airflow("dags", "unpause", DAG_ID)
    run_id = f"real-{int(time.time())}"
    deployment.airflow("dags", "trigger", DAG_ID, "--run-id", run_id)

    state = deployment.wait_for("the DAG run to finish", deployment.run_state, RUN_TIMEOUT)
    elapsed = time.monotonic() - started

    tis = deployment.query(
        "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ?", DAG_ID
    )
    assert state == "success", deployment.failure(f"run {state} after {elapsed:.0f}s")
    assert len(tis) == 9, deployment.failure(f"expected 9 task instances, got {tis}")
    assert {ti[2] for ti in tis} == {"success"}, deployment.diagnostics()
    # Any extra try is a provider failure, except one Airflow's executor race took (told apart by
    # its 'state mismatch' audit log entry in a try that deferred; see Deployment.lost_tries).
    retried = deployment.unexplained_tries(run_id)
    assert not retried, deployment.failure(f"tasks needed a retry:\n{deployment.tries_report(run_id)}")

    output_dir = Path(deployment.env["BABOU_OUTPUT_DIR"])
    videos = sorted(output_dir.rglob("*.mp4"))
    assert len(videos) == 1, deployment.failure(f"videos under {output_dir}: {videos}")
    with av.open(str(videos[0])) as container:
        assert {s.type for s in container.streams} >= {"video"}

    counts = emulator.stats(ALICE)["key"]
    keys = ("projects_created", "chapters_created", "prompts_submitted", "exports_started")
    assert {k: counts[k] for k in keys} == {
        "projects_created": 1,
        "chapters_created": 3,
        "prompts_submitted": 3,
        "exports_started": 1,
    }, deployment.diagnostics()

    # The deferred waits ran in the triggerer: three prompts and one export, one log each, each
    # ending in a success event.
    trigger_logs = deployment.trigger_log_files()
    deferred = sorted(p.parent.name.removeprefix("task_id=") for p in trigger_logs)
    assert deferred == ["prompt_features", "prompt_intro", "prompt_outro", "start_export"], (
        deployment.failure(f"trigger logs: {trigger_logs}")
    )
    for path in trigger_logs:
        text = path.read_text(errors="replace")
        assert "Traceback" not in text, f"{path}:\n{text[-TAIL_CHARS:]}"
        assert "Trigger fired event" in text, f"{path}:\n{text[-TAIL_CHARS:]}"
        assert "'status': 'success'" in text, f"{path}:\n{text[-TAIL_CHARS:]}"

    leaks = key_leaks([deployment.logs, deployment.component_logs], ALICE)
    assert not leaks, f"the API key appears in {leaks}"
    deployment.passed = True
