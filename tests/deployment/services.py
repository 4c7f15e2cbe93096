"""The services a test deployment stands on, each on a free 127.0.0.1 port and removed on exit:
its metadata database (SQLite, or a private PostgreSQL cluster) and a Redis server (a Celery broker).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

TAIL_CHARS = 3000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- metadata databases ----------------------------------------------------------------------------


class Database(Protocol):
    """Where a deployment keeps its metadata, and a read-only way to look into it."""

    url: str  # SQLAlchemy URL for AIRFLOW__DATABASE__SQL_ALCHEMY_CONN

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one read query (``?`` placeholders); [] when the table is not there yet."""
        ...


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # table not there yet, or locked past the timeout
            return []
        finally:
            conn.close()


PG_MISSING = (
    "pg_createcluster is not installed: these tests start a private PostgreSQL cluster. Run them "
    "through .ci/test (it installs Debian's postgresql package when pg_createcluster is missing) "
    "or `apt-get install -y postgresql`."
)


def installed_pg_version() -> str:
    """The newest PostgreSQL server installed the Debian way (``/usr/lib/postgresql/N``); 15 on
    the project's machines. ``BABOU_PG_VERSION`` overrides it."""
    versions = [p.parent.parent.name for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    numeric = sorted((v for v in versions if v.isdigit()), key=int)
    return os.environ.get("BABOU_PG_VERSION") or (numeric[-1] if numeric else "15")


class PostgresCluster:
    """A private PostgreSQL cluster (Debian's ``pg_createcluster``) with user and database ``airflow``.

    Runs as root (``su postgres`` creates the role); :meth:`drop` stops and deletes it.
    """

    def __init__(self, name: str, port: int, version: str | None = None) -> None:
        self.name = name
        self.port = port
        self.version = version or installed_pg_version()
        self.url = f"postgresql+psycopg2://airflow@127.0.0.1:{port}/airflow"
        self.created = False

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-TAIL_CHARS:]}\nstderr:\n{result.stderr[-TAIL_CHARS:]}"
            )

    def create(self) -> None:
        if shutil.which("pg_createcluster") is None:
            raise AssertionError(PG_MISSING)
        self.created = True  # from here on, drop() cleans up whatever exists
        self._run(
            "pg_createcluster", self.version, self.name, "-p", str(self.port),
            "--", "--auth-local=trust", "--auth-host=trust",
        )  # fmt: skip
        self._run("pg_ctlcluster", self.version, self.name, "start")
        for statement in ("CREATE USER airflow", "CREATE DATABASE airflow OWNER airflow"):
            self._run("su", "postgres", "-c", f'psql -q -p {self.port} -c "{statement};"')

    def drop(self) -> None:
        """Stop and delete the cluster (data, config and log), if it got as far as existing."""
        if self.created and self.exists():
            self._run("pg_dropcluster", "--stop", self.version, self.name)
        self.created = False

    def exists(self) -> bool:
        result = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30)
        return any(line.split()[:2] == [self.version, self.name] for line in result.stdout.splitlines())

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        try:
            conn = psycopg2.connect(
                host="127.0.0.1", port=self.port, user="airflow", dbname="airflow", connect_timeout=10
            )
        except psycopg2.Error:
            return []
        try:
            conn.set_session(readonly=True, autocommit=True)
            with conn.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return list(cursor.fetchall())
        except psycopg2.Error:  # table not there yet
            return []
        finally:
            conn.close()


@contextlib.contextmanager
def postgres_cluster(prefix: str = "babou") -> Iterator[PostgresCluster]:
    """A fresh cluster on a free port, dropped on exit (also when the body fails)."""
    cluster = PostgresCluster(f"{prefix}_{secrets.token_hex(4)}", free_port())
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()


# -- a Celery broker -------------------------------------------------------------------------------

REDIS_MISSING = (
    "redis-server is not installed: the scale-out deployment test runs a Redis broker. Run it through "
    ".ci/test (it installs Debian's redis-server package when missing) or `apt-get install -y redis-server`."
)


def redis_ping(port: int) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(folder: Path, timeout: float = 30.0) -> Iterator[str]:
    """A Redis server (no persistence) on a free port, its files in ``folder``; yields its URL and
    stops it by PID on exit."""
    if shutil.which("redis-server") is None:
        raise AssertionError(REDIS_MISSING)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    cmd += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(folder / "redis.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not redis_ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = folder / "redis.log"
                text = log.read_text(errors="replace")[-TAIL_CHARS:] if log.exists() else ""
                raise AssertionError(f"redis-server did not start (exit code {proc.poll()}): {text}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
