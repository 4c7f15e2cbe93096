"""pytest plugin: test your Babou DAGs against a local emulator, without an API key.

Installed with the provider (entry point ``pytest11``), so its fixtures are there in every test
suite; it imports nothing from Airflow or the emulator and starts nothing until a test asks for
a fixture.

* ``babou_emulator`` (function scope): the emulator reset to a clean state (no data, counters,
  scripted faults; start-up timings) and this process's key budgets reset with it (a 429 of one
  test does not pause the next), with the ``babou_default`` connection pointed at it through
  ``AIRFLOW_CONN_BABOU_DEFAULT`` (restored after the test). Yields an
  :class:`~airflow_provider_babou.emulator.EmulatorControl`: ``stats``, ``fail_next``,
  ``inject_fault``, ``outage``, ``configure`` (timings, rate limit, fault profile).
* ``babou_emulator_server`` (session scope): the emulator process, started on a free
  127.0.0.1 port and stopped by PID at the end of the session, or when pytest gets SIGTERM (a CI
  timeout); one per pytest (or xdist) worker.
* ``babou_emulator_key`` and ``babou_emulator_args`` (session scope): the API key the emulator
  accepts and its command line; override them in your ``conftest.py`` to change either.

A user's test of a DAG that renders a video (``dag.test()`` needs Airflow's metadata DB: run
``airflow db migrate`` once; on Airflow 3.1 the DAG must also be serialised,
``airflow dags reserialize``)::

    from pathlib import Path

    from my_project.dags.weekly_video import dag


    def test_weekly_video(babou_emulator, babou_emulator_key, tmp_path: Path):
        run = dag.test(run_conf={"output_dir": str(tmp_path)})

        assert run.state == "success"
        assert (tmp_path / "weekly.mp4").stat().st_size > 0
        stats = babou_emulator.stats(babou_emulator_key)["key"]
        assert stats["projects_created"] == 1
        assert stats["exports_started"] == 1


    def test_weekly_video_when_the_render_fails(babou_emulator, babou_emulator_key, tmp_path: Path):
        babou_emulator.fail_next(babou_emulator_key, "export", message="Renderer crashed")

        # A DAG without retries fails; with retries, the retry renders again and succeeds.
        assert dag.test(run_conf={"output_dir": str(tmp_path)}).state == "failed"
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess


@pytest.fixture(scope="session")
def babou_emulator_key() -> str:
    """The API key the emulator accepts and ``babou_default`` uses (the emulator's demo key)."""
    from airflow_provider_babou.emulator import DEMO_API_KEY

    return DEMO_API_KEY


@pytest.fixture(scope="session")
def babou_emulator_args(babou_emulator_key: str) -> list[str]:
    """The emulator's command line (``babou-emulator --help``): fast timings, no rate limit."""
    return [
        *("--api-key", babou_emulator_key, "--rate-limit", "0", "--seed", "0"),
        *("--prompt-seconds", "0.2", "--export-queued-seconds", "0.1", "--export-processing-seconds", "0.3"),
        *("--asset-seconds", "0.2"),
    ]


@pytest.fixture(scope="session")
def babou_emulator_server(babou_emulator_args: list[str]) -> Iterator[EmulatorProcess]:
    """One emulator process for the session, on a free port; stopped by PID at the end."""
    from airflow_provider_babou.emulator import EmulatorProcess

    with EmulatorProcess(babou_emulator_args) as process, _stopped_on_sigterm(process):
        yield process


@contextlib.contextmanager
def _stopped_on_sigterm(process: EmulatorProcess) -> Iterator[None]:
    """While active, a SIGTERM stops ``process`` first and then takes its usual course (the previous
    handler, or death by the signal): a test run killed by a CI timeout leaves no emulator behind."""
    if threading.current_thread() is not threading.main_thread():  # only it may handle signals
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        process.stop()
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)  # as if this handler had not been there

    previous = signal.signal(signal.SIGTERM, on_sigterm) or signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def babou_emulator(
    babou_emulator_server: EmulatorProcess, babou_emulator_key: str, monkeypatch: pytest.MonkeyPatch
) -> EmulatorControl:
    """The session's emulator reset for this test, with ``babou_default`` pointed at it."""
    from airflow_provider_babou.budget import reset_budgets
    from airflow_provider_babou.emulator import EmulatorControl

    control = EmulatorControl(babou_emulator_server.url)
    control.reset()
    reset_budgets()
    conn = {"conn_type": "babou", "host": control.api_url, "password": babou_emulator_key}
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_DEFAULT", json.dumps(conn))
    return control
