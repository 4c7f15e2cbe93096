"""The pytest plugin as a DAG author uses it: ``babou_emulator`` and their DAG run by ``dag.test()``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.helpers import run_python


@pytest.fixture(scope="module")
def welcome_dag(airflow_db: None) -> Iterator[Any]:
    """The user's DAG, imported as they would, from their DAGs folder (``dag.test()`` serialises
    the DAGs folder's bundle into the metadata DB that ``airflow db migrate`` made)."""
    from airflow import settings

    from tests.compat import DagBag, sync_for_dag_test
    from tests.user_dags.welcome_video import dag

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "DAGS_FOLDER", str(Path(dag.fileloc).parent))
        sync_for_dag_test(DagBag(settings.DAGS_FOLDER))  # Airflow 3.1: `airflow dags reserialize`
        yield dag


def test_welcome_video_renders(
    welcome_dag: Any, babou_emulator: EmulatorControl, babou_emulator_key: str, tmp_path: Path
) -> None:
    run = welcome_dag.test(run_conf={"output_dir": str(tmp_path)})

    assert run.state == "success"
    with av.open(str(tmp_path / "welcome.mp4")) as video:
        assert "video" in {s.type for s in video.streams}
    stats = babou_emulator.stats(babou_emulator_key)["key"]
    assert (stats["projects_created"], stats["chapters_created"], stats["prompts_submitted"]) == (1, 2, 2)
    assert stats["exports_started"] == 1


def test_welcome_video_fails_when_the_render_fails(
    welcome_dag: Any, babou_emulator: EmulatorControl, babou_emulator_key: str, tmp_path: Path
) -> None:
    babou_emulator.fail_next(babou_emulator_key, "export", message="Renderer crashed")

    run = welcome_dag.test(run_conf={"output_dir": str(tmp_path)})

    assert run.state == "failed"
    assert not (tmp_path / "welcome.mp4").exists()
    assert babou_emulator.stats(babou_emulator_key)["key"]["exports_started"] == 1


def test_plugin_imports_nothing_heavy() -> None:
    # pytest loads the plugin in every run of every project that installs the provider.
    code = (
        "import sys, airflow_provider_babou.pytest_plugin\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('airflow', 'fastapi', 'httpx', 'uvicorn')])"
    )
    assert run_python("-c", code).strip() == "[]"


USER_TESTS = """
import os

from airflow_provider_babou.hooks.babou import BabouHook


def test_first(babou_emulator, babou_emulator_server, babou_emulator_key):
    with open("pid", "w") as f:
        f.write(str(babou_emulator_server.pid))
    BabouHook().create_project(name="first")
    assert babou_emulator.stats(babou_emulator_key)["key"]["projects_created"] == 1


def test_second_starts_clean_on_the_same_server(babou_emulator, babou_emulator_server, babou_emulator_key):
    assert open("pid").read() == str(babou_emulator_server.pid)
    assert babou_emulator.stats(babou_emulator_key)["key"]["projects_created"] == 0
    assert [p.name for p in BabouHook().iter_projects()] == []


def test_connection_is_restored_after_each_test():
    assert "AIRFLOW_CONN_BABOU_DEFAULT" not in os.environ
"""


def test_fixture_in_a_project_of_its_own(tmp_path: Path) -> None:
    """A fresh project (no conftest of ours) gets the fixtures from the entry point alone."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_BABOU_DEFAULT"}
    out = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py", cwd=tmp_path, env=env)
    assert "3 passed" in out
    with pytest.raises(ProcessLookupError):  # the session's emulator was stopped by its PID
        os.kill(int((tmp_path / "pid").read_text()), 0)


def _user_suite(tmp_path: Path, code: str) -> Path:
    """A user's test suite of one module: only the plugin's fixtures, not this repo's conftest."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(code))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def test_a_429_of_one_test_does_not_pause_the_next(tmp_path: Path) -> None:
    # max_backoff allows the hour: only the plugin's reset can spare the second test.
    suite = _user_suite(
        tmp_path,
        """
        import time

        import pytest

        from airflow_provider_babou.exceptions import BabouRateLimitError
        from airflow_provider_babou.hooks.babou import BabouHook


        def test_throttled(babou_emulator):
            babou_emulator.inject_fault("429", method="GET", path="/api/v1/projects", seconds=3600)
            with pytest.raises(BabouRateLimitError):
                BabouHook(max_backoff=3600, rate_limit=1000).list_projects()


        def test_next(babou_emulator):
            started = time.monotonic()
            BabouHook(max_backoff=3600, retry_deadline=5, rate_limit=1000).list_projects()
            assert time.monotonic() - started < 2
        """,
    )
    run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite), cwd=suite)


def test_sigterm_stops_the_emulator_of_the_run(tmp_path: Path) -> None:
    pid_file = tmp_path / "emulator.pid"
    suite = _user_suite(
        tmp_path,
        f"""
        import time
        from pathlib import Path


        def test_long(babou_emulator_server):
            Path({str(pid_file)!r}).write_text(str(babou_emulator_server.pid))
            time.sleep(60)  # a CI timeout sends SIGTERM here
        """,
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    emulator_pid = 0
    try:
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                emulator_pid = int(pid_file.read_text())
                break
            time.sleep(0.05)
        assert emulator_pid, "the user's test never started"
        os.kill(run.pid, signal.SIGTERM)
        assert run.wait(20) == -signal.SIGTERM  # pytest still ends by the signal, as without the plugin
        for _ in range(100):  # (a killed child may take a moment to be reaped)
            if not Path(f"/proc/{emulator_pid}").exists():
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{emulator_pid}").exists(), "the emulator outlived its test run"
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
            run.wait()
        if emulator_pid and Path(f"/proc/{emulator_pid}").exists():
            os.kill(emulator_pid, signal.SIGKILL)
