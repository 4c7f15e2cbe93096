"""``babou_video_pipeline`` through a real Airflow deployment, against the session's emulator.

Scheduler, dag-processor, triggerer and api-server run as separate processes (LocalExecutor,
SQLite) in a fresh AIRFLOW_HOME, so the deferred waits run in a real triggerer process, which
resolves the connection through the async code path that ``dag.test()`` never exercises
(see apache/airflow#70398). Everything is bounded; every process started here is stopped by PID
(process group) in the fixture's teardown, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from tests.conftest import REPO
from tests.keys import ALICE

DAG_ID = "babou_video_pipeline"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STARTUP_TIMEOUT = 90.0  # api-server healthy and DAG parsed (2 shared cores)
RUN_TIMEOUT = 180.0  # the DAG run reaches a final state
CLI_TIMEOUT = 60.0
STOP_GRACE = 15.0
TAIL_CHARS = 3000

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<unreadable: {exc}>"
    return text[-chars:]


def _summarise_task_log(path: Path, last: int = 3) -> str:
    """Warnings and errors (with their exceptions) of a JSON-lines task/trigger log, and its end."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<unreadable: {exc}>"
    picked = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                picked.append(line[:500])
            continue
        if not isinstance(record, dict) or record.get("level") not in ("warning", "error", "critical"):
            continue
        excs = [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in record.get("error_detail") or []]
        picked.append(
            f"{record.get('timestamp')} {record['level']} {record.get('event')} {excs or ''}"[:1000]
        )
    return "\n".join([*picked, "...", *(line[:300] for line in lines[-last:])])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we cannot signal still exists
        return True
    return True


@dataclass
class Deployment:
    home: Path
    output_dir: Path
    env: dict[str, str]
    api_url: str
    passed: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def component_logs(self) -> Path:
        return self.home / "component-logs"

    def airflow(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command in the deployment's environment; raise with its output."""
        cmd = [sys.executable, "-m", "airflow", *args]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-TAIL_CHARS:]}\nstderr:\n{result.stderr[-TAIL_CHARS:]}\n"
                + self.diagnostics()
            )
        return result

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata DB (read-only; the components hold the writers)."""
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # table not there yet, or locked past the timeout
            return []
        finally:
            conn.close()

    def start(self, component: str) -> None:
        self.component_logs.mkdir(exist_ok=True)
        log = (self.component_logs / f"{component}.log").open("wb")
        try:
            self.procs[component] = subprocess.Popen(
                [sys.executable, "-m", "airflow", component],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: teardown signals it and its workers
            )
        finally:
            log.close()  # the child holds its own descriptor

    def check_running(self) -> None:
        dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
        if dead:
            raise AssertionError(f"component(s) exited early: {dead}\n{self.diagnostics()}")

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            value = probe()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}\n{self.diagnostics()}"
                )
            time.sleep(every)

    def api_healthy(self) -> bool | None:
        try:
            response = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
        except httpx.HTTPError:
            return None
        return True if response.status_code == 200 else None

    def stop(self) -> list[str]:
        """SIGTERM every component's process group, SIGKILL what is left after the grace period."""
        for proc in self.procs.values():
            if proc.poll() is None or _group_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(_group_alive(p.pid) for p in self.procs.values()):
            time.sleep(0.2)  # LocalExecutor workers/task processes may outlive their parent
        killed = []
        for name, proc in self.procs.items():
            if _group_alive(proc.pid):
                killed.append(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                killed.append(f"{name} (pid {proc.pid} did not die after SIGKILL)")
        return killed

    def task_log_files(self) -> list[Path]:
        return (
            sorted(p for p in self.logs.rglob("*.log") if "dag_id=" in str(p)) if self.logs.exists() else []
        )

    def trigger_log_files(self) -> list[Path]:
        return [p for p in self.task_log_files() if ".log.trigger." in p.name]

    def diagnostics(self) -> str:
        """Run/task states, the tail of every component log and of every task/trigger log."""
        runs = self.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", DAG_ID)
        tis = self.query("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ?", DAG_ID)
        errors = self.query("SELECT filename, stacktrace FROM import_error")
        parts = [f"AIRFLOW_HOME={self.home}", f"dag_run: {runs}", f"task_instance: {tis}"]
        parts.append(f"import_error: {errors}")
        for name in COMPONENTS:
            path = self.component_logs / f"{name}.log"
            parts.append(f"----- {name} ({path}) -----\n{_tail(path)}")
        for path in self.task_log_files():
            parts.append(f"----- {path.relative_to(self.logs)} -----\n{_summarise_task_log(path)}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def deployment(emulator_process: EmulatorProcess) -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="babou-deployment-"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(REPO / "example_dags" / f"{DAG_ID}.py", dags)
    output_dir = home / "videos"
    output_dir.mkdir()
    api_port, worker_log_port, trigger_log_port = _free_port(), _free_port(), _free_port()
    api_url = f"http://127.0.0.1:{api_port}"

    # The children get a clean environment: nothing Airflow- or Babou-related is inherited from
    # the test process (its conftest points AIRFLOW_HOME and the DB elsewhere).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BABOU_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # api-server on a free loopback port; task workers reach its execution API there.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # The log servers of the LocalExecutor and the triggerer default to fixed ports
            # (8793/8794); free ones keep concurrent test sessions from colliding.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
            # Fast loops: parse the single DAG file right away, schedule without idling.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # A retry must not sit out the default five minutes (the test asserts none happen).
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
            "AIRFLOW_CONN_BABOU_DEFAULT": json.dumps(
                {"conn_type": "babou", "host": emulator_process.api_url, "password": ALICE}
            ),
            "BABOU_OUTPUT_DIR": str(output_dir),
        }
    )
    deployment = Deployment(home=home, output_dir=output_dir, env=env, api_url=api_url)
    try:
        deployment.airflow("db", "migrate", timeout=120)
        for component in COMPONENTS:
            deployment.start(component)
        deployment.wait_for("the api-server health endpoint", deployment.api_healthy, STARTUP_TIMEOUT)
        yield deployment
    finally:
        killed = deployment.stop()
        if killed:
            print(f"SIGKILLed after {STOP_GRACE:.0f}s: {killed}", file=sys.stderr)
        if deployment.passed:  # kept on failure, for inspection
            shutil.rmtree(home, ignore_errors=True)


def _run_state(deployment: Deployment) -> str | None:
    rows = deployment.query("SELECT state FROM dag_run WHERE dag_id = ?", DAG_ID)
    if rows and rows[0][0] in ("success", "failed"):
        return str(rows[0][0])
    return None


def test_video_pipeline_runs_in_a_real_deployment(deployment: Deployment, emulator: EmulatorControl) -> None:
    started = time.monotonic()
    deployment.wait_for(
        f"{DAG_ID} to be parsed and serialised",
        lambda: deployment.query("SELECT dag_id FROM serialized_dag WHERE dag_id = ?", DAG_ID) or None,
        STARTUP_TIMEOUT,
    )
    deployment.airflow("dags", "unpause", DAG_ID)
    deployment.airflow("dags", "trigger", DAG_ID)

    state = deployment.wait_for("the DAG run to finish", lambda: _run_state(deployment), RUN_TIMEOUT)
    elapsed = time.monotonic() - started

    tis = deployment.query(
        "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ?", DAG_ID
    )
    assert state == "success", f"run {state} after {elapsed:.0f}s\n{deployment.diagnostics()}"
    assert len(tis) == 9, f"expected 9 task instances, got {tis}\n{deployment.diagnostics()}"
    assert {ti[2] for ti in tis} == {"success"}, deployment.diagnostics()
    retried = [ti for ti in tis if ti[3] != 1]
    assert not retried, f"tasks needed a retry: {retried}\n{deployment.diagnostics()}"

    videos = sorted(deployment.output_dir.rglob("*.mp4"))
    assert len(videos) == 1, f"videos under {deployment.output_dir}: {videos}\n{deployment.diagnostics()}"
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
        f"trigger logs: {trigger_logs}\n{deployment.diagnostics()}"
    )
    for path in trigger_logs:
        text = path.read_text(errors="replace")
        assert "Traceback" not in text, f"{path}:\n{text[-TAIL_CHARS:]}"
        assert "Trigger fired event" in text, f"{path}:\n{text[-TAIL_CHARS:]}"
        assert "'status': 'success'" in text, f"{path}:\n{text[-TAIL_CHARS:]}"

    leaks = [
        str(path)
        for folder in (deployment.logs, deployment.component_logs)
        for path in folder.rglob("*")
        if path.is_file() and ALICE.encode() in path.read_bytes()
    ]
    assert not leaks, f"the API key appears in {leaks}"
    deployment.passed = True
