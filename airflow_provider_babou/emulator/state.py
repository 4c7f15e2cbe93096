"""The emulator's whole mutable state: config, data store, counters, fault injector, rate limiter."""

from __future__ import annotations

import threading
from typing import Any

from airflow_provider_babou.emulator.config import EmulatorConfig, profile_from
from airflow_provider_babou.emulator.faults import FaultInjector
from airflow_provider_babou.emulator.ratelimit import RateLimiter
from airflow_provider_babou.emulator.stats import Stats
from airflow_provider_babou.emulator.store import ApiError, Store
from airflow_provider_babou.limits import API_KEY_PREFIX


class EmulatorState:
    """Holds everything ``POST /_emulator/reset`` wipes; keeps the start-up config to restore it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._initial = config.model_copy(deep=True)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the start-up config, with no data, counters, scripted faults or rate buckets."""
        with self._lock:
            self.config = self._initial.model_copy(deep=True)
            self.store = Store(self.config)
            self.stats = Stats()
            self.faults = FaultInjector(self.config.faults, self.config.seed)
            self.limiter = RateLimiter(self.config.rate_limit, self.config.rate_burst)
            self._index_keys()

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
