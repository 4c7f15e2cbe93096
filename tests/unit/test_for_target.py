"""One way to build a trigger from a wait target, for the documented waits and for a new one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from airflow_provider_babou import endpoints, polling
from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.models import Project
from airflow_provider_babou.triggers.babou import BabouExportTrigger, BabouPollTrigger

POLICY = polling.PollPolicy(3.0, 1.5, 20.0)


@dataclass(frozen=True)
class ProjectTarget(polling.WaitTarget):
    """A wait this provider does not ship: the project until it has no active export."""

    project_id: str
    model: ClassVar[type[Project]] = Project
    path_template: ClassVar[str] = endpoints.PROJECT
    describe_template: ClassVar[str] = "project {project_id}"

    def judge(self, obj: Any) -> polling.WaitState:
        return polling.WaitState(obj.active_export_id is None, True, "idle")


def test_a_documented_wait_gets_its_own_trigger_class() -> None:
    trigger = BabouPollTrigger.for_target(
        polling.ExportTarget("prj_1"), "babou_x", end_time=1e10, policy=POLICY, max_failures=4
    )
    assert type(trigger) is BabouExportTrigger
    path, kwargs = trigger.serialize()
    assert path.endswith("BabouExportTrigger")
    assert kwargs["project_id"] == "prj_1"
    assert (kwargs["poll_interval"], kwargs["poll_backoff"], kwargs["max_poll_interval"]) == (3.0, 1.5, 20.0)
    assert kwargs["max_consecutive_failures"] == 4
    assert "target" not in kwargs
    assert "not_before" not in kwargs


def test_a_new_wait_needs_no_trigger_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "ProjectTarget", ProjectTarget, raising=False)
    monkeypatch.setattr(ProjectTarget, "__module__", "airflow_provider_babou.polling")
    trigger = BabouPollTrigger.for_target(ProjectTarget("prj_1"), "babou_x", end_time=1e10, policy=POLICY)
    path, kwargs = trigger.serialize()
    assert path.endswith(".BabouPollTrigger")
    assert kwargs["target"] == "airflow_provider_babou.polling.ProjectTarget"
    again = BabouPollTrigger(**kwargs)  # as the triggerer rebuilds it
    assert again.target == ProjectTarget("prj_1")
    assert again.target.path == "/projects/prj_1"


@pytest.mark.parametrize(
    "path", ["os.system", "tests.unit.test_for_target.ProjectTarget", "airflow_provider_babou.models.Project"]
)
def test_a_target_path_must_name_a_wait_target_of_the_provider(path: str) -> None:
    with pytest.raises(BabouInputError, match="WaitTarget"):
        BabouPollTrigger("babou_x", 1e10, target=path, project_id="prj_1")
