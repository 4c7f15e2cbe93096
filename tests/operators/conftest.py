"""Fixtures and helpers for operator tests: a minimal task context, setup helpers, trigger driving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_babou._compat import TaskDeferred
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.hooks.babou import BabouHook
from tests.helpers import FAST_POLL, key_stats

#: The wait arguments of operators under test: poll fast, give up well within a test's patience,
#: and let a trigger fire at once (no ``min_deferral`` hold: there is no scheduler to race).
FAST: dict[str, Any] = {"poll_interval": 0.05, "timeout": 30, "min_deferral": 0}

#: A 1x1 PNG, the smallest image Babou accepts as an asset.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82"
)


NOT_GIVEN = object()


@dataclass
class FakeTI:
    """The parts of a running task instance the operators touch."""

    dag_id: str = "babou_dag"
    task_id: str = "babou_task"
    run_id: str = "manual__2026-01-01T00:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)
    stats_tags: dict[str, str] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: Any = NOT_GIVEN) -> Any:
        assert task_ids == self.task_id
        if map_indexes is NOT_GIVEN:  # Airflow 3.1: a mapped task's every map index, as a list
            return [self.xcoms.get(key)] if self.map_index >= 0 else self.xcoms.get(key)
        assert map_indexes == self.map_index, (map_indexes, self.map_index)  # this one's XComs only
        return self.xcoms.get(key)


class FakeTaskStateStore(dict[str, Any]):
    """``context["task_state_store"]`` as ResumableJobMixin uses it (kept across tries, like Airflow's)."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def make_context(ti: FakeTI | None = None, **extra: Any) -> Any:
    """Build the minimal context ``execute`` needs (typed ``Any``: it stands in for ``Context``)."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"ti": ti or FakeTI(), "outlet_events": OutletEventAccessors(), **extra}


def drive(trigger: Any) -> dict[str, Any]:
    """Run a trigger to its one event, after a serde-style round trip of its kwargs."""
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith(type(trigger).__name__)
    rebuilt = type(trigger)(**kwargs)

    async def first() -> dict[str, Any]:
        async for event in rebuilt.run():
            return dict(event.payload)
        raise AssertionError("the trigger yielded no event")

    return asyncio.run(first())


def deferred(op: Any, context: Any, method: str = "execute", *args: Any, **kwargs: Any) -> Any:
    """Call ``op.<method>`` expecting a deferral without a framework timeout; return the ``TaskDeferred``."""
    with pytest.raises(TaskDeferred) as info:
        getattr(op, method)(context, *args, **kwargs)
    assert info.value.timeout is None
    return info.value


def resume(op: Any, context: Any, deferral: Any, event: Any, *, keep_kwargs: bool = True) -> Any:
    """Resume ``op`` after ``deferral``'s trigger fired ``event``, as Airflow's task runner does.

    ``keep_kwargs=False`` resumes as ``dag.test()`` does: with the event only.
    """
    kwargs = (deferral.kwargs or {}) if keep_kwargs else {}
    return op.resume_execution(deferral.method_name, {**kwargs, "event": event}, context)


def bad_destinations(tmp_path: Path) -> dict[str, tuple[Any, str]]:
    """Destinations no video can be written to, each with the words its error must contain.

    Used by the download and one-task video operators' tests (defect 5: checked before any remote work).
    """
    regular = tmp_path / "regular-file"
    regular.write_bytes(b"not a directory")
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"old video")
    return {
        "none": (None, "empty"),
        "blank": ("  ", "empty"),
        "directory": (str(tmp_path), "directory"),
        "name-300-chars": (str(tmp_path / ("v" * 296 + ".mp4")), "too long"),
        "under-a-file": (str(regular / "video.mp4"), "not a directory"),
        "deep-under-a-file": (str(regular / "a" / "b" / "video.mp4"), "not a directory"),
        "existing-file": (str(existing), "already exists"),
        "existing-object-storage-path": (ObjectStoragePath(f"file://{existing}"), "already exists"),
    }


BAD_DESTINATIONS = [
    "none",
    "blank",
    "directory",
    "name-300-chars",
    "under-a-file",
    "deep-under-a-file",
    "existing-file",
    "existing-object-storage-path",
]


@dataclass
class Env:
    """The reset emulator and a hook on ALICE's account for arranging and checking state."""

    emulator: EmulatorControl
    hook: BabouHook

    def counts(self) -> dict[str, Any]:
        """ALICE's counters (creations, ``requests``, ``requests_by_route``)."""
        return key_stats(self.emulator)

    def posts(self) -> int:
        """How many POSTs reached the API as ALICE."""
        routes = self.counts().get("requests_by_route", {})
        return sum(n for route, n in routes.items() if route.startswith("POST "))

    def project_with_prompt(
        self, content: str = "A sunrise over the sea", *, wait: bool = True
    ) -> tuple[str, str]:
        """Create a project with one chapter and one prompt; return ``(project_id, chapter_id)``."""
        project = self.hook.create_project(name="setup")
        chapter = self.hook.create_chapter(project.id, name="one")
        receipt = self.hook.submit_prompt(project.id, chapter.id, content=content)
        if wait:
            self.hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=FAST_POLL, timeout=20)
        return project.id, chapter.id

    def completed_export(self) -> str:
        """A project with one completed prompt and one completed export; return its id."""
        project_id, _ = self.project_with_prompt()
        self.hook.start_export(project_id)
        self.hook.wait_for_export(project_id, poll=FAST_POLL, timeout=20)
        return project_id


@pytest.fixture
def env(babou_conn: str, emulator: EmulatorControl) -> Iterator[Env]:
    """Point ``babou_default`` at the reset emulator as ALICE; yield the setup helpers."""
    hook = BabouHook(babou_conn)
    yield Env(emulator, hook)
    hook.close()
