"""Create a chapter in a project, or reuse the project's chapter of that name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.lineage import BabouLineage
from airflow_provider_babou.links import BabouProjectLink
from airflow_provider_babou.operators._common import BabouBaseOperator
from airflow_provider_babou.operators._steps import ensure_chapter
from airflow_provider_babou.validation import check_duration, check_id, check_name

if TYPE_CHECKING:
    from airflow.sdk import Context

ChapterReuse = Literal["name", "never"]
_CHAPTER_REUSE = ("name", "never")


class BabouCreateChapterOperator(BabouBaseOperator):
    """Create a chapter in a project, or reuse the project's chapter of that name.

    * ``reuse="name"`` (default): if the project already has a chapter with exactly this name (for
      example from an earlier try of this task), it is returned instead of creating a second one.
      Its duration is left as it is.
    * ``reuse="never"``: always create.

    Pushes ``project_id`` and ``chapter_id``; returns the chapter as JSON plus the ids and ``reused``.

    :param project_id: the project to add the chapter to.
    :param name: the chapter's name, 1-30 characters.
    :param duration: optional target duration, a positive whole number of seconds.
    :param reuse: ``"name"`` or ``"never"``, as above.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id", "name")
    operator_extra_links = (BabouProjectLink(),)

    def __init__(
        self,
        *,
        project_id: str,
        name: str,
        duration: int | None = None,
        reuse: ChapterReuse = "name",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if reuse not in _CHAPTER_REUSE:
            raise BabouInputError(f"reuse must be one of {_CHAPTER_REUSE}, got {reuse!r}")
        self.project_id = project_id
        self.name = name
        self.duration = duration
        self.reuse = reuse

    def execute(self, context: Context) -> dict[str, Any]:
        project_id = check_id("project", self.project_id)
        name = check_name("chapter", self.name)
        duration = check_duration(self.duration)
        with self.session() as hook:
            chapter, reused = ensure_chapter(hook, project_id, name=name, duration=duration, reuse=self.reuse)
            verb = "Reusing" if reused else "Created"
            self.log.info("%s chapter %s (%s) in project %s", verb, chapter.id, name, project_id)
            self.push(context, project_id=project_id, chapter_id=chapter.id)
            self.persist_project_link(context, hook, project_id)
            self.babou_lineage = BabouLineage(
                ids={"project_id": project_id, "chapter_id": chapter.id},
                outputs=[self.babou_dataset(f"projects/{project_id}/chapters/{chapter.id}")],
            )
        return {
            **chapter.model_dump(mode="json"),
            "project_id": project_id,
            "chapter_id": chapter.id,
            "reused": reused,
        }
