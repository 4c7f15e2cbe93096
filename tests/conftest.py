"""Shared fixtures: an isolated AIRFLOW_HOME and one Babou emulator process for the session.

Airflow reads its configuration on first import, so the environment is set here, before any
test module imports ``airflow``. The emulator is the package's pytest plugin's
(``airflow_provider_babou/pytest_plugin.py``), started with the arguments below.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.keys import ALICE, BOB, EXPIRED

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="babou-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "example_dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}")
os.environ.pop("BABOU_API_KEY", None)
#: Key budgets are shared by the processes of a host through files: the tests' go here, not in /tmp.
_BUDGETS = _AIRFLOW_HOME / "budgets"
os.environ["BABOU_BUDGET_DIR"] = str(_BUDGETS)

from airflow_provider_babou.emulator import EmulatorControl  # noqa: E402
from tests.s3 import MotoServer  # noqa: E402

EMULATOR_ARGS = [
    *("--api-key", ALICE, "--api-key", BOB, "--expired-key", EXPIRED),
    *("--rate-limit", "0", "--seed", "1234"),
    *("--prompt-seconds", "0.3", "--export-queued-seconds", "0.1", "--export-processing-seconds", "0.3"),
    *("--asset-seconds", "0.3"),
]


@pytest.fixture(autouse=True)
def fresh_budget_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A budget directory of the test's own: the budgets it creates share no state with earlier tests'
    (a test that keeps the process's budgets resets them, as the plugin's ``babou_emulator`` does)."""
    path = _BUDGETS / secrets.token_hex(6)
    path.mkdir(mode=0o700, parents=True)
    monkeypatch.setenv("BABOU_BUDGET_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def babou_emulator_key() -> str:
    """The plugin's ``babou_default`` connection uses ALICE."""
    return ALICE


@pytest.fixture(scope="session")
def babou_emulator_args() -> list[str]:
    """The plugin's session emulator (``babou_emulator_server``) accepts three keys, has no rate limit."""
    return EMULATOR_ARGS


@pytest.fixture
def emulator(babou_emulator: EmulatorControl) -> EmulatorControl:
    """The session's emulator, reset to its start-up state (data, counters, config, faults)."""
    return babou_emulator


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the metadata DB in the session's AIRFLOW_HOME (``dag.test()`` and the CLI need it)."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


@pytest.fixture
def make_conn(emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define a Babou connection (env, no DB) to the reset emulator; return its id.

    ``make_conn("babou_x", key=BOB, host=..., timeout=5)``: extras are keyword arguments
    (``rate_limit`` defaults to 1000 requests/s); ``key=None`` defines a connection without a password.
    """

    def make(
        conn_id: str = "babou_default", *, key: str | None = ALICE, host: str | None = None, **extra: Any
    ) -> str:
        conn: dict[str, Any] = {"conn_type": "babou", "host": host or emulator.api_url}
        if key is not None:
            conn["password"] = key
        # The emulator of the tests has no rate limit: neither should the client's budget (whose
        # default would pace a test's burst of requests); the budget's own tests set theirs.
        conn["extra"] = {"rate_limit": 1000, **extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


@pytest.fixture
def babou_conn(make_conn: Callable[..., str]) -> str:
    """``babou_default`` pointed at the reset emulator as ALICE (with a dashboard template); its id."""
    return make_conn(dashboard_url_template="https://app.babou.test/projects/{project_id}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    """One moto S3 server on a free 127.0.0.1 port, stopped by PID at the end of the session."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket on the S3 server, reached through the ``aws`` connection ``babou_s3``."""
    from airflow.sdk.io import store

    # Airflow caches one file system per connection id (``aws_default`` included, which an s3://
    # path without a connection now uses): a store cached by an earlier test, or by a deployment
    # test whose moto server has stopped, must not answer for this one.
    monkeypatch.setattr(store, "_STORE_CACHE", {})
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_S3", json.dumps(s3_server.connection()))
    name = f"videos-{secrets.token_hex(4)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's AIRFLOW_HOME (metadata DB, logs): nothing is left behind in /tmp."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
