"""Download a project's completed export (the MP4) to a local path or object storage."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_babou.lineage import BabouLineage, location_dataset
from airflow_provider_babou.links import BabouProjectLink, BabouVideoLink
from airflow_provider_babou.operators._common import BabouBaseOperator
from airflow_provider_babou.operators._steps import checked_destination, download
from airflow_provider_babou.validation import check_id

if TYPE_CHECKING:
    from airflow.sdk import Context


class BabouDownloadExportOperator(BabouBaseOperator):
    """Download a project's completed export (the MP4) to a local path or object storage.

    Before any request, the destination is proven writable (missing parent directories are
    created, a probe file is written and removed; an S3 bucket must exist and is never created).
    The hook writes to a temporary file beside the destination, resumes interrupted transfers only
    into the same file, checks it is an MP4 and renames atomically, so a retry never leaves a
    half-written or wrong video at ``destination``. Each
    :class:`~airflow.sdk.Asset` in ``outlets`` gets an event whose extra carries ``project_id``,
    ``size``, ``sha256`` and ``path``.

    Returns ``{path, size, sha256, project_id, download_url}``. OpenLineage: ``projects/<id>/export``
    of the Babou API in, the MP4 (``file`` + path, or ``s3://bucket`` + key) out.

    :param project_id: the exported project.
    :param destination: a file path or an :class:`~airflow.sdk.ObjectStoragePath` (``s3://...``
        strings are turned into one).
    :param dest_conn_id: the connection of an object-storage ``destination`` given as a string;
        without it the URL's own, else the scheme's default (``aws_default`` for ``s3://...``).
    :param overwrite: replace an existing file at ``destination`` instead of failing.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id", "destination", "dest_conn_id")
    operator_extra_links = (BabouProjectLink(), BabouVideoLink())

    def __init__(
        self,
        *,
        project_id: str,
        destination: str | os.PathLike[str] | ObjectStoragePath,
        dest_conn_id: str | None = None,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.destination = destination
        self.dest_conn_id = dest_conn_id
        self.overwrite = overwrite

    def execute(self, context: Context) -> dict[str, Any]:
        project_id = check_id("project", self.project_id)
        destination = checked_destination(
            self.destination, overwrite=self.overwrite, conn_id=self.dest_conn_id
        )
        with self.session() as hook:
            self.persist_project_link(context, hook, project_id)
            self.babou_lineage = BabouLineage(
                ids={"project_id": project_id},
                inputs=[self.babou_dataset(f"projects/{project_id}/export")],
                outputs=[location_dataset(destination)],
            )
            return download(self, context, hook, project_id, destination, overwrite=self.overwrite)
