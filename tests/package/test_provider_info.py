"""The provider's metadata: valid for Airflow, found through the entry point, usable from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.resources import files

import jsonschema

from airflow_provider_babou import __version__
from airflow_provider_babou.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_provider_info_names_the_distribution_and_its_version() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-babou"
    assert info["versions"] == [__version__]
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "babou"
    assert conn["ui-field-behaviour"]["relabeling"] == {"password": "API Key", "host": "Base URL"}


def test_form_fields_have_no_defaults_and_every_extra_is_in_the_form() -> None:
    (conn,) = get_provider_info()["connection-types"]
    fields = conn["conn-fields"]
    # A default would be pre-filled and saved into every connection, freezing the hook's own rules.
    assert [name for name, f in fields.items() if "default" in f or "default" in f["schema"]] == []
    assert set(fields) == {
        "timeout",
        "retry_deadline",
        "max_backoff",
        "max_retries",
        "rate_limit",
        "dashboard_url_template",
    }
    assert all(f["label"] and f["description"] for f in fields.values())


def test_every_class_the_metadata_names_imports() -> None:
    import importlib

    info = get_provider_info()
    dotted = [c["hook-class-name"] for c in info["connection-types"]] + info["extra-links"]
    for path in dotted:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_entry_point_is_registered() -> None:
    (ep,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_babou")
    ]
    assert ep.load() is get_provider_info


def test_airflow_cli_lists_provider_and_keeps_babou_connection_type(airflow_db: None) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    providers = {p["package_name"]: p for p in json.loads(listed.stdout)}
    assert providers["airflow-provider-babou"]["version"] == __version__

    # An unregistered type would silently become "generic"; ours must stay "babou".
    subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "connections",
            "add",
            "babou_cli_check",
            "--conn-type",
            "babou",
            "--conn-host",
            "http://127.0.0.1:8711/api/v1",
            "--conn-password",
            "sk-bab-cli-check",
        ],
        check=True,
        capture_output=True,
    )
    shown = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "get", "babou_cli_check", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    (conn,) = json.loads(shown.stdout)
    assert conn["conn_type"] == "babou"
