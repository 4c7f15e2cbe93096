"""Emulator configuration, named fault profiles and the scripted-failure markers.

Scripted business failures (deterministic, for tests and demos):

* A prompt whose ``content`` contains ``[[emulator:fail]]`` ends ``failed`` (its ``result`` is an
  error message) and its chapter becomes ``error``.
* A prompt whose ``content`` contains ``[[emulator:fail-export]]`` makes the **next** export of
  that project fail with ``Failed to render chapter N`` (N = the chapter's 1-based position).
* ``POST /_emulator/fail-next`` ``{"kind": "prompt"|"export"|"asset"|"upload", "count": 1,
  "message": "..."}`` with the caller's ``Authorization: Bearer`` key: the next ``count`` prompts,
  exports or assets of that key end ``failed``/``error`` with ``message``; for ``upload`` the next
  uploads answer 500 ``UPLOAD_FAILED``.

Transport faults (5xx, HTML error pages, 429 bursts, dropped connections, latency) come from a
:class:`FaultProfile` (random but reproducible under ``seed``) or from exact scripted faults
(``POST /_emulator/faults``); see :mod:`airflow_provider_babou.emulator.faults`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from airflow_provider_babou.limits import API_KEY_PREFIX

DEMO_API_KEY = "sk-bab-emulator-demo-key"
"""The key the emulator accepts when no ``--api-key`` is given (documented, fake)."""

FAIL_PROMPT_MARKER = "[[emulator:fail]]"
FAIL_EXPORT_MARKER = "[[emulator:fail-export]]"

SAMPLE_MP4 = Path(__file__).with_name("data") / "sample.mp4"


class FaultProfile(BaseModel):
    """Shares (0..1) of API/download requests that get each transport fault.

    One random draw per request picks at most one fault; the shares are stacked bands of
    ``[0, 1)``, so their sum must not exceed 1.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = "none"
    error_500: float = Field(0.0, ge=0, le=1)
    error_html: float = Field(0.0, ge=0, le=1)
    burst_429: float = Field(0.0, ge=0, le=1)
    burst_429_length: int = Field(3, ge=1, le=1000)
    drop: float = Field(0.0, ge=0, le=1)
    latency: float = Field(0.0, ge=0, le=1)
    latency_seconds: float = Field(0.2, ge=0, le=60)

    @model_validator(mode="after")
    def _shares_fit(self) -> FaultProfile:
        if self.error_500 + self.error_html + self.burst_429 + self.drop + self.latency > 1.0 + 1e-9:
            raise ValueError("fault shares must add up to at most 1")
        return self


PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile(name="none"),
    "flaky": FaultProfile(
        name="flaky", error_500=0.05, error_html=0.03, burst_429=0.02, drop=0.02, latency=0.10
    ),
    "chaos": FaultProfile(
        name="chaos",
        error_500=0.15,
        error_html=0.10,
        burst_429=0.05,
        drop=0.08,
        latency=0.20,
        latency_seconds=0.5,
    ),
}


def profile_from(value: str | dict[str, Any], base: FaultProfile | None = None) -> FaultProfile:
    """Build a profile from a name, a JSON object string, or a dict of fields.

    A dict may name a base profile (``{"name": "flaky", "drop": 0}``); fields not given keep the
    base's values (``base``, or the ``none`` profile).

    :raises ValueError: unknown profile name, invalid fields, or neither a name nor an object.
    """
    if not isinstance(value, (str, dict)):
        raise ValueError("faults must be a profile name or an object of profile fields")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            import json

            return profile_from(json.loads(text), base)
        if text not in PROFILES:
            raise ValueError(f"unknown fault profile {text!r}; known: {', '.join(PROFILES)}")
        return PROFILES[text].model_copy()
    fields = dict(value)
    if isinstance(fields.get("name"), str) and fields["name"] in PROFILES:
        start = PROFILES[fields["name"]].model_dump()
    else:
        start = (base or PROFILES["none"]).model_dump()
        fields.setdefault("name", "custom")
    start.update(fields)
    return FaultProfile.model_validate(start)


def mask_key(key: str) -> str:
    """Shorten an API key for logs and responses (``sk-bab-…1234``); never show a full key."""
    return f"{API_KEY_PREFIX}…{key[-4:]}" if len(key) > 10 else f"{API_KEY_PREFIX}…"


class EmulatorConfig(BaseModel):
    """Everything the emulator can be told at start-up (CLI) or later (``PATCH /_emulator/config``).

    Times are seconds. ``rate_limit`` is tokens per second per key (0 = no limit).
    ``mp4_size`` pads every download to that many bytes with a top-level ``free`` box (None = the
    export's video as rendered; a video already within 8 bytes of it is served unpadded).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    api_keys: list[str] = Field(default_factory=lambda: [DEMO_API_KEY])
    expired_keys: list[str] = Field(default_factory=list)
    prompt_seconds: float = Field(1.5, ge=0)
    export_queued_seconds: float = Field(0.5, ge=0)
    export_processing_seconds: float = Field(1.5, ge=0)
    asset_seconds: float = Field(1.0, ge=0)
    rate_limit: float = Field(20.0, ge=0)
    rate_burst: int = Field(40, ge=1)
    faults: FaultProfile = Field(default_factory=FaultProfile)
    seed: int | None = None
    mp4_size: int | None = Field(None, ge=0)
    download_ttl_seconds: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> EmulatorConfig:
        for key in [*self.api_keys, *self.expired_keys]:
            if not key.startswith(API_KEY_PREFIX):
                raise ValueError(f"API keys must start with {API_KEY_PREFIX!r}")
        return self

    def public(self) -> dict[str, Any]:
        """The config as JSON with every API key masked."""
        data = self.model_dump()
        data["api_keys"] = [mask_key(k) for k in self.api_keys]
        data["expired_keys"] = [mask_key(k) for k in self.expired_keys]
        return data
