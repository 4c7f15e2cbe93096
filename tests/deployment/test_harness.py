"""The deployment tests' classifier of lost tries, on a metadata DB and task logs written here
(no deployment: seconds). A try the executor race took is excused; every other one is not."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.deployment.harness import Deployment
from tests.deployment.services import SqliteDatabase

DAG, RUN = "d", "r"
DEFERRED = json.dumps(
    {"timestamp": "2026-01-01T00:00:00Z", "level": "info", "event": "Pausing task as DEFERRED. "}
)
FAILED = json.dumps(
    {"timestamp": "2026-01-01T00:00:01Z", "level": "error", "event": "Task failed with exception"}
)
RACE = (
    "Executor LocalExecutor(parallelism=4) reported that the task instance <TaskInstance: d.t r [queued]> "
    "finished with state success, but the task instance's state attribute is queued. Learn more: ..."
)


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        for table in ("task_instance", "task_instance_history"):
            conn.execute(
                f"CREATE TABLE {table} (dag_id, run_id, task_id, map_index, try_number, state, hostname)"
            )
        conn.execute("CREATE TABLE log (dag_id, run_id, task_id, map_index, try_number, event, extra)")
    return Deployment(home=tmp_path, dag_id=DAG, db=SqliteDatabase(db), env={}, api_url="")


def _task(
    d: Deployment,
    task: str,
    tries: list[tuple[str, str]],
    *,
    mismatch: dict[int, str] | None = None,
    host: str = "worker-1",
) -> None:
    """``task`` with ``tries`` (state, task log text) in order, the last one current; ``mismatch``:
    the audit log's 'state mismatch' text per try number."""
    with sqlite3.connect(d.db.path) as conn:  # type: ignore[attr-defined]
        for number, (state, log) in enumerate(tries, start=1):
            insert = (
                "INSERT INTO task_instance VALUES (?, ?, ?, -1, ?, ?, ?)"
                if number == len(tries)
                else "INSERT INTO task_instance_history VALUES (?, ?, ?, -1, ?, ?, ?)"
            )
            conn.execute(insert, (DAG, RUN, task, number, state, host))
            path = d.attempt_log(RUN, task, -1, number)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(log)
        for number, extra in (mismatch or {}).items():
            conn.execute(
                "INSERT INTO log VALUES (?, ?, ?, -1, ?, 'state mismatch', ?)",
                (DAG, RUN, task, number, extra),
            )


def test_a_try_the_race_took_is_excused_and_reported(deployment: Deployment) -> None:
    _task(deployment, "t", [("failed", DEFERRED), ("success", "")], mismatch={1: RACE})
    assert deployment.unexplained_tries(RUN) == []
    [lost] = deployment.lost_tries(RUN)
    assert lost.executor_race
    assert "executor race" in lost.cause
    assert "72716" in deployment.tries_report(RUN)


def test_a_try_lost_to_a_task_error_is_not(deployment: Deployment) -> None:
    _task(deployment, "t", [("failed", FAILED), ("success", "")])
    [lost] = deployment.unexplained_tries(RUN)
    assert (lost.task, lost.try_number, lost.executor_race) == ("t", 1, False)
    assert "Task failed" in lost.cause


@pytest.mark.parametrize(
    ("log", "extra"),
    [
        ("", RACE),  # no deferral in that try: its "success" is not a deferring worker's exit
        (DEFERRED, RACE.replace("finished with state success", "finished with state failed")),  # killed
    ],
    ids=["no-deferral", "executor-failed"],
)
def test_a_state_mismatch_that_is_not_the_race_is_not_excused(
    deployment: Deployment, log: str, extra: str
) -> None:
    _task(deployment, "t", [("failed", log), ("success", "")], mismatch={1: extra})
    assert [(t.task, t.try_number) for t in deployment.unexplained_tries(RUN)] == [("t", 1)]


def test_a_final_failed_try_and_a_try_missing_from_the_history_count(deployment: Deployment) -> None:
    _task(deployment, "failed", [("failed", FAILED)])
    _task(deployment, "gap", [("failed", FAILED), ("success", "")])
    with sqlite3.connect(deployment.db.path) as conn:  # type: ignore[attr-defined]
        conn.execute("DELETE FROM task_instance_history WHERE task_id = 'gap'")
    found = {(t.task, t.try_number, t.cause) for t in deployment.unexplained_tries(RUN)}
    assert ("gap", 1, "not in task_instance_history") in found
    assert {(t, n) for t, n, _ in found} == {("failed", 1), ("gap", 1)}


def test_allowed_tries_are_excused(deployment: Deployment) -> None:
    _task(deployment, "killed", [("failed", ""), ("success", "")], host="worker-2")
    _task(deployment, "other", [("failed", FAILED), ("success", "")], host="worker-1")
    lost = deployment.unexplained_tries(RUN, lambda t: t.hostname == "worker-2")
    assert [t.task for t in lost] == ["other"]
