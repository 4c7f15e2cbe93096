"""Fixtures for operator tests: the emulator-backed connection, a setup hook and a minimal task context."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import PollPolicy
from tests.keys import ALICE

#: Setup waits poll fast: the emulator builds a prompt in 0.3 s.
FAST_POLL = PollPolicy(interval=0.05, backoff=1.0, max_interval=0.05)


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

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        assert task_ids == self.task_id
        return self.xcoms.get(key)


class FakeTaskStateStore(dict[str, Any]):
    """``context["task_state_store"]`` as ResumableJobMixin uses it (kept across tries, like Airflow's)."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def make_context(ti: FakeTI | None = None, **extra: Any) -> Any:
    """Build the minimal context ``execute`` needs (typed ``Any``: it stands in for ``Context``)."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"ti": ti or FakeTI(), "outlet_events": OutletEventAccessors(), **extra}


@dataclass
class Env:
    """The reset emulator and a hook on ALICE's account for arranging and checking state."""

    emulator: EmulatorControl
    hook: BabouHook

    def counts(self) -> dict[str, Any]:
        """ALICE's counters (creations, ``requests``, ``requests_by_route``)."""
        counts: dict[str, Any] = self.emulator.stats(ALICE)["key"]
        return counts

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


@pytest.fixture
def env(babou_conn: str, emulator: EmulatorControl) -> Iterator[Env]:
    """Point ``babou_default`` at the reset emulator as ALICE; yield the setup helpers."""
    hook = BabouHook(babou_conn)
    yield Env(emulator, hook)
    hook.close()
