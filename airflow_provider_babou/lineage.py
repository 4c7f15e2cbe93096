"""OpenLineage for the Babou operators: what a task read and wrote, and the facets that say so.

An operator records a :class:`BabouLineage` as it works (plain data, no OpenLineage import);
the OpenLineage listener calls the operator's ``get_openlineage_facets_on_complete``, which turns
the record into an ``OperatorLineage`` with :func:`operator_lineage`. OpenLineage is imported only
then, so the provider works without ``apache-airflow-providers-openlineage``.

Datasets follow OpenLineage's naming: a local file is namespace ``file`` and its absolute path,
object storage ``s3://bucket`` and the key; Babou's own objects live in ``babou://<api host>``
(``projects/<id>``, ``projects/<id>/chapters/<id>``, ``projects/<id>/export``, ``assets/<id>``).
The ``babou`` run facet carries the Babou ids the task used or made (its own XCom holds only those
it made); the ``babouPrompts`` job facet the prompt text each chapter was given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


@dataclass
class BabouLineage:
    """What one task read and wrote: datasets as ``(namespace, name)``, Babou ids, prompt texts.

    ``None`` ids (not known) and ``None`` datasets (a source that is no path) are left out (the
    datasets by :func:`operator_lineage`).
    """

    ids: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, str]] = field(default_factory=list)
    inputs: list[tuple[str, str] | None] = field(default_factory=list)
    outputs: list[tuple[str, str] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = {k: v for k, v in self.ids.items() if v is not None}


def babou_dataset(base_url: str, name: str) -> tuple[str, str]:
    """A Babou object as a dataset: namespace ``babou://<host[:port]>`` of the API, ``name`` in it."""
    return f"babou://{urlsplit(base_url).netloc}", name


def location_dataset(location: Any) -> tuple[str, str] | None:
    """A file path or :class:`~airflow.sdk.ObjectStoragePath` as an OpenLineage ``(namespace, name)``.

    ``None`` for what has no path (a file object).
    """
    protocol = getattr(location, "protocol", "")
    if protocol and protocol not in ("file", "local"):
        # s3://bucket + key, gs://bucket + key...; Airflow 3.1 keeps a conn_id in the bucket (conn@bucket).
        return f"{protocol}://{location.bucket.rpartition('@')[2]}", location.key
    path = getattr(location, "path", location)
    if not isinstance(path, (str, os.PathLike)):
        return None
    return "file", os.path.abspath(os.fspath(path))


def operator_lineage(record: BabouLineage) -> OperatorLineage:
    """Build the ``OperatorLineage`` the OpenLineage listener sends (imports OpenLineage here)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_babou._lineage_facets import PRODUCER, BabouPromptsJobFacet, BabouRunFacet

    run_facets: dict[str, Any] = {}
    if record.ids:
        run_facets["babou"] = BabouRunFacet(producer=PRODUCER, **record.ids)
    job_facets: dict[str, Any] = {}
    if record.prompts:
        job_facets["babouPrompts"] = BabouPromptsJobFacet(producer=PRODUCER, prompts=record.prompts)
    return OperatorLineage(
        inputs=[Dataset(namespace=d[0], name=d[1]) for d in record.inputs if d],
        outputs=[Dataset(namespace=d[0], name=d[1]) for d in record.outputs if d],
        run_facets=run_facets,
        job_facets=job_facets,
    )
