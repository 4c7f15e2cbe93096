"""Property-based check of the emulator against its own OpenAPI schema (schemathesis).

Faults and rate limiting are off in the session emulator; every generated request carries a valid
Bearer key. The emulator must never answer 5xx and every response must match the schema.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess, create_app
from airflow_provider_babou.limits import SUPPORTED_CONTENT_TYPES
from tests.keys import ALICE


@schemathesis.serializer(*(t for t in SUPPORTED_CONTENT_TYPES if not t.startswith("image/")))
def _raw_file(ctx: object, value: object) -> bytes:
    """Upload bodies are raw file bytes (schemathesis knows image types already)."""
    return value if isinstance(value, bytes) else str(value).encode()


# The schema comes from the app object (no server needed at collection time); requests go over
# real HTTP to the session's emulator process.
_OPENAPI = create_app().openapi()
schema = schemathesis.openapi.from_dict(_OPENAPI).include(path_regex=r"^/(api/v1|downloads)/")


@pytest.fixture(scope="module")
def base_url(emulator_process: EmulatorProcess) -> str:
    EmulatorControl(emulator_process.url).reset()
    return emulator_process.url


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {ALICE}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=10,
    )
