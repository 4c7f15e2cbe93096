"""Checks of DAG authors' input against Babou's documented limits, run before any request.

Each failure raises :class:`~airflow_provider_babou.exceptions.BabouInputError` saying what was
wrong and how to fix it, so a bad DAG fails fast and creates nothing half-way.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.limits import API_KEY_PREFIX, DESCRIPTION_MAX, NAME_MAX, PROMPT_MAX

__all__ = [
    "API_KEY_PREFIX",
    "DESCRIPTION_MAX",
    "NAME_MAX",
    "PROMPT_MAX",
    "check_api_key",
    "check_chapter_dicts",
    "check_description",
    "check_duration",
    "check_id",
    "check_name",
    "check_page",
    "check_positive",
    "check_prompt",
    "check_settings",
    "check_text",
]

# Path separators, URL syntax, escapes and every control or space character (NUL, CR, LF...).
_BAD_ID_CHARS = re.compile(r"[/\\?#%\s\x00-\x1f\x7f]")
# Control characters, but for tab and line breaks (a prompt or description may span lines).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ID_MAX = 200


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it can be a Babou id: a non-empty string without ``/``, whitespace, ``?`` or ``#``.

    Shapes are not checked further: the docs' own example ids break the documented patterns.
    """
    if not isinstance(value, str) or not value:
        raise BabouInputError(
            f"{kind} id must be a non-empty string, got {value!r}",
            hint=f"pass the {kind} id Babou returned (e.g. from the create task's XCom)",
        )
    if _BAD_ID_CHARS.search(value) or value in (".", "..") or len(value) > ID_MAX or not _encodes(value):
        raise BabouInputError(
            f"{kind} id {value[:ID_MAX]!r} is not a Babou id: ids are at most {ID_MAX} characters, "
            "not '.' or '..', without '/', '\\', '?', '#', '%', spaces or control characters",
            hint=f"pass the bare {kind} id Babou returned, not a URL, a path or an escaped form",
        )
    return value


def _encodes(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (a lone surrogate cannot be sent as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(field: str, value: object, *, maximum: int, required: bool = True) -> str | None:
    """Return ``value`` if it is a string of 1..``maximum`` characters (``None`` allowed if not required)."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BabouInputError(f"{field} must be a string, got {type(value).__name__}")
    if not _encodes(value):
        raise BabouInputError(f"{field} is not valid Unicode text (it holds a lone surrogate)")
    control = _CONTROL.search(value) or (maximum <= NAME_MAX and re.search(r"[\r\n\t]", value))
    if control:
        raise BabouInputError(
            f"{field} contains the control character {control.group()!r}",
            hint="remove it (names are one line; texts may only hold tabs and line breaks)",
        )
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


def check_settings(value: object) -> dict[str, Any] | None:
    """Check optional project settings: a JSON object with finite numbers (``None`` allowed)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BabouInputError(f"settings must be a dict (a JSON object), got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BabouInputError(
            f"settings must be plain JSON (strings, finite numbers, lists, dicts): {exc}"
        ) from None
    return value


def check_page(limit: object, offset: object) -> None:
    """Check list paging: ``limit`` a whole number from 1 to 100, ``offset`` one >= 0 (no bools)."""
    for label, value, low, high in (("limit", limit, 1, 100), ("offset", offset, 0, math.inf)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BabouInputError(f"{label} must be a whole number from {low} to {high}, got {value!r}")


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
    if value == "***":  # Airflow 3.1's Test button posts the masked password it lists, not the key
        raise BabouInputError(
            "Airflow sent the masked key '***' instead of the key (Airflow 3.1's Test button does this)",
            hint="test from the command line: airflow connections test <connection id>",
        )
    owner = f"of connection {conn_id!r} " if conn_id is not None else ""
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise BabouInputError(
            f"the Babou API key {owner}contains spaces, line breaks or control characters "
            "(often a paste error)",
            hint="paste the key again as one line, with nothing before or after it",
        )
    if not value.startswith(API_KEY_PREFIX):
        raise BabouInputError(
            f"the Babou API key {owner}is malformed: Babou keys start with {API_KEY_PREFIX!r}",
            code="INVALID_API_KEY_FORMAT",
            hint="copy the key again from the Babou dashboard (Settings -> API Keys); "
            f"keys look like {API_KEY_PREFIX}...",
        )
    return value


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as float if it is a positive finite number (not a bool, NaN or infinity)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type,operator]
        raise BabouInputError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


#: The keys a chapter given by a DAG author may have.
CHAPTER_KEYS = frozenset({"name", "prompt", "duration"})


def check_chapter_dicts(value: object) -> list[dict[str, Any]]:
    """Return ``value`` if it is a non-empty list of chapter dicts with no keys but
    :data:`CHAPTER_KEYS` (their values are checked by the caller, once filled in)."""
    if not isinstance(value, list) or not value:
        raise BabouInputError(
            f"chapters must be a non-empty list of dicts, got {type(value).__name__}",
            hint='e.g. [{"name": "Intro", "prompt": "..."}]; a Jinja template needs '
            "render_template_as_native_obj=True on the DAG",
        )
    for index, spec in enumerate(value):
        if not isinstance(spec, dict):
            raise BabouInputError(f"chapters[{index}] must be a dict, got {type(spec).__name__}")
        unknown = set(spec) - CHAPTER_KEYS
        if unknown:
            raise BabouInputError(
                f"chapters[{index}] has unknown keys {sorted(unknown)}", hint="use name, prompt and duration"
            )
    return value
