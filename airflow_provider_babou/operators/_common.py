"""What every Babou operator shares: the hook's lifetime, XCom, links, and waiting (block or defer)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_babou._compat import conf
from airflow_provider_babou.deferral import RetryAwareResumeMixin, defer_wait
from airflow_provider_babou.exceptions import BabouWaitTimeoutError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.lineage import BabouLineage, babou_dataset, operator_lineage
from airflow_provider_babou.links import BabouProjectLink
from airflow_provider_babou.polling import DEFAULT_MAX_FAILURES, PollPolicy, WaitTarget, check_seconds
from airflow_provider_babou.triggers.babou import (
    DEFAULT_MIN_DEFERRAL,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, as every Airflow operator reads it."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class BabouBaseOperator(RetryAwareResumeMixin, BaseOperator):
    """Base of the Babou operators: the connection id and one hook per ``execute``.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    ui_color = "#f4e3ff"
    #: What the task reads and writes, set as soon as it is known, so a FAIL event carries it too
    #: (OpenLineage falls back to the "on complete" facets). Each try runs on a fresh copy of the task.
    babou_lineage: BabouLineage | None = None

    def __init__(self, *, babou_conn_id: str = BabouHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.babou_conn_id = babou_conn_id

    @cached_property
    def hook(self) -> BabouHook:
        """The hook; built lazily because the DAG processor constructs operators without running them.

        Its retries never sleep past the task's ``execution_timeout``.
        """
        timeout = self.execution_timeout
        return BabouHook(
            self.babou_conn_id, deadline=time.time() + timeout.total_seconds() if timeout else None
        )

    @contextmanager
    def session(self) -> Iterator[BabouHook]:
        """Yield the hook and close its HTTP client afterwards, whatever happens."""
        try:
            yield self.hook
        finally:
            self.hook.close()
            # A later call in this process (execute_complete after an in-line trigger) gets a new hook.
            self.__dict__.pop("hook", None)

    @staticmethod
    def push(context: Context, **values: Any) -> None:
        """Push each non-``None`` value to XCom under its name (before deferring, so links work at once)."""
        for key, value in values.items():
            if value is not None:
                context["ti"].xcom_push(key=key, value=value)

    def babou_dataset(self, name: str) -> tuple[str, str]:
        """A Babou object (``projects/<id>``, ``assets/<id>``...) as a dataset of the connection's API."""
        return babou_dataset(self.hook.config.base_url, name)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage: the datasets the task read and wrote, its Babou ids and prompts (see ``lineage``)."""
        return operator_lineage(self.babou_lineage or BabouLineage())

    @staticmethod
    def persist_project_link(context: Context, hook: BabouHook, project_id: str) -> None:
        """Store the project's dashboard URL for the "Babou project" extra link, when one is configured."""
        BabouProjectLink.persist(context, hook.dashboard_url(project_id))


class BabouWaitingOperator(BabouBaseOperator):
    """Base of operators that wait on a Babou job, blocking in the worker or deferred to the triggerer.

    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param poll_before_defer: deferrable: seconds to poll in the task before deferring (0: defer at
        once). A job done by then resumes nothing: no trigger, no second process, no executor race.
    :param min_deferral: deferrable: the trigger resumes the task no sooner than this many seconds
        after it deferred (never past ``timeout``), so Airflow's scheduler has taken the report of
        the worker that deferred first; sooner, Airflow can fail the resumed try (apache/airflow#72716).
    """

    def __init__(
        self,
        *,
        deferrable: bool,
        poll_interval: float,
        timeout: float,
        poll_before_defer: float = 0.0,
        min_deferral: float = DEFAULT_MIN_DEFERRAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = check_seconds("poll_interval", poll_interval)
        self.timeout = check_seconds("timeout", timeout)
        self.poll_before_defer = check_seconds("poll_before_defer", poll_before_defer, allow_zero=True)
        self.min_deferral = check_seconds("min_deferral", min_deferral, allow_zero=True)

    def poll_policy(self) -> PollPolicy:
        """The cadence of every wait, blocking or deferred."""
        return PollPolicy(
            self.poll_interval, PollPolicy.backoff, max(PollPolicy.max_interval, self.poll_interval)
        )

    def wait_for(
        self,
        context: Context,
        hook: BabouHook,
        target: WaitTarget,
        *,
        method_name: str = "execute_complete",
        kwargs: dict[str, Any] | None = None,
        end_time: float | None = None,
        expected: tuple[float, float] | None = None,
    ) -> Any:
        """Wait for ``target``: defer on its trigger (resuming in ``method_name``), or block and return it.

        ``expected``: when Babou expects the job done (:func:`~.polling.expected_window` of a receipt).

        A deferrable wait first polls in the task for ``poll_before_defer`` seconds, and its trigger
        holds an outcome until ``min_deferral`` seconds after the deferral.
        """
        end_time = time.time() + self.timeout if end_time is None else end_time
        remaining = end_time - time.time()
        if remaining <= 0:
            raise BabouWaitTimeoutError(f"timed out with {target.describe()} still pending")
        if self.deferrable and self.poll_before_defer > 0:
            grace = min(self.poll_before_defer, remaining)
            try:
                return hook.wait(target, poll=self.poll_policy(), timeout=grace, expected=expected)
            except BabouWaitTimeoutError:
                if grace >= remaining:
                    raise  # the whole wait fitted in the grace: it timed out
                self.log.info("Babou %s still pending after %.0f s: deferring", target.describe(), grace)
        if self.deferrable:
            defer_wait(
                self,
                context,
                target,
                end_time=end_time,
                policy=self.poll_policy(),
                max_failures=DEFAULT_MAX_FAILURES,
                min_deferral=self.min_deferral,
                method_name=method_name,
                kwargs=kwargs,
                expected=expected,
            )
        return hook.wait(target, poll=self.poll_policy(), timeout=remaining, expected=expected)
