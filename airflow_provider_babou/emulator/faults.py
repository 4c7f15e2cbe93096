"""Deterministic transport-fault decisions: seeded random profiles and exact scripted faults.

Every request to ``/api/v1/*`` or ``/downloads/*`` consumes exactly one draw of a
``random.Random(seed)`` in arrival order, whether or not a fault results, so the same seed and the
same request sequence give the same faults. The draw falls into stacked bands
``[error_500 | error_html | burst_429 | drop | latency | no fault]``; the position inside a band
picks the variant (502 vs 503 page, drop before vs after the handler).

Scripted faults (``POST /_emulator/faults``) take precedence over the profile and apply to the
next ``count`` requests matching ``method`` and ``path`` (``re.search`` on the URL path).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass

from airflow_provider_babou.emulator.config import FaultProfile

FAULT_NAMES = ("500", "502_html", "503_html", "504_empty", "429", "drop_before", "drop_after", "delay_after")


@dataclass
class Decision:
    """What to do to one request. ``fault`` is a :data:`FAULT_NAMES` entry or ``latency``."""

    fault: str
    seconds: float | None = None
    after_bytes: int | None = None


@dataclass
class ScriptedFault:
    fault: str
    method: str | None
    path: re.Pattern[str] | None
    count: int
    seconds: float | None
    after_bytes: int | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or self.path.search(path) is not None
        )


class FaultInjector:
    """Decides, per request, whether and how to misbehave."""

    def __init__(self, profile: FaultProfile, seed: int | None) -> None:
        self.profile = profile
        self._rng = random.Random(seed)
        self._bursts: dict[str, int] = {}
        self._scripted: list[ScriptedFault] = []
        self._lock = threading.Lock()

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._rng = random.Random(seed)
            self._bursts.clear()

    def script(self, fault: ScriptedFault) -> None:
        with self._lock:
            self._scripted.append(fault)

    def pending(self) -> int:
        with self._lock:
            return sum(f.count for f in self._scripted)

    def decide(self, method: str, path: str, key: str | None) -> Decision | None:
        """Consume one draw and return the fault for this request, if any."""
        with self._lock:
            draw = self._rng.random()
            for scripted in self._scripted:
                if scripted.matches(method, path):
                    scripted.count -= 1
                    if scripted.count <= 0:
                        self._scripted.remove(scripted)
                    return Decision(scripted.fault, scripted.seconds, scripted.after_bytes)
            burst_key = key or ""
            left = self._bursts.get(burst_key, 0)
            if left > 0:
                self._bursts[burst_key] = left - 1
                return Decision("429", 1)
            p = self.profile
            low = 0.0
            for share, variants in (
                (p.error_500, ("500", "500")),
                (p.error_html, ("502_html", "503_html")),
                (p.burst_429, ("429", "429")),
                (p.drop, ("drop_before", "drop_after")),
                (p.latency, ("latency", "latency")),
            ):
                if share > 0 and draw < low + share:
                    name = variants[0] if (draw - low) / share < 0.5 else variants[1]
                    if name == "429":
                        self._bursts[burst_key] = p.burst_429_length - 1
                        return Decision("429", 1)
                    if name == "latency":
                        return Decision("latency", p.latency_seconds)
                    return Decision(name)
                low += share
            return None
