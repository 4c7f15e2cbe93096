"""Upload a media file as a Babou asset, optionally waiting until it is ready."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_babou.exceptions import BabouJobFailedError
from airflow_provider_babou.lineage import BabouLineage, location_dataset
from airflow_provider_babou.operators._common import BabouWaitingOperator, default_deferrable
from airflow_provider_babou.operators._steps import as_location
from airflow_provider_babou.polling import AssetTarget, asset_state
from airflow_provider_babou.triggers.babou import raise_for_event

if TYPE_CHECKING:
    from airflow.sdk import Context


class BabouUploadAssetOperator(BabouWaitingOperator):
    """Upload a media file (image, clip, audio) as a Babou asset, optionally waiting until it is ready.

    The file is streamed, not read into memory. The hook checks it before any request: it must
    exist, not be a directory, be at most 100 MiB and have a supported content type (given, or
    guessed from the name). Babou cannot recognise a file it already has, so uploads are not
    deduplicated: a retry after an upload whose outcome is unknown may store the file twice.

    Pushes ``asset_id`` (before waiting) and returns the asset as JSON plus ``asset_id``. OpenLineage:
    the source file in, ``assets/<id>`` of the Babou API out, ``asset_id`` in the ``babou`` run facet.

    :param source: a local path or an :class:`~airflow.sdk.ObjectStoragePath` (``s3://...`` strings
        are turned into one).
    :param content_type: the MIME type, e.g. ``image/png``; guessed from the name when omitted.
    :param wait_for_ready: wait until Babou processed the asset; an asset in ``error`` fails the task.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("source", "content_type")

    def __init__(
        self,
        *,
        source: str | os.PathLike[str] | ObjectStoragePath,
        content_type: str | None = None,
        wait_for_ready: bool = False,
        deferrable: bool = default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 600,
        **kwargs: Any,
    ) -> None:
        super().__init__(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout, **kwargs)
        self.source = source
        self.content_type = content_type
        self.wait_for_ready = wait_for_ready

    def execute(self, context: Context) -> dict[str, Any]:
        with self.session() as hook:
            asset = hook.upload_asset(as_location(self.source), content_type=self.content_type or None)
            self.log.info("Uploaded asset %s (%s, %s)", asset.id, asset.content_type, asset.state.value)
            self.push(context, asset_id=asset.id)
            if self.wait_for_ready and not asset.state.is_terminal:
                asset = self.wait_for(context, hook, AssetTarget(asset.id))
            elif self.wait_for_ready and not asset.state.is_success:
                raise BabouJobFailedError(asset_state(asset).failure(AssetTarget(asset.id).describe()))
            return self._result(asset.model_dump(mode="json"))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the asset trigger fired: return the ready asset, or raise its failure."""
        return self._result(raise_for_event(event))

    def _result(self, asset: dict[str, Any]) -> dict[str, Any]:
        self.babou_lineage = BabouLineage(
            ids={"asset_id": asset.get("id")},
            inputs=[location_dataset(as_location(self.source))],
            outputs=[self.babou_dataset(f"assets/{asset.get('id')}")],
        )
        return {**asset, "asset_id": asset.get("id")}
