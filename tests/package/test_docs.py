"""The docs stay true to the code: every error, parameter, extra, flag and endpoint is documented,
documented defaults and templated fields match the signatures, and every relative link resolves.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.triggers.base import BaseTrigger

from airflow_provider_babou import exceptions
from airflow_provider_babou.emulator import routes_api, routes_control
from airflow_provider_babou.emulator.cli import build_parser
from airflow_provider_babou.exceptions import BabouError
from airflow_provider_babou.get_provider_info import get_provider_info
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.operators import babou as operators
from airflow_provider_babou.sensors import babou as sensors
from airflow_provider_babou.triggers import babou as triggers

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$", re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _text(name: str) -> str:
    return _FENCE.sub("", (DOCS / name).read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _sections(text: str) -> list[tuple[int, str, str]]:
    """``(level, heading, body up to the next heading of the same or a higher level)``."""
    marks = list(_HEADING.finditer(text))
    found = []
    for i, mark in enumerate(marks):
        level = len(mark.group(1))
        end = next((m.start() for m in marks[i + 1 :] if len(m.group(1)) <= level), len(text))
        found.append((level, mark.group(2), text[mark.end() : end]))
    return found


def _section(text: str, name: str) -> str:
    """The section whose heading is exactly `` `name` ``."""
    bodies = [body for _, heading, body in _sections(text) if heading == f"`{name}`"]
    assert len(bodies) == 1, f"expected one heading `{name}`, found {len(bodies)}"
    return bodies[0]


def _intro(text: str, name: str) -> str:
    """The part of the level-2 section holding `` `name` `` that comes before its first sub-heading."""
    for level, _, body in _sections(text):
        if level == 2 and f"### `{name}`" in body:
            return body.split("\n### ", 1)[0]
    raise AssertionError(f"`{name}` is in no level-2 section")


def _rows(text: str) -> dict[str, dict[str, str]]:
    """Table rows whose first cell is a `` `name` ``, as {name: {column header: cell}}."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in _CELL_SPLIT.split(line.strip().strip("|"))]
        if not header:
            header = [c.lower() for c in cells]
        elif (match := re.fullmatch(r"`(\w+)`", cells[0])) and len(cells) == len(header):
            rows[match.group(1)] = dict(zip(header, cells, strict=True))
    return rows


def _keywords(cls: type) -> dict[str, Any]:
    """The keyword parameters of ``cls.__init__`` itself, with their defaults."""
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    params = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    return {p.name: p.default for p in params if p.name != "self" and p.kind not in skip}


def _parameters(cls: type) -> dict[str, Any]:
    """Every keyword parameter of ``cls`` and its Babou bases, with its default (the nearest class's).

    Airflow's own base classes are left out (``task_id``, ``retries``, a sensor's ``mode``...).
    """
    airflow = {k for base in (BaseOperator, BaseSensorOperator, BaseTrigger) for k in base.__mro__}
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass not in airflow and "__init__" in vars(klass):
            for name, default in _keywords(klass).items():
                found.setdefault(name, default)
    return found


def _public(module: Any, base: type) -> list[type]:
    classes = [getattr(module, name) for name in module.__all__]
    return [c for c in classes if isinstance(c, type) and issubclass(c, base)]


REFERENCE = [
    *_public(operators, BaseOperator),
    *_public(sensors, BaseOperator),
    *_public(triggers, BaseTrigger),
]


def test_every_public_error_has_a_troubleshooting_section() -> None:
    headings = {heading for _, heading, _ in _sections(_text("troubleshooting.md"))}
    classes = [
        c for c in vars(exceptions).values() if isinstance(c, type) and issubclass(c, BabouError)
    ] + _public(triggers, BabouError)
    assert len(classes) >= 14
    missing = [c.__name__ for c in classes if f"`{c.__name__}`" not in headings]
    assert not missing, f"troubleshooting.md has no section for {missing}"


def test_every_error_code_the_emulator_answers_is_in_troubleshooting() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "airflow_provider_babou/emulator").glob("*.py"))
    answers = r'(?:ApiError\(\s*\d{3},\s*|"code":\s*|\d{3}:\s*\(\s*|,\s*\(\s*)"([A-Z]{3,}(?:_[A-Z]+)*)"'
    codes = set(re.findall(answers, source))
    assert {"UNAUTHORIZED", "RATE_LIMITED", "URL_EXPIRED"} <= codes
    text = _text("troubleshooting.md")
    assert not [c for c in sorted(codes) if f"`{c}`" not in text]


@pytest.mark.parametrize("cls", REFERENCE, ids=lambda c: c.__name__)
def test_operators_md_documents_every_parameter_as_the_code_has_it(cls: type) -> None:
    text = _text("operators.md")
    own, shared = _section(text, cls.__name__), _intro(text, cls.__name__)
    rows = {**_rows(shared), **_rows(own)}
    templated = set(getattr(cls, "template_fields", ()))
    for name, default in _parameters(cls).items():
        assert name in rows, f"{cls.__name__}: parameter `{name}` has no row in operators.md"
        row = rows[name]
        if "templated" in row:
            assert row["templated"] == ("yes" if name in templated else "no"), (cls.__name__, name)
        cell = row.get("default", "")
        if cell == "required":
            assert default is inspect.Parameter.empty, f"{cls.__name__}.{name} has a default"
        elif cell:
            try:
                documented = ast.literal_eval(cell.strip("`"))
            except (ValueError, SyntaxError):
                continue  # prose, e.g. "[operators] default_deferrable"
            assert documented == default, f"{cls.__name__}.{name}: docs say {cell}, code {default!r}"


def test_connection_md_documents_every_extra_the_hook_reads() -> None:
    read: set[str] = set()
    for path in [
        REPO / "airflow_provider_babou/connection.py",
        *(REPO / "airflow_provider_babou/hooks").glob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            # extras.get("NAME") and _number(extras, "NAME", ...): the first string argument.
            if ast.unparse(node.func) in ("extras.get", "_number"):
                read.update([a.value for a in node.args if isinstance(a, ast.Constant)][:1])
    assert {"timeout", "rate_limit", "dashboard_url_template"} <= read
    (conn_type,) = get_provider_info()["connection-types"]
    extras = next(body for level, h, body in _sections(_text("connection.md")) if h == "Extras")
    documented = set(_rows(extras))
    assert read | set(conn_type["conn-fields"]) <= documented


def test_connection_md_examples_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DOCS / "connection.md").read_text()
    examples = re.findall(r"^export (AIRFLOW_CONN_\w+)='([^']+)'", text, re.M)
    assert len(examples) >= 4
    monkeypatch.delenv("BABOU_API_KEY", raising=False)
    for var, value in examples:
        monkeypatch.setenv("AIRFLOW_CONN_BABOU_DOC_EXAMPLE", value)
        config = BabouHook("babou_doc_example").config
        assert config.base_url in text, f"{var}={value} resolves to {config.base_url}, not in the page"


def test_emulator_md_documents_every_flag_and_endpoint() -> None:
    text = _text("emulator.md")
    flags = [o for a in build_parser()._actions for o in a.option_strings if o.startswith("--")]
    assert not [f for f in flags if f != "--help" and f"`{f}`" not in text]
    for route in routes_api.router.routes:
        assert f"`{route.path.removeprefix('/api/v1')}`" in text, route.path  # type: ignore[attr-defined]
    for route in routes_control.router.routes:
        assert f"{route.path}`" in text, route.path  # type: ignore[attr-defined]


def test_every_relative_link_resolves() -> None:
    anchors = {p: {_slug(h) for _, h, _ in _sections(_FENCE.sub("", p.read_text()))} for p in PAGES}
    broken = []
    for page in PAGES:
        for target in _LINK.findall(_FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = Path(os.path.normpath(page.parent / path)) if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors.get(resolved, set()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
