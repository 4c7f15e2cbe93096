"""Create a Babou project, or reuse the one an earlier try of this task created."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.lineage import BabouLineage
from airflow_provider_babou.links import BabouProjectLink
from airflow_provider_babou.operators._common import BabouBaseOperator
from airflow_provider_babou.operators._steps import (
    description_with_marker,
    ensure_project,
    run_marker,
    run_since,
)
from airflow_provider_babou.validation import check_description, check_name, check_settings

if TYPE_CHECKING:
    from airflow.sdk import Context

ProjectReuse = Literal["run", "name", "never"]
_PROJECT_REUSE = ("run", "name", "never")


class BabouCreateProjectOperator(BabouBaseOperator):
    """Create a Babou project, or reuse the one an earlier try of this task created.

    Project creation is not idempotent in Babou, so ``reuse`` decides what a retry does:

    * ``"run"`` (default): a marker derived from dag id, task id, run id and map index (e.g.
      ``[airflow:ab12cd34ef56]``) is appended to the description, and before creating, the account's
      projects are searched for it. A retried or cleared task instance gets the same project back;
      another run or map index gets its own. The description plus marker must fit in 1000 characters.
    * ``"name"``: reuse the newest project with exactly this name, else create one. Runs share it.
    * ``"never"``: always create; a retry after an ambiguous failure may leave a duplicate.

    When Babou's answer to a create is lost (the hook raises ``BabouOutcomeUnknownError`` rather
    than sending the POST again), the task's retry is safe with ``"run"``: it finds the project
    if it was created. The search pages through every project of the account.

    Pushes ``project_id`` to XCom and returns the project as JSON plus ``project_id`` and ``reused``.

    :param name: the project's name, 1-30 characters.
    :param description: an optional description, at most 1000 characters (with ``reuse="run"``, less
        the 23 characters of the marker).
    :param settings: optional project settings, passed to Babou as they are.
    :param reuse: ``"run"``, ``"name"`` or ``"never"``, as above.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("name", "description", "settings")
    operator_extra_links = (BabouProjectLink(),)

    def __init__(
        self,
        *,
        name: str,
        description: str | None = None,
        settings: dict[str, Any] | None = None,
        reuse: ProjectReuse = "run",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if reuse not in _PROJECT_REUSE:
            raise BabouInputError(f"reuse must be one of {_PROJECT_REUSE}, got {reuse!r}")
        self.name = name
        self.description = description
        self.settings = settings
        self.reuse = reuse

    def execute(self, context: Context) -> dict[str, Any]:
        name = check_name("project", self.name)
        description = check_description(self.description)
        settings = check_settings(self.settings)
        marker = run_marker(context) if self.reuse == "run" else None
        if marker:
            description = description_with_marker(description, marker)
        with self.session() as hook:
            project, reused = ensure_project(
                hook,
                name=name,
                description=description,
                settings=settings,
                reuse=self.reuse,
                marker=marker,
                since=run_since(context),
            )
            self.log.info("%s Babou project %s (%s)", "Reusing" if reused else "Created", project.id, name)
            self.push(context, project_id=project.id)
            self.persist_project_link(context, hook, project.id)
            self.babou_lineage = BabouLineage(
                ids={"project_id": project.id}, outputs=[self.babou_dataset(f"projects/{project.id}")]
            )
        return {**project.model_dump(mode="json"), "project_id": project.id, "reused": reused}
