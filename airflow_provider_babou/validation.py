"""Checks of DAG authors' input against Babou's documented limits, run before any request.

Each failure raises :class:`~airflow_provider_babou.exceptions.BabouInputError` saying what was
wrong and how to fix it, so a bad DAG fails fast and creates nothing half-way.
"""

from __future__ import annotations

import re

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.limits import API_KEY_PREFIX, DESCRIPTION_MAX, NAME_MAX, PROMPT_MAX

__all__ = [
    "API_KEY_PREFIX",
    "DESCRIPTION_MAX",
    "NAME_MAX",
    "PROMPT_MAX",
    "check_api_key",
    "check_description",
    "check_duration",
    "check_id",
    "check_name",
    "check_prompt",
    "check_text",
]

_BAD_ID_CHARS = re.compile(r"[/\s?#]")


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it can be a Babou id: a non-empty string without ``/``, whitespace, ``?`` or ``#``.

    Shapes are not checked further: the docs' own example ids break the documented patterns.
    """
    if not isinstance(value, str) or not value:
        raise BabouInputError(
            f"{kind} id must be a non-empty string, got {value!r}",
            hint=f"pass the {kind} id Babou returned (e.g. from the create task's XCom)",
        )
    if _BAD_ID_CHARS.search(value):
        raise BabouInputError(
            f"{kind} id {value!r} contains '/', whitespace, '?' or '#'",
            hint=f"pass the bare {kind} id, not a URL or a path",
        )
    return value


def check_text(field: str, value: object, *, maximum: int, required: bool = True) -> str | None:
    """Return ``value`` if it is a string of 1..``maximum`` characters (``None`` allowed if not required)."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BabouInputError(f"{field} must be a string, got {type(value).__name__}")
    if required and not value:
        raise BabouInputError(f"{field} is empty", hint=f"{field} must be 1 to {maximum} characters")
    if len(value) > maximum:
        raise BabouInputError(
            f"{field} is {len(value)} characters long",
            hint=f"{field} must be {'1 to' if required else 'at most'} {maximum} characters",
        )
    return value


def check_name(kind: str, value: object) -> str:
    """Check a project or chapter name (1-30 characters)."""
    checked = check_text(f"{kind} name", value, maximum=NAME_MAX)
    assert checked is not None
    return checked


def check_description(value: object) -> str | None:
    """Check an optional project description (at most 1000 characters)."""
    return check_text("project description", value, maximum=DESCRIPTION_MAX, required=False)


def check_prompt(value: object) -> str:
    """Check prompt content (1-5000 characters)."""
    checked = check_text("prompt content", value, maximum=PROMPT_MAX)
    assert checked is not None
    return checked


def check_duration(value: object) -> int | None:
    """Check an optional chapter duration: a positive whole number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BabouInputError(
            f"chapter duration must be a positive integer (whole seconds), got {value!r}",
            hint="omit duration to let Babou decide, or pass e.g. 30",
        )
    return value


def check_api_key(value: object, *, conn_id: str | None = None) -> str:
    """Check that an API key looks like a Babou key; never echoes the key itself.

    :param conn_id: the connection the key came from, named in the error when given.
    """
    if not isinstance(value, str) or not value:
        if conn_id is not None:
            raise BabouInputError(
                f"no Babou API key: connection {conn_id!r} has no password and BABOU_API_KEY is not set",
                hint=f"put the key ({API_KEY_PREFIX}...) in the connection's API Key field",
            )
        raise BabouInputError(
            "no Babou API key configured",
            hint="set the connection's password (API Key) or the BABOU_API_KEY environment variable",
        )
    if not value.startswith(API_KEY_PREFIX):
        owner = f"of connection {conn_id!r} " if conn_id is not None else ""
        raise BabouInputError(
            f"the Babou API key {owner}is malformed: Babou keys start with {API_KEY_PREFIX!r}",
            code="INVALID_API_KEY_FORMAT",
            hint="copy the key again from the Babou dashboard (Settings -> API Keys); "
            f"keys look like {API_KEY_PREFIX}...",
        )
    return value
