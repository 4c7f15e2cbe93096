"""The pytest plugin as a DAG author uses it: ``babou_emulator`` and their DAG run by ``dag.test()``."""

from __future__ import annotations

import os
import textwrap
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
