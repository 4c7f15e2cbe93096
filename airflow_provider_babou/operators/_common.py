"""Plumbing shared by the Babou operators: the hook's lifetime, XCom, links, deadlines, run markers.

Kept apart from ``babou.py`` so that module reads as the operators' behaviour only.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_babou._compat import RetryAwareResumeMixin
from airflow_provider_babou.exceptions import BabouError, BabouInputError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.links import BabouProjectLink
from airflow_provider_babou.polling import PollPolicy

if TYPE_CHECKING:
    from airflow.sdk import Context

# The docs' cadence (x1.5 up to 30 s) has one source: PollPolicy's defaults.
MAX_POLL_INTERVAL = PollPolicy.max_interval
POLL_BACKOFF = PollPolicy.backoff


def run_marker(context: Context) -> str:
    """Return the marker naming this task's run, e.g. ``[airflow:ab12cd34ef56]``.

    It is derived from dag id, task id, run id and map index, so every try of the same task
    instance (retries and clears) gets the same marker and different runs never share one.
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    if map_index is None:
        map_index = -1
    raw = "\x1f".join((str(ti.dag_id), str(ti.task_id), str(ti.run_id), str(map_index)))
    return f"[airflow:{hashlib.sha256(raw.encode()).hexdigest()[:12]}]"


def try_number(context: Context) -> int:
    """Return the try number of the running task instance (1 when unknown)."""
    value = getattr(context.get("ti"), "try_number", None)
    return value if isinstance(value, int) and value > 0 else 1


def check_wait_args(poll_interval: object, timeout: object) -> None:
    """Reject a non-positive poll interval or timeout when the operator is built, not hours later."""
    for label, value in (("poll_interval", poll_interval), ("timeout", timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise BabouInputError(
                f"{label} must be a positive number of seconds, got {value!r}",
                hint="e.g. poll_interval=2.0, timeout=1800",
            )


def annotate(err: BabouError, note: str) -> BabouError:
    """Append ``note`` to a Babou error's message in place (its text is rendered from it), and return it."""
    err.message = f"{err.message} [{note}]"
    return err


class BabouBaseOperator(RetryAwareResumeMixin, BaseOperator):
    """Base of the Babou operators: the connection id and one hook per ``execute``.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    ui_color = "#f4e3ff"

    def __init__(self, *, babou_conn_id: str = BabouHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.babou_conn_id = babou_conn_id

    @cached_property
    def hook(self) -> BabouHook:
        """The hook; built lazily because the DAG processor constructs operators without running them."""
        return BabouHook(babou_conn_id=self.babou_conn_id)

    @contextmanager
    def session(self) -> Iterator[BabouHook]:
        """Yield the hook and close its HTTP client afterwards, whatever happens."""
        hook = self.hook
        try:
            yield hook
        finally:
            hook.close()
            # A later call in this process (execute_complete after an in-line trigger) gets a new client.
            self.__dict__.pop("hook", None)

    @staticmethod
    def push(context: Context, **values: Any) -> None:
        """Push each non-``None`` value to XCom under its name (before deferring, so links work at once)."""
        ti = context["ti"]
        for key, value in values.items():
            if value is not None:
                ti.xcom_push(key=key, value=value)

    @staticmethod
    def persist_project_link(context: Context, hook: BabouHook, project_id: str) -> None:
        """Store the project's dashboard URL for the "Babou project" extra link, when one is configured."""
        BabouProjectLink.persist(context, hook.dashboard_url(project_id))


class BabouWaitingOperatorMixin:
    """Shared arguments and helpers of operators that wait on a Babou job.

    Not an operator on its own: it only turns ``poll_interval`` and ``timeout`` into the hook's
    :class:`PollPolicy` and the triggers' keyword arguments.
    """

    deferrable: bool
    poll_interval: float
    timeout: float
    babou_conn_id: str

    def set_wait_args(self, *, deferrable: bool, poll_interval: float, timeout: float) -> None:
        """Check and store the wait arguments (in ``__init__``, so bad values fail at DAG parse time)."""
        check_wait_args(poll_interval, timeout)
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout

    def poll_policy(self) -> PollPolicy:
        """Return the blocking wait's cadence (the same one the triggers use)."""
        return PollPolicy(
            interval=self.poll_interval,
            backoff=POLL_BACKOFF,
            max_interval=max(MAX_POLL_INTERVAL, self.poll_interval),
        )

    def trigger_kwargs(self, deadline: float | None = None) -> dict[str, Any]:
        """Return the poll kwargs every Babou trigger takes, with an absolute wall-clock ``end_time``."""
        return {
            "babou_conn_id": self.babou_conn_id,
            "end_time": deadline if deadline is not None else time.time() + self.timeout,
            "poll_interval": float(self.poll_interval),
            "poll_backoff": POLL_BACKOFF,
            "max_poll_interval": max(MAX_POLL_INTERVAL, float(self.poll_interval)),
        }
