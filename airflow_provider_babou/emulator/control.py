"""``EmulatorControl``: a small httpx client for the emulator's ``/_emulator`` endpoints."""

from __future__ import annotations

from typing import Any

import httpx


class EmulatorControl:
    """Drive a running emulator; ``url`` is its root (``http://127.0.0.1:PORT``)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/api/v1"):
            self.url = self.url[: -len("/api/v1")]
        self.api_url = f"{self.url}/api/v1"
        self.timeout = timeout

    def _call(self, method: str, path: str, api_key: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        response = httpx.request(
            method, f"{self.url}/_emulator/{path}", headers=headers, timeout=self.timeout, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Wipe all data, counters and scripted faults; restore the start-up config."""
        self._call("POST", "reset")

    def config(self) -> dict[str, Any]:
        """The current config (API keys masked)."""
        result: dict[str, Any] = self._call("GET", "config")
        return result

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Partially update the config (e.g. ``rate_limit=2``, ``faults="flaky"``)."""
        result: dict[str, Any] = self._call("PATCH", "config", json=fields)
        return result

    def stats(self, api_key: str | None = None) -> dict[str, Any]:
        """``{"total": counts, "key": counts for api_key or None}``."""
        result: dict[str, Any] = self._call("GET", "stats", api_key)
        return result

    def fail_next(self, api_key: str, kind: str, count: int = 1, message: str | None = None) -> None:
        """Make ``api_key``'s next ``count`` prompts/exports/assets/uploads fail."""
        self._call("POST", "fail-next", api_key, json={"kind": kind, "count": count, "message": message})

    def seed(self, api_key: str, projects: int, age_seconds: float = 86400.0) -> None:
        """Give ``api_key`` ``projects`` empty projects made ``age_seconds`` ago."""
        self._call("POST", "seed", api_key, json={"projects": projects, "age_seconds": age_seconds})

    def inject_fault(
        self,
        fault: str,
        *,
        method: str | None = None,
        path: str | None = None,
        count: int = 1,
        seconds: float | None = None,
        after_bytes: int | None = None,
    ) -> None:
        """Script an exact transport fault for the next ``count`` matching requests."""
        body = {
            "fault": fault,
            "method": method,
            "path": path,
            "count": count,
            "seconds": seconds,
            "after_bytes": after_bytes,
        }
        self._call("POST", "faults", json=body)

    def outage(self, seconds: float, mode: str = "drop") -> dict[str, Any]:
        """Fail every API and download request for ``seconds`` (0 ends an outage early).

        ``mode``: ``drop`` (connection closed without a response; the default), ``reset`` (TCP
        RST) or ``503`` (HTML 503 page). Returns ``{"active", "mode", "seconds_left"}``.
        """
        result: dict[str, Any] = self._call("POST", "outage", json={"seconds": seconds, "mode": mode})
        return result

    def outage_status(self) -> dict[str, Any]:
        """``{"active", "mode", "seconds_left"}`` of the outage in force, if any."""
        result: dict[str, Any] = self._call("GET", "outage")
        return result
