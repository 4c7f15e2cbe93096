"""A local emulator of the Babou REST API (FastAPI + uvicorn, in-memory, no Airflow import).

Start it with ``babou-emulator`` or ``python -m airflow_provider_babou.emulator``; in tests use
:class:`EmulatorProcess` and :class:`EmulatorControl`. See ``docs/emulator.md``.
"""

from __future__ import annotations

from airflow_provider_babou.emulator.app import create_app
from airflow_provider_babou.emulator.config import DEMO_API_KEY, EmulatorConfig, FaultProfile
from airflow_provider_babou.emulator.control import EmulatorControl
from airflow_provider_babou.emulator.process import EmulatorProcess

__all__ = [
    "DEMO_API_KEY",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorProcess",
    "FaultProfile",
    "create_app",
]
