"""Start rendering a project into one video, and by default wait for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_babou._compat import HAS_RESUMABLE_JOB_MIXIN, ResumableJobMixin
from airflow_provider_babou.deferral import try_number
from airflow_provider_babou.exceptions import BabouJobFailedError
from airflow_provider_babou.lineage import BabouLineage
from airflow_provider_babou.links import BabouProjectLink, BabouVideoLink
from airflow_provider_babou.models import Export, ExportStatus
from airflow_provider_babou.operators._common import BabouWaitingOperator, default_deferrable
from airflow_provider_babou.operators._steps import start_or_attach_export
from airflow_provider_babou.polling import ExportTarget, export_state
from airflow_provider_babou.triggers.babou import raise_for_event
from airflow_provider_babou.validation import check_id

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pydantic import JsonValue


class BabouStartExportOperator(ResumableJobMixin, BabouWaitingOperator):
    """Start rendering a project into one video, and by default wait for it (minutes).

    Retry-safe, in this order:

    * an export already in flight (the project's ``active_export_id``, or a 409 on start) is
      attached to, never started twice;
    * on Airflow 3.3+ the task uses :class:`~airflow.sdk.ResumableJobMixin`: the export it started
      is recorded in the task state store, and a retry reconnects to it while it runs, returns it
      if it completed (no second render), or starts a new one if it failed;
    * on older Airflow, or when the context has no task state store, a retry (``try_number > 1``)
      whose project's latest export completed returns that export instead of rendering again.

    A failed export fails the task with Babou's ``error`` text. Pushes ``export_id`` when Babou
    reports one, before waiting; returns the export as JSON with ``project_id``; stores the
    "Babou video" link (Babou's download URL, which may expire) once the export completed.
    OpenLineage: ``projects/<id>`` of the Babou API in, ``projects/<id>/export`` (the video) out,
    ``project_id`` and ``export_id`` in the ``babou`` run facet.

    :param project_id: the project to export.
    :param wait_for_completion: wait until the export completed (or failed).
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param durable: (Airflow 3.3+) record the export in the task state store to resume it on retry.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id",)
    operator_extra_links = (BabouProjectLink(), BabouVideoLink())
    #: Task-state-store key of the started export; renaming it would break in-flight retries.
    external_id_key = "babou_export"

    def __init__(
        self,
        *,
        project_id: str,
        wait_for_completion: bool = True,
        deferrable: bool = default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 1800,
        **kwargs: Any,
    ) -> None:
        super().__init__(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout, **kwargs)
        self.project_id = project_id
        self.wait_for_completion = wait_for_completion

    def execute(self, context: Context) -> Any:
        project_id = check_id("project", self.project_id)
        with self.session() as hook:
            self.persist_project_link(context, hook, project_id)
            BabouVideoLink.persist(context, None)  # set once the export completes
            if HAS_RESUMABLE_JOB_MIXIN and context.get("task_state_store") is not None:
                return self.execute_resumable(context)
            # Without a task state store, a retry (the same task instance, try > 1) takes a
            # completed export as the one its earlier try started, rather than rendering again.
            reuse = self.durable and try_number(context) > 1
            return self.poll_until_complete(self._start(reuse_completed=reuse), context)

    def _start(self, *, reuse_completed: bool) -> JsonValue:
        how, expected = start_or_attach_export(self.hook, self.project_id, reuse_completed=reuse_completed)
        export_id = self.hook.get_project(self.project_id).active_export_id
        self.log.info("Export of project %s %s (%s)", self.project_id, how, export_id or "no export id")
        self._expected = expected  # for this try's wait; a later try reconnecting has no estimate
        return {"project_id": self.project_id, "export_id": export_id}

    # -- ResumableJobMixin -------------------------------------------------------------------

    def submit_job(self, context: Context) -> JsonValue:
        """Start the export, or attach to the one in flight; return ``{project_id, export_id}``."""
        return self._start(reuse_completed=False)

    def get_job_status(self, external_id: JsonValue, context: Context) -> str:
        """Return the project's export status, ``"stale"`` for another project, ``"missing"`` for none."""
        if not isinstance(external_id, dict) or external_id.get("project_id") != self.project_id:
            return "stale"
        export = self.hook.find_export(self.project_id)
        return export.status.value if export is not None else "missing"

    def is_job_active(self, status: str) -> bool:
        """Queued, processing or a state word Babou added later: still worth waiting for."""
        return status not in ("stale", "missing") and not ExportStatus(status).is_terminal

    def is_job_succeeded(self, status: str) -> bool:
        """Only ``completed`` is a reusable export."""
        return status not in ("stale", "missing") and ExportStatus(status).is_success

    def poll_until_complete(self, external_id: JsonValue, context: Context) -> Any:
        """Wait for the export (defer, or block) and return it; without waiting, return its state."""
        self._record_lineage(self._push_export_id(context, external_id))
        target = ExportTarget(self.project_id)
        export = self.hook.get_export(self.project_id)
        if self.wait_for_completion and not export.status.is_terminal:
            export = self.wait_for(context, self.hook, target, expected=getattr(self, "_expected", None))
        if self.wait_for_completion and not export.status.is_success:
            raise BabouJobFailedError(export_state(export).failure(target.describe()))
        return self._result(context, export)

    def get_job_result(self, external_id: JsonValue, context: Context) -> Any:
        """Return the completed export (the path taken when a retry finds it already done)."""
        self._record_lineage(self._push_export_id(context, external_id))
        return self._result(context, self.hook.get_export(self.project_id))

    # -- results -----------------------------------------------------------------------------

    def _push_export_id(self, context: Context, external_id: JsonValue) -> Any:
        """Push the export id, if Babou reported one, and return it."""
        # Pushed on every try (Airflow clears XCom before a retry), also when reconnecting.
        export_id = external_id.get("export_id") if isinstance(external_id, dict) else None
        self.push(context, export_id=export_id)
        return export_id

    def _record_lineage(self, export_id: Any) -> None:
        self.babou_lineage = BabouLineage(
            ids={"project_id": self.project_id, "export_id": export_id},
            inputs=[self.babou_dataset(f"projects/{self.project_id}")],
            outputs=[self.babou_dataset(f"projects/{self.project_id}/export")],
        )

    def _result(self, context: Context, export: Export) -> dict[str, Any]:
        BabouVideoLink.persist(context, export.download_url)
        return {**export.model_dump(mode="json"), "project_id": self.project_id}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the export trigger fired: return the export, or raise its failure."""
        export = Export.model_validate(raise_for_event(event))
        # A new process: the export id the first part pushed is in XCom only.
        ti = context["ti"]
        self._record_lineage(ti.xcom_pull(task_ids=ti.task_id, key="export_id"))
        return self._result(context, export)
