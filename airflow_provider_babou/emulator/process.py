"""``EmulatorProcess``: run the emulator as a subprocess on an ephemeral port (tests, demos)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO

_READY = re.compile(r"Babou emulator listening on (http://\S+)/api/v1")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM ``proc`` by PID, wait up to ``grace`` seconds, then SIGKILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(grace)


class EmulatorStartError(RuntimeError):
    """The emulator exited or did not get ready in time."""


class EmulatorProcess:
    """Context manager around ``python -m airflow_provider_babou.emulator --port 0 <args>``.

    :param args: extra CLI arguments (see ``babou-emulator --help``).
    :param startup_timeout: seconds to wait for the ready line.
    """

    def __init__(self, args: Sequence[str] = (), startup_timeout: float = 20.0) -> None:
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.url = ""
        self.api_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("emulator not started")
        return self._proc.pid

    def start(self) -> EmulatorProcess:
        # stderr goes to a file so a chatty server can never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "airflow_provider_babou.emulator", "--port", "0", *self.args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stop()
                    raise EmulatorStartError(
                        f"emulator not ready after {self.startup_timeout}s: {self._err()}"
                    )
                if not selector.select(remaining):
                    continue
                data = os.read(self._proc.stdout.fileno(), 4096)
                if not data:
                    code = self._proc.wait(5)
                    raise EmulatorStartError(f"emulator exited with code {code}: {self._err()}")
                buffer += data
        match = _READY.search(buffer.decode(errors="replace"))
        if match is None:
            self.stop()
            raise EmulatorStartError(f"unexpected emulator output {buffer!r}: {self._err()}")
        self.url = match.group(1)
        self.api_url = f"{self.url}/api/v1"
        return self

    def _err(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-4000:]

    def stop(self) -> None:
        """SIGTERM by PID, wait up to 5 s, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
