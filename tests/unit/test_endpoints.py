"""One table of endpoint paths: the emulator serves exactly it, and the waits GET from it."""

from __future__ import annotations

from airflow_provider_babou import endpoints, polling
from airflow_provider_babou.emulator.app import create_app

TABLE = {v for k, v in vars(endpoints).items() if k.isupper() and k != "API_PREFIX"}


def test_the_emulator_serves_every_endpoint_of_the_table_and_no_other() -> None:
    served = {
        route.path.removeprefix(endpoints.API_PREFIX)
        for route in create_app().routes
        if getattr(route, "path", "").startswith(endpoints.API_PREFIX + "/")
    }
    assert served == TABLE


def test_every_wait_target_gets_an_endpoint_of_the_table() -> None:
    targets = polling.WaitTarget.__subclasses__()
    assert targets
    assert all(t.path_template in TABLE for t in targets)
