"""A real S3 HTTP API for tests and benchmarks: moto's server mode as a subprocess on 127.0.0.1.

Reached like any S3 a user has: through the Amazon provider's ``ObjectStoragePath`` and an ``aws``
connection whose extra carries the ``endpoint_url``. moto keeps objects in its memory, spooling
those over 5 MiB to anonymous temporary files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any

import httpx

from airflow_provider_babou.emulator.process import stop_process
from tests.deployment.harness import free_port

#: moto accepts any credentials; these only have to be present (else s3fs goes anonymous).
CREDENTIALS = {"login": "testing", "password": "testing"}
REGION = "us-east-1"


class MotoServer:
    """Context manager around ``python -m moto.server`` on a free port, stopped by PID.

    :param env: extra environment of the server, e.g. ``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`` (objects
        larger than this, 5 MiB by default, are spooled to anonymous temporary files).
    """

    def __init__(self, startup_timeout: float = 30.0, env: dict[str, str] | None = None) -> None:
        self.startup_timeout = startup_timeout
        self.env = env
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    def start(self) -> MotoServer:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        env = {**os.environ, **self.env} if self.env else None
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=2)
                return self
            except httpx.TransportError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self._log.seek(0)
                    output = self._log.read().decode(errors="replace")[-3000:]
                    self.stop()
                    raise RuntimeError(f"moto server did not start: {output}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM by PID, wait up to 5 s, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)
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
