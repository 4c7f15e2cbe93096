"""Extra links on Babou tasks: the project in Babou's dashboard and the exported video.

Airflow 3 stores a link's URL in XCom under the link's ``xcom_key``: the task stores it while it
runs (:meth:`persist`, possibly before deferring, so the link works during the wait) and the UI
reads that XCom back. ``get_link`` is what the worker calls when the task finishes; it returns
what was stored, or ``""`` so the button stays disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["BabouProjectLink", "BabouVideoLink"]


class _BabouXComLink(BaseOperatorLink):
    """An extra link whose URL a task stores in XCom while it runs."""

    name: ClassVar[str]
    key: ClassVar[str]

    @property
    def xcom_key(self) -> str:
        """The XCom key holding this link's URL (a stable name, not derived from the class)."""
        return self.key

    @classmethod
    def persist(cls, context: Context, url: str | None) -> None:
        """Store ``url`` as this link's target for the running task instance.

        ``None`` stores ``""``: the worker reads every link when the task finishes or defers, and a
        missing XCom would log an error there for a link that simply does not apply (yet).

        :param context: the task's execution context.
        :param url: the link's target, or ``None`` when it is not known (yet).
        """
        context["ti"].xcom_push(key=cls.key, value=url or "")

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the stored URL for this task instance, or ``""`` when none was stored.

        :param operator: the operator the link is attached to.
        :param ti_key: the task instance to look the URL up for.
        """
        # Imported here: it resolves the configured XCom backend, which only makes sense at runtime.
        from airflow.sdk.execution_time.xcom import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return value if isinstance(value, str) else ""


class BabouProjectLink(_BabouXComLink):
    """The project's page in Babou's dashboard (from the connection's ``dashboard_url_template``)."""

    name = "Babou project"
    key = "babou_project_url"


class BabouVideoLink(_BabouXComLink):
    """The exported MP4: the export's ``download_url`` as Babou gave it when the task finished.

    It opens the video in the browser right after the run, which is what the button is for. It
    is not a permanent address: Babou's download URLs are signed and may expire (the emulator's
    do after an hour), and Airflow stores a link when the task ends, never at the click. A
    stable place would be Babou's dashboard ("Babou project"), which has no page per video, or
    the task's ``destination``, a path on the worker or in object storage that a browser cannot
    open; for an old run, use those or run the download task again.
    """

    name = "Babou video"
    key = "babou_video_url"
