"""Deferring a wait to the triggerer and resuming from it, the same for operators and sensors.

:func:`defer_wait` builds the wait's trigger from its target (:meth:`BabouPollTrigger.for_target`),
records the deferring try and defers; :class:`RetryAwareResumeMixin` resumes only the try that
deferred; :func:`runs_in_line` tells ``dag.test()`` (no executor, so no executor race) apart.
"""

from __future__ import annotations

import time
from typing import Any

from airflow import __version__ as airflow_version
from packaging.version import Version

from airflow_provider_babou.polling import PollPolicy, WaitTarget
from airflow_provider_babou.triggers.babou import BabouPollTrigger

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


def try_number(context: Any) -> int:
    """Return the try number of the running task instance (1 when unknown)."""
    value = _try_number(context)
    return value if value is not None and value > 0 else 1


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
        # This task instance's own record: without map_indexes, Airflow pulls every map index of a
        # mapped task (a list, or another index's number when only one holds the key).
        deferred_on = ti.xcom_pull(task_ids=ti.task_id, key=DEFERRED_TRY_XCOM_KEY, map_indexes=ti.map_index)
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


def defer_wait(
    task: Any,
    context: Any,
    target: WaitTarget,
    *,
    end_time: float,
    policy: PollPolicy,
    max_failures: int,
    min_deferral: float,
    method_name: str = "execute_complete",
    kwargs: dict[str, Any] | None = None,
    expected: tuple[float, float] | None = None,
) -> None:
    """Defer ``task`` (an operator or sensor with :class:`RetryAwareResumeMixin`) on ``target``'s trigger.

    The deadline lives in the trigger as wall-clock time (``timeout=None``): a framework timeout
    would skip the resume method and lose the "what was pending" message. The trigger holds an
    outcome until ``min_deferral`` seconds from now (Airflow's executor race). ``expected``: when
    Babou expects the job done (:func:`~.polling.expected_window`).
    """
    trigger = BabouPollTrigger.for_target(
        target,
        task.babou_conn_id,
        end_time=end_time,
        policy=policy,
        max_failures=max_failures,
        not_before=time.time() + min_deferral if min_deferral else None,
        expected=expected,
    )
    task.record_deferring_try(context)
    task.defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=None)
