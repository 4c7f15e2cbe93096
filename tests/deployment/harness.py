"""Machinery shared by the real-deployment tests: Airflow components as separate processes in a
fresh AIRFLOW_HOME, on SQLite or on a private Postgres cluster (``services``), plus diagnostics
and log scans.

Everything is bounded by a timeout, and everything started here is stopped by PID (process group)
or dropped (the Postgres cluster) by the context managers, even when a test fails.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import av
import httpx
import psutil

from tests.deployment.services import TAIL_CHARS, Database, free_port

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STARTUP_TIMEOUT = 90.0  # api-server healthy and DAG parsed (2 shared cores)
CLI_TIMEOUT = 60.0
STOP_GRACE = 15.0
DIAGNOSTICS_CHARS = 60_000  # a failure message stays readable with 20 mapped tasks under chaos

T = TypeVar("T")


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<unreadable: {exc}>"
    return text[-chars:]


def log_errors(path: Path) -> list[str]:
    """Warnings and errors (with their exceptions) of a JSON-lines task/trigger log, oldest first."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return [f"<unreadable: {exc}>"]
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
    return picked


def _deferred_in(log: Path) -> bool:
    """Whether the task log of a try records a deferral (the task runner's "Pausing task as DEFERRED")."""
    try:
        return "Pausing task as DEFERRED" in log.read_text(errors="replace")
    except OSError:
        return False


def summarise_task_log(path: Path, last: int = 3, most: int = 20) -> str:
    """The last ``most`` warnings and errors of a task/trigger log, and its last lines."""
    picked = log_errors(path)
    if len(picked) > most:
        picked = [f"({len(picked) - most} earlier warnings/errors left out)", *picked[-most:]]
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    return "\n".join([*picked, "...", *(line[:300] for line in lines[-last:])])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we cannot signal still exists
        return True
    return True


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every descendant, also those in groups of their own (the
    task SDK puts each task process in its own group): a machine that dies takes all of them."""
    try:
        members = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        members = [pid]
    for member in members:
        for kill, target in ((os.killpg, member), (os.kill, member)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(target, signal.SIGKILL)


def key_leaks(folders: Iterable[Path], key: str) -> list[str]:
    """Every file under ``folders`` whose bytes contain ``key``."""
    needle = key.encode()
    return [
        str(path)
        for folder in folders
        if folder.exists()
        for path in folder.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]


# -- what the example DAGs read and write -----------------------------------------------------------


#: Babou's counters of what it made (``EmulatorControl.stats``): a video makes one project and export
#: and a chapter and prompt per chapter.
CREATES = ("projects_created", "chapters_created", "prompts_submitted", "exports_started")


def read_manifests(folder: Path) -> dict[str, dict[str, Any]]:
    """Every row of the campaign manifests (``manifest*.jsonl``) in ``folder``, by row key."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("manifest*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                rows[record["key"]] = record
    return rows


def write_recipients(path: Path, prefix: str, rows: int) -> list[str]:
    """Write the CSV ``babou_personalized_videos`` reads: ``rows`` customers ``<prefix>-NN``; their ids."""
    ids = [f"{prefix}-{i:02d}" for i in range(1, rows + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "first_name", "plan", "renewal_date"])
        for i, customer in enumerate(ids):
            writer.writerow([customer, f"Name{i}", "Pro", f"2026-12-{i % 28 + 1:02d}"])
    return ids


def unplayable(video: str | IO[bytes], name: str) -> str | None:
    """None when PyAV opens ``video`` (a path or bytes) as an MP4 and decodes a video frame from
    it, else why not."""
    try:
        with av.open(video) as container:
            next(container.decode(video=0))
    except Exception as exc:  # any failure to decode is the finding
        return f"{name}: not a playable MP4 ({type(exc).__name__}: {exc})"
    return None


# -- the deployment --------------------------------------------------------------------------------


def deployment_env(home: Path, dags: Path, db: Database, api_port: int, **extra: str) -> dict[str, str]:
    """The components' environment: nothing Airflow- or Babou-related is inherited from the test
    process (its conftest points AIRFLOW_HOME and the DB elsewhere); ``extra`` is added last."""
    api_url = f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BABOU_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db.url,
            # api-server on a free loopback port; task workers reach its execution API there.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # The log servers of the LocalExecutor and the triggerer default to fixed ports
            # (8793/8794); free ones keep concurrent test sessions from colliding.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # Fast loops: parse the DAG file right away, schedule without idling.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # A retry must not sit out the default five minutes.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
        }
    )
    env.update(extra)
    return env


def component_env(env: dict[str, str], name: str, home: Path | None = None, **extra: str) -> dict[str, str]:
    """``env`` for one more component called ``name``: Airflow records ``name`` as its hostname (see
    ``hostname``). With ``home``, it gets an AIRFLOW_HOME, DAG folder and TMPDIR of its own there (a
    machine of its own: a Celery worker shares no disk with the rest)."""
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.deployment.hostname.component_name",
        "BABOU_COMPONENT_NAME": name,
    }
    if home is not None:
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env.update(
            AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"), TMPDIR=str(home / "tmp")
        )
    env.update(extra)
    return env


_MISMATCH = re.compile(r"finished with state (\w+), but the task instance's state attribute is (\w+)")


@dataclass(frozen=True)
class TaskTry:
    """One try of one task instance that did not end the task: what ended it."""

    task: str  # task_id[map_index]
    try_number: int
    state: str | None
    cause: str
    executor_race: bool = False  # failed by the scheduler (state mismatch), not by the task
    hostname: str | None = None  # the component that ran it (Airflow's hostname callable)


@dataclass
class Deployment:
    home: Path
    dag_id: str
    db: Database
    env: dict[str, str]
    api_url: str
    passed: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # on purpose, by kill()
    # Task logs of components with an AIRFLOW_HOME of their own (e.g. Celery workers on other disks).
    extra_logs: list[Path] = field(default_factory=list)
    token: str | None = None

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def log_roots(self) -> list[Path]:
        return [self.logs, *self.extra_logs]

    @property
    def component_logs(self) -> Path:
        return self.home / "component-logs"

    def airflow(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command in the deployment's environment; raise with its output."""
        cmd = [sys.executable, "-m", "airflow", *args]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            output = f"stdout:\n{result.stdout[-TAIL_CHARS:]}\nstderr:\n{result.stderr[-TAIL_CHARS:]}"
            raise AssertionError(self.failure(f"{' '.join(args)} exited {result.returncode}\n{output}"))
        return result

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata DB (read-only; the components hold the writers)."""
        return self.db.query(sql, *params)

    def start(self, name: str, *command: str, env: dict[str, str] | None = None) -> None:
        """Start ``airflow <command>`` (default: ``airflow <name>``) as component ``name``, in the
        deployment's environment or ``env``; its output goes to ``component-logs/<name>.log`` (a
        component started again after a kill adds to its earlier log)."""
        self.component_logs.mkdir(exist_ok=True)
        log = (self.component_logs / f"{name}.log").open("ab")
        try:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *(command or (name,))],
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: teardown signals it and its workers
            )
        finally:
            log.close()  # the child holds its own descriptor

    def kill(self, name: str) -> None:
        """SIGKILL component ``name`` with all its processes (a lost machine); it no longer counts
        as exited early."""
        proc = self.procs.pop(name)
        self.killed[name] = proc
        kill_tree(proc.pid)
        proc.wait(10)

    def check_running(self) -> None:
        dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
        if dead:
            raise AssertionError(self.failure(f"component(s) exited early: {dead}"))

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            value = probe()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(self.failure(f"timed out after {timeout:.0f}s waiting for {what}"))
            time.sleep(every)

    def api_healthy(self) -> bool | None:
        try:
            response = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
        except httpx.HTTPError:
            return None
        return True if response.status_code == 200 else None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``/api/v2/...``) as the simple auth manager's first user; return the JSON.

        That user's password is read from the file the api-server generated in AIRFLOW_HOME; the
        token is fetched once (``POST /auth/token``). A non-2xx answer raises with its body.
        """
        if self.token is None:
            users = self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
            username = users.split(",")[0].split(":")[0].strip()
            passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
            response = httpx.post(
                f"{self.api_url}/auth/token",
                json={"username": username, "password": passwords[username]},
                timeout=30,
            )
            response.raise_for_status()
            self.token = str(response.json()["access_token"])
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)
        if response.is_error:
            raise AssertionError(
                f"{method} {path} answered {response.status_code}: {response.text[:TAIL_CHARS]}"
            )
        return response.json()

    def executor_reported(self, run_id: str, task_id: str, try_number: int) -> bool:
        """Whether the scheduler took the executor's report that this try's worker exited (its
        "TaskInstance Finished" log line). A deferred task resumed before that can meet the stale
        "success" of the worker that deferred and lose the try (apache/airflow#72716)."""
        found = re.search(
            rf"TaskInstance Finished: dag_id={re.escape(self.dag_id)}, task_id={re.escape(task_id)}, "
            rf"run_id={re.escape(run_id)}, .*?try_number={try_number},",
            tail(self.component_logs / "scheduler.log", chars=10**8),
        )
        return found is not None

    def wait_until_parsed(self) -> None:
        self.wait_for(
            f"{self.dag_id} to be parsed and serialised",
            lambda: self.query("SELECT dag_id FROM serialized_dag WHERE dag_id = ?", self.dag_id) or None,
            STARTUP_TIMEOUT,
        )

    def run_state(self, run_id: str | None = None) -> str | None:
        """The run's final state (``success``/``failed``), None while it is not final."""
        if run_id is None:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = ?", self.dag_id)
        else:
            rows = self.query(
                "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", self.dag_id, run_id
            )
        if rows and rows[0][0] in ("success", "failed"):
            return str(rows[0][0])
        return None

    def task_instances(self, run_id: str) -> list[tuple[str, int, str | None, int]]:
        """``(task_id, map_index, state, try_number)`` of every task instance of the run, sorted."""
        rows = self.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
            self.dag_id,
            run_id,
        )
        return sorted((str(r[0]), int(r[1]), r[2], int(r[3])) for r in rows)

    def attempt_log(self, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
        relative = Path(f"dag_id={self.dag_id}", f"run_id={run_id}", f"task_id={task_id}")
        if map_index >= 0:
            relative = relative / f"map_index={map_index}"
        relative = relative / f"attempt={try_number}.log"
        return next(
            (root / relative for root in self.log_roots if (root / relative).exists()), self.logs / relative
        )

    def lost_tries(self, run_id: str) -> list[TaskTry]:
        """Every try of the run's task instances that did not end in success, with what ended it:
        the earlier tries (``task_instance_history``) and the last try of a failed task instance.

        A try the scheduler failed because of the executor race on resumed deferred tasks
        (apache/airflow#66374, #67287, #72716: the audit log's ``state mismatch``, a stale
        "success" of the worker that deferred, in a try whose task log records a deferral) is told
        apart from a try that failed on its own error (the last error its task log records).
        """
        tries = [
            (str(r[0]), int(r[1]), int(r[2]), r[3], r[4])
            for r in self.query(
                "SELECT task_id, map_index, try_number, state, hostname FROM task_instance_history "
                "WHERE dag_id = ? AND run_id = ?",
                self.dag_id,
                run_id,
            )
        ]
        tries += [
            (str(r[0]), int(r[1]), int(r[2]), r[3], r[4])
            for r in self.query(
                "SELECT task_id, map_index, try_number, state, hostname FROM task_instance "
                "WHERE dag_id = ? AND run_id = ? AND state IN ('failed', 'upstream_failed', 'up_for_retry')",
                self.dag_id,
                run_id,
            )
        ]
        mismatches: dict[tuple[str, int, int], str] = {}
        for task_id, map_index, try_number, extra in self.query(
            "SELECT task_id, map_index, try_number, extra FROM log "
            "WHERE dag_id = ? AND run_id = ? AND event = 'state mismatch'",
            self.dag_id,
            run_id,
        ):
            found = _MISMATCH.search(extra or "")
            if found is None or found.group(1) != "success":
                continue  # a task killed externally is a real loss, not the race
            key = (str(task_id), int(map_index if map_index is not None else -1), int(try_number or 0))
            mismatches[key] = found.group(2)
        lost = []
        for task_id, map_index, try_number, state, hostname in sorted(set(tries), key=lambda r: r[:3]):
            label = f"{task_id}[{map_index}]" if map_index >= 0 else task_id
            log = self.attempt_log(run_id, task_id, map_index, try_number)
            # The race needs a deferral in that try: its worker's exit is the stale "success".
            race = (task_id, map_index, try_number) in mismatches and _deferred_in(log)
            if race:
                cause = (
                    "Airflow executor race, not a task error: the scheduler failed the try on the stale "
                    "'success' of its deferral while it was "
                    f"{mismatches[task_id, map_index, try_number]} ('state mismatch', apache/airflow#72716)"
                )
            else:
                errors = [e for e in log_errors(log) if " error " in e or "Traceback" in e]
                cause = errors[-1] if errors else "no error in its task log"
            lost.append(TaskTry(label, try_number, state, cause, executor_race=race, hostname=hostname))
        return lost

    def unexplained_tries(
        self, run_id: str, allowed: Callable[[TaskTry], bool] = lambda t: False
    ) -> list[TaskTry]:
        """The tries a clean run must not have: every try that did not end its task instance,
        except those the executor race took (``TaskTry.executor_race``: Airflow's doing, not the
        task's; the provider makes it rare, it cannot rule it out) and those ``allowed`` (e.g. a
        try on a worker the test killed). A task instance whose earlier try is missing from the
        history counts too. The one classifier of the deployment tests."""
        lost = self.lost_tries(run_id)
        seen = {(t.task, t.try_number) for t in lost}
        missing = [
            TaskTry(label, number, None, "not in task_instance_history")
            for task_id, map_index, _, try_number in self.task_instances(run_id)
            for label in [f"{task_id}[{map_index}]" if map_index >= 0 else task_id]
            for number in range(1, try_number)
            if (label, number) not in seen
        ]
        return [t for t in lost if not t.executor_race and not allowed(t)] + missing

    def tries_report(self, run_id: str) -> str:
        """Tries per task instance, then what ended each lost try: for assertion messages."""
        tis = self.task_instances(run_id)
        lines = [f"tries per task ({len(tis)} task instances):"]
        lines += [
            f"  {task_id}{f'[{map_index}]' if map_index >= 0 else ''}: try {try_number}, {state}"
            for task_id, map_index, state, try_number in tis
        ]
        lost = self.lost_tries(run_id)
        lines.append(f"lost tries ({len(lost)}):")
        lines += [f"  {t.task} try {t.try_number} ({t.state}, on {t.hostname}): {t.cause}" for t in lost]
        return "\n".join(lines)

    def stop(self) -> list[str]:
        """SIGTERM every component's process group, SIGKILL what is left after the grace period
        (with the descendants that left the group: task processes have groups of their own)."""
        descendants: list[psutil.Process] = []
        for proc in self.procs.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                descendants += psutil.Process(proc.pid).children(recursive=True)
        for proc in self.procs.values():
            if proc.poll() is None or group_alive(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(group_alive(p.pid) for p in self.procs.values()):
            time.sleep(0.2)  # LocalExecutor workers/task processes may outlive their parent
        killed = []
        for name, proc in self.procs.items():
            if group_alive(proc.pid):
                killed.append(name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                killed.append(f"{name} (pid {proc.pid} did not die after SIGKILL)")
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    killed.append(f"{child.name()} (pid {child.pid}, outside its component's group)")
                    child.kill()
        return killed

    def task_log_files(self) -> list[Path]:
        return sorted(
            p for root in self.log_roots if root.exists() for p in root.rglob("*.log") if "dag_id=" in str(p)
        )

    def trigger_log_files(self) -> list[Path]:
        return [p for p in self.task_log_files() if ".log.trigger." in p.name]

    def failure(self, summary: str, run_id: str | None = None) -> str:
        """An assertion message: ``summary``, the diagnostics, then ``summary`` again (CI shows only
        the tail of a long message, and a reader starts at the top)."""
        return f"{summary}\n{self.diagnostics(run_id)}\n{summary}"

    def diagnostics(self, run_id: str | None = None) -> str:
        """Run/task states, the tail of every component log and of the (run's) task/trigger logs."""
        runs = self.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", self.dag_id)
        tis = self.query(
            "SELECT run_id, task_id, map_index, state, try_number FROM task_instance WHERE dag_id = ?",
            self.dag_id,
        )
        errors = self.query("SELECT filename, stacktrace FROM import_error")
        parts = [f"AIRFLOW_HOME={self.home}", f"dag_run: {runs}", f"task_instance: {sorted(tis)}"]
        parts.append(f"import_error: {errors}")
        for path in sorted(self.component_logs.glob("*.log")):
            parts.append(f"----- {path.stem} ({path}) -----\n{tail(path)}")
        for path in self.task_log_files():
            if run_id is None or f"run_id={run_id}" in str(path):
                parts.append(f"----- {path} -----\n{summarise_task_log(path)}")
        text = "\n".join(parts)
        if len(text) > DIAGNOSTICS_CHARS:
            text = f"{text[: DIAGNOSTICS_CHARS // 2]}\n[... cut ...]\n{text[-DIAGNOSTICS_CHARS // 2 :]}"
        return text


def copy_dags(dag_files: Iterable[Path], folder: Path) -> Path:
    """Copy DAG files (and folders, e.g. their data) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in dag_files:
        copy = shutil.copytree if path.is_dir() else shutil.copy
        copy(path, folder / path.name)
    return folder


@contextlib.contextmanager
def running_deployment(
    home: Path,
    dag_id: str,
    db: Database,
    dag_files: Iterable[Path],
    components: Iterable[str] = COMPONENTS,
    **extra_env: str,
) -> Iterator[Deployment]:
    """Migrate the DB, start ``components`` and wait for the api-server; stop them on exit.

    AIRFLOW_HOME is removed on exit when the test set ``deployment.passed``, kept otherwise.
    """
    dags = copy_dags(dag_files, home / "dags")
    api_port = free_port()
    env = deployment_env(home, dags, db, api_port, **extra_env)
    deployment = Deployment(home=home, dag_id=dag_id, db=db, env=env, api_url=f"http://127.0.0.1:{api_port}")
    try:
        deployment.airflow("db", "migrate", timeout=180)
        for component in components:
            deployment.start(component)
        deployment.wait_for("the api-server health endpoint", deployment.api_healthy, STARTUP_TIMEOUT)
        yield deployment
    finally:
        killed = deployment.stop()
        if killed:
            print(f"SIGKILLed after {STOP_GRACE:.0f}s: {killed}", file=sys.stderr)
        if deployment.passed:  # kept on failure, for inspection
            shutil.rmtree(home, ignore_errors=True)
