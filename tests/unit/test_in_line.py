"""Under ``dag.test()`` (task and trigger in one process) a trigger holds no event for the executor race."""

from __future__ import annotations

import asyncio
import time

import pytest
from airflow.sdk.execution_time import supervisor, task_runner

from airflow_provider_babou.triggers.babou import BabouExportTrigger, runs_in_line


@pytest.fixture
def in_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comms ``dag.test()`` installs (Airflow's own class, built without a supervisor)."""
    comms = supervisor.InProcessSupervisorComms.__new__(supervisor.InProcessSupervisorComms)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)


def _trigger() -> BabouExportTrigger:
    now = time.time()
    return BabouExportTrigger("babou_default", "prj_1", end_time=now + 7200, not_before=now + 3600)


def test_outside_dag_test_nothing_runs_in_line() -> None:
    assert not runs_in_line()


def test_dag_test_runs_in_line(in_line: None) -> None:
    assert runs_in_line()


async def test_an_event_is_held_until_not_before_under_an_executor() -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(_trigger()._hold("export of project prj_1", "completed"), 0.2)


async def test_an_event_is_not_held_in_line(in_line: None) -> None:
    await asyncio.wait_for(_trigger()._hold("export of project prj_1", "completed"), 5)
