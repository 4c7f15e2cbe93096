"""A campaign's input: rows from a list, a CSV or a JSON Lines file, and the video each row asks for.

Everything here runs before any request: every row is read, its key checked (present, non-empty,
unique) and its video rendered from the template (name, description, chapters, destination) and
checked against Babou's limits. A bad row is reported by its key, with what is wrong and how to fix
it; up to :data:`SHOWN_ERRORS` rows are named in one error, so a file is fixed in one go.
"""

from __future__ import annotations

import csv
import io
import json
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.validation import check_description, check_duration, check_name, check_prompt

#: Rows named in one error at most (the count of the others is given).
SHOWN_ERRORS = 20
#: Characters a value may not bring into a destination: it names one file, never a folder of its own.
_PATH_UNSAFE = frozenset("/\\\x00")


@dataclass(frozen=True)
class ChapterPlan:
    """One chapter of a row's video, rendered."""

    name: str
    prompt: str
    duration: int | None


@dataclass(frozen=True)
class RowPlan:
    """The video one row asks for, rendered and checked."""

    key: str
    name: str
    description: str | None
    chapters: tuple[ChapterPlan, ...]
    destination: str


@dataclass(frozen=True)
class Template:
    """The video template: ``{column}`` placeholders are filled from each row.

    :param name: the project name (1-30 characters once filled).
    :param description: the project description, or ``None``.
    :param chapters: ``[{"name", "prompt", "duration" (optional, a number)}]``, in order.
    :param destination: the MP4's path or URL; values filled in may not contain ``/`` or ``\\``.
    """

    name: str
    description: str | None
    chapters: Sequence[dict[str, Any]]
    destination: str

    def fields(self) -> list[tuple[str, Any]]:
        """Every template text as ``(where, text)``, for checking placeholders once."""
        texts: list[tuple[str, Any]] = [("project_name", self.name), ("destination", self.destination)]
        if self.description is not None:
            texts.append(("description", self.description))
        for index, chapter in enumerate(self.chapters):
            texts += [
                (f"chapters[{index}].name", chapter.get("name")),
                (f"chapters[{index}].prompt", chapter.get("prompt")),
            ]
        return texts


def placeholders(where: str, text: Any) -> list[str]:
    """The column names ``text`` refers to as ``{column}``; plain names only (no ``{a.b}``, ``{a!r}``)."""
    if not isinstance(text, str):
        raise BabouInputError(f"{where} must be a string template, got {type(text).__name__}")
    names = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise BabouInputError(
            f"{where} is not a valid template: {exc}", hint="placeholders are {column}; write no other braces"
        ) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise BabouInputError(
                f"{where} has the placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}: only plain column names are filled in",
                hint="write {column}, e.g. {first_name}",
            )
        names.append(name)
    return names


def fill(text: str, row: dict[str, Any], *, path: bool = False) -> str:
    """``text`` with each ``{column}`` replaced by the row's value (checked by :func:`placeholders`)."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        if name not in row:
            raise ValueError(f"has no column {name!r} (the template uses it)")
        value = "" if row[name] is None else str(row[name])
        if path and (_PATH_UNSAFE & set(value) or value in ("", ".", "..")):
            raise ValueError(
                f"column {name!r} is {value!r}, which cannot name a file in the destination "
                "(empty, '.', '..' or with '/', '\\\\')"
            )
        out.append(value)
    return "".join(out)


def load_rows(source: Any, conn_id: str | None = None) -> list[dict[str, Any]]:
    """Read the rows: a list of dicts as is, else a ``.csv``, ``.jsonl``/``.ndjson`` or ``.json`` file
    at a local path or an object-storage URL (``s3://...``, through ``conn_id``) or
    :class:`ObjectStoragePath`."""
    if isinstance(source, list):
        rows = source
        where = "rows"
    else:
        if not isinstance(source, (str, os.PathLike)) and not hasattr(source, "read_text"):
            raise BabouInputError(
                f"rows must be a list of dicts, or a path or URL of a CSV or JSON Lines file; got "
                f"{type(source).__name__}"
            )
        where = str(source)
        rows = _parse(where, _read(source, conn_id))
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(k, str) for k in row):
            raise BabouInputError(
                f"row {index + 1} of {where} is not an object with column names: {str(row)[:80]!r}"
            )
    return rows


def _read(source: Any, conn_id: str | None) -> str:
    from airflow_provider_babou.operators._steps import as_location  # the one URL -> storage rule

    location = as_location(source, conn_id)
    try:
        if hasattr(location, "read_text"):
            return str(location.read_text(encoding="utf-8"))
        with open(location, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BabouInputError(
            f"cannot read the rows at {source}: {exc}", hint="give a readable UTF-8 CSV or JSON Lines file"
        ) from None


def _parse(where: str, text: str) -> list[Any]:
    suffix = where.lower().rsplit(".", 1)[-1]
    try:
        if suffix == "csv":
            return list(csv.DictReader(io.StringIO(text, newline="")))
        if suffix in ("jsonl", "ndjson"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if suffix == "json":
            data = json.loads(text)
            if isinstance(data, list):
                return data
            raise ValueError("a .json file must hold a list of objects")
    except (ValueError, csv.Error) as exc:
        raise BabouInputError(f"cannot parse the rows in {where}: {exc}") from None
    raise BabouInputError(
        f"cannot tell the format of {where}", hint="name the file .csv, .jsonl (or .ndjson) or .json"
    )


def keys_of(rows: Sequence[dict[str, Any]], key: str) -> list[str]:
    """Each row's key: present, a non-empty string or number, unique; errors name the rows."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    keys = []
    for index, row in enumerate(rows, start=1):
        value = row.get(key)
        text = "" if value is None or isinstance(value, bool) else str(value).strip()
        if not isinstance(value, (str, int)) or not text or text != str(value) or not text.isprintable():
            problems.append(
                f"row {index}: key {key!r} is {value!r} "
                "(missing, empty, or with surrounding spaces or control characters)"
            )
        elif text in seen:
            problems.append(f"row {index}: key {key}={text!r} repeats row {seen[text]}")
        else:
            seen[text] = index
        keys.append(text)
    _raise_for(problems, len(rows), f"every row needs its own non-empty {key!r}: it names the row's video")
    return keys


def plan_rows(rows: Sequence[dict[str, Any]], keys: Sequence[str], template: Template) -> list[RowPlan]:
    """Render and check every row's video; one error names every bad row (up to 20)."""
    for where, text in template.fields():
        placeholders(where, text)
    durations = [check_duration(c.get("duration")) for c in template.chapters]
    plans: list[RowPlan] = []
    problems: list[str] = []
    destinations: dict[str, int] = {}
    for index, (row, key) in enumerate(zip(rows, keys, strict=True), start=1):
        try:
            chapters = tuple(
                ChapterPlan(
                    _checked(check_name, "chapter", c["name"], row),
                    _checked(check_prompt, None, c["prompt"], row),
                    d,
                )
                for c, d in zip(template.chapters, durations, strict=True)
            )
            names = [c.name for c in chapters]
            if len(set(names)) != len(names):
                raise ValueError(f"has repeated chapter names {names}: chapters are found again by name")
            description = None
            if template.description is not None:
                description = check_description(fill(template.description, row))
            plan = RowPlan(
                key=key,
                name=_checked(check_name, "project", template.name, row),
                description=description,
                chapters=chapters,
                destination=fill(template.destination, row, path=True),
            )
        except (ValueError, BabouInputError) as exc:  # BabouInputError is a ValueError too
            hint = getattr(exc, "hint", None)
            problems.append(
                f"row {index} ({key!r}): {getattr(exc, 'message', exc)}{f' ({hint})' if hint else ''}"
            )
            continue
        if plan.destination in destinations:
            problems.append(
                f"row {index} ({key!r}): destination {plan.destination} "
                f"is also row {destinations[plan.destination]}'s"
            )
        destinations.setdefault(plan.destination, index)
        plans.append(plan)
    _raise_for(problems, len(rows), "fix those rows or the template; nothing was sent to Babou")
    return plans


def _checked(check: Any, kind: str | None, text: str, row: dict[str, Any]) -> Any:
    filled = fill(text, row)
    return check(kind, filled) if kind else check(filled)


def _raise_for(problems: list[str], total: int, hint: str) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:SHOWN_ERRORS])
    more = f"; and {len(problems) - SHOWN_ERRORS} more" if len(problems) > SHOWN_ERRORS else ""
    raise BabouInputError(f"{len(problems)} of {total} rows are invalid: {shown}{more}", hint=hint)


def chunk(items: Sequence[Any], index: int | None, size: int | None) -> list[Any]:
    """Rows ``index * size`` up to the next chunk (all of them without a chunk)."""
    if index is None:
        return list(items)
    assert size is not None
    return list(items[index * size : (index + 1) * size])


def chunk_count(total: int, size: int) -> int:
    """How many chunks of ``size`` rows hold ``total`` rows."""
    return max(1, -(-total // size))
