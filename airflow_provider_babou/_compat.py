"""Names that moved between Airflow 3.1 (our floor) and newer releases, imported from one place."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException

try:  # Airflow >= 3.2: the task SDK owns these.
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSensorTimeout, TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
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

__all__ = [
    "HAS_RESUMABLE_JOB_MIXIN",
    "AirflowException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "ResumableJobMixin",
    "TaskDeferred",
    "conf",
    "mask_secret",
]
