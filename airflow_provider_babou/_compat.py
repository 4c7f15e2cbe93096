"""Names that moved between Airflow 3.1 (our floor) and newer releases, imported from one place."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow import __version__ as airflow_version
from airflow.sdk.exceptions import AirflowException
from packaging.version import Version

try:  # Airflow >= 3.2: the task SDK owns these.
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        TaskDeferred,
    )

try:  # Airflow >= 3.2
    from airflow.sdk.log import mask_secret
except ImportError:  # Airflow 3.1 keeps it in the execution-time module
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]

try:  # Airflow >= 3.2
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[no-redef,assignment,unused-ignore]

try:  # Airflow >= 3.3: reconnect to an in-flight job on retry through the task state store.
    from airflow.sdk import ResumableJobMixin

    HAS_RESUMABLE_JOB_MIXIN = True
except ImportError:  # Airflow < 3.3: operators fall back to asking Babou on a retry.

    class ResumableJobMixin:  # type: ignore[no-redef]
        """Stand-in on Airflow < 3.3: accepts ``durable`` so DAGs stay portable; never used to resume."""

        def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.durable = durable

    HAS_RESUMABLE_JOB_MIXIN = False


# Connection lookups outside a supervised process (a script, a test, a notebook).
#
# Airflow 3.1's task SDK resolves a connection the cache -> secrets backends -> supervisor way,
# but ``aget_connection`` imports ``task_runner.SUPERVISOR_COMMS`` *before* it asks the backends,
# and ``get_connection`` imports it after them to ask the API server. That global only exists in
# a task runner or triggerer process, so outside one Airflow 3.1 raises
# ``ImportError: cannot import name 'SUPERVISOR_COMMS'`` for every async lookup (even of an
# ``AIRFLOW_CONN_*`` env connection) and for a sync lookup of a connection no backend has.
# Airflow >= 3.2 checks the backends first and raises ``AirflowNotFoundException`` instead.


def _no_supervisor(exc: ImportError) -> bool:
    """True when ``exc`` is Airflow 3.1 reaching for a supervisor this process does not have."""
    return "SUPERVISOR_COMMS" in str(exc)


def get_connection(hook: Any, conn_id: str) -> Any:
    """``hook.get_connection(conn_id)``; a connection no backend has is ``AirflowNotFoundException``."""
    try:
        return hook.get_connection(conn_id)
    except ImportError as exc:
        if not _no_supervisor(exc):
            raise
        # Every secrets backend (env vars included) was asked already, and there is no API
        # server to ask: the connection is not defined here.
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined") from None


async def aget_connection(hook: Any, conn_id: str) -> Any:
    """``await hook.aget_connection(conn_id)``, working outside a supervised process on Airflow 3.1.

    Outside a task runner / triggerer there is no supervisor, so Airflow 3.1's async lookup fails
    before it reads the secrets backends. The async API exists so that the triggerer's event loop
    never blocks on the supervisor's synchronous channel (a deadlock); without a supervisor
    there is no such channel, so the sync lookup in a worker thread is safe and sees the same
    backends.
    """
    try:
        return await hook.aget_connection(conn_id)
    except ImportError as exc:
        if not _no_supervisor(exc):
            raise
    return await asyncio.to_thread(get_connection, hook, conn_id)


def runs_in_line() -> bool:
    """Whether this code runs inside ``dag.test()`` (3.1 to 3.3: the task and its trigger run in the
    test's own process, talking to an in-process supervisor), rather than under a real executor."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover
        return False
    return type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms"


# A retry must not resume the previous try's trigger event.
#
# Airflow 3.1 leaves a deferred task's ``next_method``/``next_kwargs`` on the task instance when
# the resumed method fails and the task goes up for retry (3.3's execution API clears them with
# every terminal or retry state): the next try then skips ``execute`` and "resumes" with the
# *previous* try's event, so a failed wait is re-raised on every try and a retry never starts
# over. Before 3.3 the operators record which try deferred and a resume on another try runs
# ``execute`` again instead. The record is in XCom (kept across a deferral, cleared before a
# fresh try), the one place that survives both a deployment and Airflow 3.1's ``dag.test()``
# (which resumes with the event alone, dropping the deferral's kwargs); from 3.3 on nothing is
# recorded, so the XCom tab shows no bookkeeping.

#: Whether a retry can be handed the previous try's ``next_method`` (Airflow before 3.3).
RESUME_SURVIVES_RETRY = Version(airflow_version).release < (3, 3)

#: XCom key of the try number that deferred (see :class:`RetryAwareResumeMixin`).
DEFERRED_TRY_XCOM_KEY = "babou_deferred_try"


def _try_number(context: Any) -> int | None:
    value = getattr(context.get("ti"), "try_number", None)
    return value if isinstance(value, int) else None


class RetryAwareResumeMixin:
    """Operator/sensor mixin: call :meth:`record_deferring_try` before ``self.defer(...)``."""

    def record_deferring_try(self, context: Any) -> None:
        """Remember (in XCom) which try is deferring, for :meth:`resume_execution` (before 3.3)."""
        number = _try_number(context)
        if RESUME_SURVIVES_RETRY and number is not None:
            context["ti"].xcom_push(key=DEFERRED_TRY_XCOM_KEY, value=number)

    def _resumes_an_earlier_try(self, context: Any) -> bool:
        ti = context.get("ti")
        number = _try_number(context)
        if not RESUME_SURVIVES_RETRY or number is None or not hasattr(ti, "xcom_pull"):
            return False
        deferred_on = ti.xcom_pull(task_ids=ti.task_id, key=DEFERRED_TRY_XCOM_KEY)
        return isinstance(deferred_on, int) and deferred_on != number

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """Resume from the trigger, or run ``execute`` when the event belongs to an earlier try."""
        if self._resumes_an_earlier_try(context):
            self.log.warning(  # type: ignore[attr-defined]
                "Try %s was asked to resume %s() of an earlier try's deferral (Airflow 3.1 keeps "
                "it across retries); starting over with execute() instead",
                _try_number(context),
                next_method,
            )
            return self.execute(context)  # type: ignore[attr-defined]
        return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]


__all__ = [
    "DEFERRED_TRY_XCOM_KEY",
    "HAS_RESUMABLE_JOB_MIXIN",
    "RESUME_SURVIVES_RETRY",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "ResumableJobMixin",
    "RetryAwareResumeMixin",
    "TaskDeferred",
    "aget_connection",
    "conf",
    "get_connection",
    "mask_secret",
    "runs_in_line",
]
