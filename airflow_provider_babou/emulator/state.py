"""The emulator's whole mutable state: config, data store, counters, fault injector, rate limiter."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_babou.emulator.config import EmulatorConfig, profile_from
from airflow_provider_babou.emulator.faults import FaultInjector
from airflow_provider_babou.emulator.ratelimit import RateLimiter
from airflow_provider_babou.emulator.stats import Stats
from airflow_provider_babou.emulator.store import ApiError, Store
from airflow_provider_babou.emulator.video import VideoCache, missing_renderer
from airflow_provider_babou.limits import API_KEY_PREFIX

OUTAGE_MODES = ("drop", "reset", "503")
"""How requests fail during a scripted outage (``POST /_emulator/outage``): ``drop`` closes the
connection without a response after reading the request, ``reset`` aborts it (TCP RST) unread,
``503`` answers an nginx-style HTML 503 page."""


@dataclass(frozen=True)
class Outage:
    """A scripted total outage of ``/api/v1`` and ``/downloads`` until ``until`` (monotonic clock)."""

    mode: str
    until: float

    def seconds_left(self) -> float:
        return max(0.0, self.until - time.monotonic())


class EmulatorState:
    """Holds everything ``POST /_emulator/reset`` wipes; keeps the start-up config to restore it.

    Rendered export videos live in :attr:`videos` (a reset deletes them too).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self._initial = config.model_copy(deep=True)
        self._lock = threading.Lock()
        # The server's open connections (uvicorn protocol objects, each with ``client`` and
        # ``transport``), set by the CLI: an outage in ``drop``/``reset`` mode closes the
        # connection a request came on. None when the app runs in-process.
        self.connections: set[Any] | None = None
        self.videos = VideoCache()
        missing_renderer()  # says at start-up when downloads will be the sample MP4
        self.reset()

    def reset(self) -> None:
        """Back to the start-up config, with no data, counters, scripted faults or rate buckets."""
        with self._lock:
            self.config = self._initial.model_copy(deep=True)
            self.store = Store(self.config)
            self.videos.clear()
            self.stats = Stats()
            self.faults = FaultInjector(self.config.faults, self.config.seed)
            self.limiter = RateLimiter(self.config.rate_limit, self.config.rate_burst)
            self._outage: Outage | None = None
            self._index_keys()

    def close(self) -> None:
        """Release what outlives requests (the rendered videos' temp dir); the server calls this."""
        self.videos.close()

    def start_outage(self, seconds: float, mode: str) -> Outage | None:
        """Fail every ``/api/v1`` and ``/downloads`` request for ``seconds`` (0 ends an outage)."""
        if mode not in OUTAGE_MODES:
            raise ValueError(f"unknown outage mode {mode!r}; known: {', '.join(OUTAGE_MODES)}")
        with self._lock:
            self._outage = Outage(mode, time.monotonic() + seconds) if seconds > 0 else None
            return self._outage

    def outage(self) -> Outage | None:
        """The outage in force now, if any (it ends by itself when its time is up)."""
        outage = self._outage
        if outage is not None and outage.seconds_left() <= 0:
            return None
        return outage

    def _index_keys(self) -> None:
        self._valid = frozenset(self.config.api_keys)
        self._expired = frozenset(self.config.expired_keys) - self._valid

    def update_config(self, patch: dict[str, Any]) -> EmulatorConfig:
        """Apply a partial update; ``faults`` may be a profile name or a dict of profile fields.

        :raises ValueError: (pydantic ``ValidationError``) when the result is invalid; nothing
            changes then.
        """
        with self._lock:
            data = self.config.model_dump()
            for name, value in patch.items():
                if name == "faults":
                    data["faults"] = profile_from(value, self.config.faults).model_dump()
                else:
                    data[name] = value
            new = EmulatorConfig.model_validate(data)
            old = self.config
            self.config = new
            self.store.config = new
            self.faults.profile = new.faults
            if new.seed != old.seed:
                self.faults.reseed(new.seed)
            if (new.rate_limit, new.rate_burst) != (old.rate_limit, old.rate_burst):
                self.limiter = RateLimiter(new.rate_limit, new.rate_burst)
            self._index_keys()
            return new

    def key_from_header(self, authorization: str | None) -> str | None:
        """The valid (known, unexpired) key in an ``Authorization`` header, else None."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token in self._valid else None

    def authenticate(self, authorization: str | None) -> str:
        """Check a request's key in the documented order.

        Missing or not ``Bearer`` → ``UNAUTHORIZED``; not ``sk-bab-…`` →
        ``INVALID_API_KEY_FORMAT``; known but expired → ``API_KEY_EXPIRED``; unknown →
        ``UNAUTHORIZED``.
        """
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "UNAUTHORIZED", "Unauthorized - Invalid API key")
        if not token.startswith(API_KEY_PREFIX):
            raise ApiError(401, "INVALID_API_KEY_FORMAT", "Invalid API key format")
        if token in self._expired:
            raise ApiError(401, "API_KEY_EXPIRED", "API key has expired")
        if token not in self._valid:
            raise ApiError(401, "UNAUTHORIZED", "Unauthorized - Invalid API key")
        return token
