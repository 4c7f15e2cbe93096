"""Fixtures for sensor tests: the emulator-backed connection and an object factory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.triggers.babou_objects import Babou


@pytest.fixture
def babou(babou_conn: str, emulator: EmulatorControl) -> Iterator[Babou]:
    """``babou_default`` points at the reset emulator as ALICE; yields a setup client."""
    client = Babou(emulator.api_url)
    yield client
    client.close()
