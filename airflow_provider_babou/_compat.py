"""Names that moved between Airflow 3.1 (our floor) and newer releases, imported from one place.

(And, deprecated, ``RetryAwareResumeMixin``: it moved to :mod:`airflow_provider_babou.deferral`.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.sdk.exceptions import AirflowException

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


def __getattr__(name: str) -> Any:
    # Moved to deferral.py (it is no Airflow name); kept importable from here for a while, since
    # custom operators deferring on Babou's triggers could mix it in. Lazy: deferral imports _compat.
    if name == "RetryAwareResumeMixin":
        import warnings

        from airflow_provider_babou import deferral

        warnings.warn(
            "airflow_provider_babou._compat.RetryAwareResumeMixin moved to "
            "airflow_provider_babou.deferral.RetryAwareResumeMixin",
            DeprecationWarning,
            stacklevel=2,
        )
        return deferral.RetryAwareResumeMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HAS_RESUMABLE_JOB_MIXIN",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "ResumableJobMixin",
    "TaskDeferred",
    "aget_connection",
    "conf",
    "get_connection",
    "mask_secret",
]
