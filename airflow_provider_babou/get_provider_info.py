"""Provider metadata read by Airflow's ``ProvidersManager`` through the entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_babou import __version__

DEFAULT_BASE_URL = "https://api.babou.ai/api/v1"
DEFAULT_DASHBOARD_URL_TEMPLATE = "https://app.babou.ai/projects/{project_id}"


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-babou",
        "name": "Babou",
        "description": "`Babou <https://babou.ai>`__ text-to-video API: projects, chapters, prompts, "
        "exports and assets, with deferrable sensors and a local emulator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Babou",
                "external-doc-url": "https://docs.babou.ai/api-reference/overview",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Babou", "python-modules": ["airflow_provider_babou.hooks.babou"]}],
        "operators": [
            {"integration-name": "Babou", "python-modules": ["airflow_provider_babou.operators.babou"]}
        ],
        "sensors": [
            {"integration-name": "Babou", "python-modules": ["airflow_provider_babou.sensors.babou"]}
        ],
        "triggers": [
            {"integration-name": "Babou", "python-modules": ["airflow_provider_babou.triggers.babou"]}
        ],
        "extra-links": [
            "airflow_provider_babou.links.BabouVideoLink",
            "airflow_provider_babou.links.BabouProjectLink",
        ],
        "connection-types": [
            {
                "connection-type": "babou",
                "hook-class-name": "airflow_provider_babou.hooks.babou.BabouHook",
                "hook-name": "Babou",
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Timeout for one HTTP request to the Babou API.",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries after a transient failure (429, 5xx, network error).",
                        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
                    },
                    "max_backoff": {
                        "label": "Max backoff (seconds)",
                        "description": "Longest single wait between retries, Retry-After included.",
                        "schema": {"type": ["number", "null"], "default": 60, "minimum": 0},
                    },
                    "dashboard_url_template": {
                        "label": "Dashboard URL template",
                        "description": "Link to a project in the Babou dashboard; {project_id} is replaced.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": DEFAULT_DASHBOARD_URL_TEMPLATE,
                        },
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "password": "sk-bab-...",
                        "host": DEFAULT_BASE_URL,
                    },
                },
            }
        ],
    }
