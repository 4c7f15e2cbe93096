"""A real S3 HTTP API for tests and benchmarks: moto's server mode as a subprocess on 127.0.0.1.

Reached like any S3 a user has: through the Amazon provider's ``ObjectStoragePath`` and an ``aws``
connection whose extra carries the ``endpoint_url``. moto keeps objects in its own memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any

import httpx

from tests.deployment.harness import free_port

#: moto accepts any credentials; these only have to be present (else s3fs goes anonymous).
CREDENTIALS = {"login": "testing", "password": "testing"}
REGION = "us-east-1"


class MotoServer:
    """Context manager around ``python -m moto.server`` on a free port, stopped by PID."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "moto server not started"
        return self._proc.pid

    def start(self) -> MotoServer:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=2)
                return self
            except httpx.TransportError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM by PID, wait up to 5 s, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._log.close()

    def connection(self) -> dict[str, Any]:
        """An ``aws`` Airflow connection to this server (for ``AIRFLOW_CONN_<ID>``)."""
        return {
            "conn_type": "aws",
            **CREDENTIALS,
            "extra": {"endpoint_url": self.url, "region_name": REGION},
        }

    def client(self) -> Any:
        """A boto3 S3 client, to look at the server without going through the code under test."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["login"],
            aws_secret_access_key=CREDENTIALS["password"],
        )

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
