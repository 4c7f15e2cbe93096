"""The Babou OpenLineage facets; imported only when OpenLineage asks (see :mod:`.lineage`)."""

from __future__ import annotations

from attrs import define, field
from openlineage.client.generated.base import JobFacet, RunFacet

from airflow_provider_babou import __version__

#: The facets' ``_producer``: this provider at this version (not the OpenLineage provider).
PRODUCER = f"https://github.com/airflow-provider-babou/airflow-provider-babou/tree/v{__version__}"
#: Where the facets' JSON schema (``lineage_facets.json``, shipped in the package) is published.
SCHEMA_URL = (
    "https://raw.githubusercontent.com/airflow-provider-babou/airflow-provider-babou/"
    f"v{__version__}/airflow_provider_babou/lineage_facets.json"
)


@define
class BabouRunFacet(RunFacet):
    """The Babou ids of a task's run, named as the task pushes them to XCom.

    :param project_id: the project the task worked on.
    :param chapter_id: the chapter (chapter and prompt operators).
    :param prompt_id: the prompt submitted or attached to.
    :param export_id: the export, when Babou reported its id.
    :param asset_id: the uploaded asset.
    :param chapter_ids: chapter name -> id (the one-task video operator).
    :param prompt_ids: chapter name -> prompt id (the one-task video operator).
    """

    project_id: str | None = field(default=None)
    chapter_id: str | None = field(default=None)
    prompt_id: str | None = field(default=None)
    export_id: str | None = field(default=None)
    asset_id: str | None = field(default=None)
    chapter_ids: dict[str, str] | None = field(default=None)
    prompt_ids: dict[str, str] | None = field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL + "#/$defs/BabouRunFacet"


@define
class BabouPromptsJobFacet(JobFacet):
    """The prompt text each chapter was given: ``[{"chapter_id", "chapter_name" (if known), "content"}]``."""

    prompts: list[dict[str, str]] = field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL + "#/$defs/BabouPromptsJobFacet"
