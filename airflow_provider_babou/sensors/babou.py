"""Sensors that wait for a Babou prompt, export or asset, in poke, reschedule or deferrable mode.

Every mode judges the object with the same ``polling.*_state`` function the hook's waits and
the triggers use, so "done" means the same thing everywhere. In deferrable mode a sensor pokes
once, then defers on the trigger class the operators use.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_babou._compat import AirflowSensorTimeout, conf
from airflow_provider_babou.deferral import RetryAwareResumeMixin, defer_wait
from airflow_provider_babou.exceptions import BabouJobFailedError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import (
    DEFAULT_MAX_FAILURES,
    PollPolicy,
    WaitClock,
    WaitTarget,
    check_max_failures,
    check_seconds,
)
from airflow_provider_babou.triggers.babou import (
    DEFAULT_MIN_DEFERRAL,
    BabouAssetTrigger,
    BabouExportTrigger,
    BabouPollTrigger,
    BabouPromptTrigger,
    raise_for_event,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["BabouAssetSensor", "BabouExportSensor", "BabouPromptSensor"]


class _BabouSensor(RetryAwareResumeMixin, BaseSensorOperator):
    """Shared poke/defer logic; subclasses keep their ids in attributes named as their trigger's ids.

    A poke is one wait step (:meth:`BabouHook.look`): transient errors are tried again in place,
    up to ``max_consecutive_failures`` in a row, so the limit holds in reschedule mode too, where
    every poke runs on a new instance.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: first delay between two checks, in seconds; also the default
        ``poke_interval``. The trigger backs off from it up to ``max_poll_interval``.
    :param max_poll_interval: the longest delay between two polls of the trigger, in seconds.
    :param max_consecutive_failures: transient errors (transport, 5xx, 429) tolerated in a row.
    :param timeout: the sensor's own timeout in seconds; in deferrable mode the trigger's deadline.
    :param poll_before_defer: deferrable: seconds to poke in the task (every ``poke_interval``)
        before deferring; 0 pokes once. An object done by then resumes nothing.
    :param min_deferral: deferrable: the trigger resumes the task no sooner than this many seconds
        after it deferred (never past ``timeout``), so Airflow's scheduler has taken the report of
        the worker that deferred first; sooner, Airflow can fail the resumed try (apache/airflow#72716).
    """

    ui_color = "#f4e9ff"
    #: The trigger that waits for the same object in deferrable mode.
    trigger_class: ClassVar[type[BabouPollTrigger]]

    def __init__(
        self,
        *,
        babou_conn_id: str = "babou_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = DEFAULT_MAX_FAILURES,
        poll_before_defer: float = 0.0,
        min_deferral: float = DEFAULT_MIN_DEFERRAL,
        **kwargs: Any,
    ) -> None:
        policy = PollPolicy(poll_interval, 1.5, max(max_poll_interval, poll_interval))
        # Without an explicit poke_interval, poke at the Babou cadence rather than Airflow's 60 s.
        kwargs.setdefault("poke_interval", poll_interval)
        # Checked before Airflow's own checks, which let NaN through or raise untyped errors.
        for name in ("poke_interval", "timeout"):
            if name in kwargs:
                check_seconds(name, kwargs[name])
        super().__init__(**kwargs)
        self.babou_conn_id = babou_conn_id
        self.deferrable = deferrable
        self.policy = policy
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_consecutive_failures = check_max_failures(max_consecutive_failures)
        self.poll_before_defer = check_seconds("poll_before_defer", poll_before_defer, allow_zero=True)
        self.min_deferral = check_seconds("min_deferral", min_deferral, allow_zero=True)
        check_seconds("timeout", self.timeout)
        check_seconds("poke_interval", self.poke_interval)

    @cached_property
    def hook(self) -> BabouHook:
        """The Babou hook, built on first use (no I/O at DAG parse time)."""
        return BabouHook(babou_conn_id=self.babou_conn_id)

    @property
    def target(self) -> WaitTarget:
        """What this sensor waits for."""
        return self.trigger_class.target_class(
            **{n: getattr(self, n) for n in self.trigger_class.id_fields()}
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Check once: done returns the object's JSON, a Babou failure raises, else ``False``."""
        target = self.target
        clock = WaitClock(time.time() + self.timeout, self.policy, self.max_consecutive_failures)
        obj, state = self.hook.look(target, clock)
        if not state.done:
            self.log.info("Babou %s is %r", target.describe(), state.state)
            return False
        if state.succeeded:
            self.log.info("Babou %s is %s", target.describe(), state.state)
            return PokeReturnValue(is_done=True, xcom_value=obj.model_dump(mode="json"))
        raise BabouJobFailedError(state.failure(target.describe()))

    def execute(self, context: Context) -> Any:
        """Poke (poke/reschedule modes), or poke for ``poll_before_defer`` (at least once) and
        defer on the trigger (deferrable)."""
        try:
            if not self.deferrable:
                return super().execute(context)
            end_time = time.time() + self.timeout
            poke_until = time.time() + min(self.poll_before_defer, self.timeout)
            while True:
                outcome = self.poke(context)
                if isinstance(outcome, PokeReturnValue):
                    return outcome.xcom_value
                if time.time() + self.poke_interval > poke_until:
                    break
                time.sleep(self.poke_interval)
            defer_wait(
                self,
                context,
                self.target,
                end_time=end_time,
                policy=self.policy,
                max_failures=self.max_consecutive_failures,
                min_deferral=self.min_deferral,
            )
        finally:
            self._close_hook()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume: return what a poke returns (the object, read again), or raise the wait's outcome.

        :raises AirflowSensorTimeout: the deadline passed (the sensor does not retry).
        :raises BabouJobFailedError: Babou reported the job failed.
        :raises BabouError: the wait broke (bad key, unknown id, too many transient errors).
        """
        raise_for_event(event, timeout_error=AirflowSensorTimeout)
        try:
            result: dict[str, Any] = self.hook.observe(self.target).model_dump(mode="json")
            return result
        finally:
            self._close_hook()

    def _close_hook(self) -> None:
        # Only close a hook that was built: touching the cached_property would create one.
        hook = self.__dict__.pop("hook", None)
        if hook is not None:
            hook.close()


class BabouPromptSensor(_BabouSensor):
    """Wait for a prompt to complete; returns its chapter (``model_dump(mode="json")``).

    :param project_id: the project holding the chapter (templated).
    :param chapter_id: the chapter the prompt was submitted to (templated).
    :param prompt_id: the prompt's id from the submission receipt (templated).
    :param babou_conn_id: and the other arguments: as for the base class (connection, ``deferrable``,
        ``poll_interval``, ``max_poll_interval``, ``max_consecutive_failures``, ``timeout``, ``mode``).
    """

    template_fields: Sequence[str] = ("project_id", "chapter_id", "prompt_id")
    trigger_class = BabouPromptTrigger

    def __init__(self, *, project_id: str, chapter_id: str, prompt_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.chapter_id = chapter_id
        self.prompt_id = prompt_id


class BabouExportSensor(_BabouSensor):
    """Wait for a project's export to complete; returns the export (with ``download_url``).

    :param project_id: the exported project (templated).
    :param babou_conn_id: and the other arguments: as for the base class (connection, ``deferrable``,
        ``poll_interval``, ``max_poll_interval``, ``max_consecutive_failures``, ``timeout``, ``mode``).
    """

    template_fields: Sequence[str] = ("project_id",)
    trigger_class = BabouExportTrigger

    def __init__(self, *, project_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id


class BabouAssetSensor(_BabouSensor):
    """Wait for an uploaded asset to be ``ready``; returns the asset.

    :param asset_id: the asset's id from the upload response (templated).
    :param babou_conn_id: and the other arguments: as for the base class (connection, ``deferrable``,
        ``poll_interval``, ``max_poll_interval``, ``max_consecutive_failures``, ``timeout``, ``mode``).
    """

    template_fields: Sequence[str] = ("asset_id",)
    trigger_class = BabouAssetTrigger

    def __init__(self, *, asset_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id
