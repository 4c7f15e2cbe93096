"""Shared fixtures: an isolated AIRFLOW_HOME and one Babou emulator process for the session.

Airflow reads its configuration on first import, so the environment is set here, before any
test module imports ``airflow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.keys import ALICE, BOB, EXPIRED

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="babou-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "example_dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}")
os.environ.pop("BABOU_API_KEY", None)

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess  # noqa: E402

EMULATOR_ARGS = [
    *("--api-key", ALICE, "--api-key", BOB, "--expired-key", EXPIRED),
    *("--rate-limit", "0", "--seed", "1234"),
    *("--prompt-seconds", "0.3", "--export-queued-seconds", "0.1", "--export-processing-seconds", "0.3"),
    *("--asset-seconds", "0.3"),
]


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    """One emulator on an ephemeral 127.0.0.1 port, stopped by PID at the end of the session."""
    with EmulatorProcess(EMULATOR_ARGS) as process:
        yield process


@pytest.fixture
def emulator(emulator_process: EmulatorProcess) -> EmulatorControl:
    """The session's emulator, reset to its start-up state (data, counters, config, faults)."""
    control = EmulatorControl(emulator_process.url)
    control.reset()
    return control


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the metadata DB in the session's AIRFLOW_HOME (``dag.test()`` and the CLI need it)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


@pytest.fixture
def babou_conn(emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``babou_default`` connection (env, no DB) at the reset emulator as ALICE; return its id."""
    conn = {
        "conn_type": "babou",
        "host": emulator.api_url,
        "password": ALICE,
        "extra": {"dashboard_url_template": "https://app.babou.test/projects/{project_id}"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_DEFAULT", json.dumps(conn))
    return "babou_default"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's AIRFLOW_HOME (metadata DB, logs): nothing is left behind in /tmp."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
