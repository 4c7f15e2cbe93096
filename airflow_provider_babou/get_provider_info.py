"""Provider metadata read by Airflow's ``ProvidersManager`` through the entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_babou import __version__

DEFAULT_BASE_URL = "https://api.babou.ai/api/v1"
DEFAULT_DASHBOARD_URL_TEMPLATE = "https://app.babou.ai/projects/{project_id}"
TEST_BUTTON_PORT_HINT = "443: optional, lets Airflow 3.3.2's Test button work"


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-babou",
        "name": "Babou",
        # Plain text: Airflow strips RST characters (` _ < >) and its UI drops the space after an
        # inline URL; the docs link comes from pyproject's [project.urls] Documentation.
        "description": "Babou text-to-video API: projects, chapters, prompts, exports and assets, "
        "with deferrable operators and sensors, and a local emulator of the API.",
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
            {
                "integration-name": "Babou",
                "python-modules": [
                    "airflow_provider_babou.triggers.babou",
                    "airflow_provider_babou.triggers.campaign",
                ],
            }
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
                # No "default" values: the form would save them into every connection and freeze
                # them there; the hook applies its own defaults, named in each description.
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Timeout of one HTTP request to the Babou API (default 30).",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    },
                    "retry_deadline": {
                        "label": "Retry deadline (seconds)",
                        "description": "Longest time spent retrying one request after transient failures "
                        "(429, 5xx, network errors), Retry-After honoured (default 300).",
                        "schema": {"type": ["number", "null"], "minimum": 0},
                    },
                    "max_backoff": {
                        "label": "Max backoff (seconds)",
                        "description": "Longest wait between two retries, Retry-After included (default 30).",
                        "schema": {"type": ["number", "null"], "minimum": 0},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Optional cap on retries of one request; by default only the retry "
                        "deadline bounds them.",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                    },
                    "rate_limit": {
                        "label": "Rate limit (requests per second)",
                        "description": "Requests per second this host sends on the key, shared by every "
                        "task and wait of its processes; lowered on 429s and raised again slowly "
                        "(default 20).",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    },
                    "dashboard_url_template": {
                        "label": "Dashboard URL template",
                        "description": "Link to a project in the Babou dashboard; {project_id} is replaced. "
                        "Empty: Babou's dashboard when the Base URL is Babou's own API, no link otherwise.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                # Port stays visible: Airflow 3.3.2's Test button (in the connection list) sends
                # port 0 for a connection stored without one, which the server takes for another
                # endpoint and refuses ("Bad Request"). A stored port (443) lets the button work;
                # the hook ignores a port the Base URL already gives, and the scheme's default.
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"password": "API Key", "host": "Base URL"},
                    "placeholders": {
                        "password": "sk-bab-...",
                        "host": DEFAULT_BASE_URL,
                        "port": TEST_BUTTON_PORT_HINT,
                    },
                },
            }
        ],
    }
