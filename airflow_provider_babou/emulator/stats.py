"""Request, response, fault and connection counters behind ``GET /_emulator/stats``."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Counters:
    requests: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    requests_by_route: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    # Distinct client (host, port) pairs: one per TCP connection.
    connections: set[tuple[str, int]] = field(default_factory=set)
    videos_rendered: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "responses": dict(self.responses),
            "requests_by_route": dict(self.requests_by_route),
            "faults_injected": dict(self.faults_injected),
            "connections": len(self.connections),
            "videos_rendered": self.videos_rendered,
        }


class Stats:
    """Counters for all traffic to ``/api/v1`` and ``/downloads``, in total and per API key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = _Counters()
        self._keys: dict[str, _Counters] = {}

    def _targets(self, key: str | None) -> list[_Counters]:
        if key is None:
            return [self._total]
        return [self._total, self._keys.setdefault(key, _Counters())]

    def request(self, key: str | None, route: str, client: tuple[str, int] | None) -> None:
        with self._lock:
            for counters in self._targets(key):
                counters.requests += 1
                counters.requests_by_route[route] += 1
                if client is not None:
                    counters.connections.add(client)

    def response(self, key: str | None, status: int) -> None:
        with self._lock:
            for counters in self._targets(key):
                counters.responses[str(status)] += 1

    def fault(self, key: str | None, name: str) -> None:
        with self._lock:
            for counters in self._targets(key):
                counters.faults_injected[name] += 1

    def video_rendered(self, key: str) -> None:
        """An export of ``key`` was rendered to an MP4 (cache hits do not count)."""
        with self._lock:
            for counters in self._targets(key):
                counters.videos_rendered += 1

    def snapshot(self, key: str | None) -> dict[str, Any]:
        """Traffic counters for ``key`` (all keys when None)."""
        with self._lock:
            if key is None:
                return self._total.to_json()
            return self._keys.get(key, _Counters()).to_json()
