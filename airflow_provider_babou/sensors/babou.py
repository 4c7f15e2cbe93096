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

from airflow_provider_babou._compat import AirflowSensorTimeout, RetryAwareResumeMixin, conf
from airflow_provider_babou.exceptions import BabouJobFailedError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import WaitState, asset_state, export_state, prompt_state
from airflow_provider_babou.triggers.babou import (
    TRANSIENT_ERRORS,
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
    """Shared poke/defer logic; subclasses say which object to check and which trigger to defer on.

    A subclass keeps the ids of its object in attributes named as its trigger's ``id_fields``.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: first delay between two checks, in seconds; also the default
        ``poke_interval`` in poke and reschedule modes. The trigger backs off from it up to
        ``max_poll_interval``.
    :param max_poll_interval: the longest delay between two polls of the trigger, in seconds.
    :param max_consecutive_failures: transient errors (transport, 5xx, 429) tolerated in a row
        before the sensor fails.
    :param timeout: the sensor's own timeout in seconds (``BaseSensorOperator``); in deferrable
        mode it becomes the trigger's wall-clock deadline.
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
        max_consecutive_failures: int = 5,
        **kwargs: Any,
    ) -> None:
        # Without an explicit poke_interval, poke at the Babou cadence rather than Airflow's 60 s.
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.babou_conn_id = babou_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_consecutive_failures = max_consecutive_failures
        self._consecutive_failures = 0

    @cached_property
    def hook(self) -> BabouHook:
        """The Babou hook, built on first use (no I/O at DAG parse time) and kept across pokes."""
        return BabouHook(babou_conn_id=self.babou_conn_id)

    def _check(self) -> WaitState:
        """Make one GET and judge the object."""
        raise NotImplementedError

    def _describe(self) -> str:
        """Name the waited-on object with its ids, for messages."""
        raise NotImplementedError

    def _trigger(self, end_time: float) -> BabouPollTrigger:
        """Build the trigger that waits for the same object until ``end_time``."""
        return self.trigger_class(
            babou_conn_id=self.babou_conn_id,
            **{name: getattr(self, name) for name in self.trigger_class.id_fields},
            end_time=end_time,
            poll_interval=float(self.poll_interval),
            max_poll_interval=float(max(self.max_poll_interval, self.poll_interval)),
            max_consecutive_failures=int(self.max_consecutive_failures),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Check the object once: done returns its JSON, a Babou failure raises, else ``False``."""
        try:
            state = self._check()
        except TRANSIENT_ERRORS as err:
            # The hook already retried; one more bad poke should not fail a long wait, many should.
            self._consecutive_failures += 1
            if self._consecutive_failures > self.max_consecutive_failures:
                raise
            self.log.warning(
                "Checking %s failed (%d/%d tolerated in a row): %s",
                self._describe(),
                self._consecutive_failures,
                self.max_consecutive_failures,
                err,
            )
            return False
        self._consecutive_failures = 0
        if not state.done:
            self.log.info("Babou %s is %r", self._describe(), state.state)
            return False
        if state.succeeded:
            self.log.info("Babou %s is %s", self._describe(), state.state)
            return PokeReturnValue(is_done=True, xcom_value=state.payload)
        raise BabouJobFailedError(state.failure(self._describe()))

    def execute(self, context: Context) -> Any:
        """Poke (poke/reschedule modes), or poke once and defer on the trigger (deferrable)."""
        try:
            if not self.deferrable:
                return super().execute(context)
            outcome = self.poke(context)
            if isinstance(outcome, PokeReturnValue):
                return outcome.xcom_value
            self.record_deferring_try(context)
            self.defer(
                # The deadline lives in the trigger as wall-clock time: a framework timeout would
                # skip execute_complete and lose the "what was pending" message.
                trigger=self._trigger(time.time() + self.timeout),
                method_name="execute_complete",
                timeout=None,
            )
        finally:
            self._close_hook()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume from the trigger: return the object on success, raise on any other outcome.

        :raises AirflowSensorTimeout: the deadline passed (the sensor does not retry).
        :raises BabouJobFailedError: Babou reported the job failed.
        :raises BabouError: the wait broke (bad key, unknown id, too many transient errors).
        """
        result = raise_for_event(event, timeout_error=AirflowSensorTimeout)
        self.log.info("%s", (event or {}).get("message", ""))
        return result

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
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: first delay between two checks, in seconds.
    :param max_poll_interval: the longest delay between two polls of the trigger, in seconds.
    :param max_consecutive_failures: transient errors tolerated in a row before the sensor fails.
    """

    template_fields: Sequence[str] = ("project_id", "chapter_id", "prompt_id")
    trigger_class = BabouPromptTrigger

    def __init__(self, *, project_id: str, chapter_id: str, prompt_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.chapter_id = chapter_id
        self.prompt_id = prompt_id

    def _check(self) -> WaitState:
        return prompt_state(self.hook.get_chapter(self.project_id, self.chapter_id), self.prompt_id)

    def _describe(self) -> str:
        return f"prompt {self.prompt_id} (chapter {self.chapter_id}, project {self.project_id})"


class BabouExportSensor(_BabouSensor):
    """Wait for a project's export to complete; returns the export (with ``download_url``).

    :param project_id: the exported project (templated).
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: first delay between two checks, in seconds.
    :param max_poll_interval: the longest delay between two polls of the trigger, in seconds.
    :param max_consecutive_failures: transient errors tolerated in a row before the sensor fails.
    """

    template_fields: Sequence[str] = ("project_id",)
    trigger_class = BabouExportTrigger

    def __init__(self, *, project_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id

    def _check(self) -> WaitState:
        return export_state(self.hook.get_export(self.project_id))

    def _describe(self) -> str:
        return f"export of project {self.project_id}"


class BabouAssetSensor(_BabouSensor):
    """Wait for an uploaded asset to be ``ready``; returns the asset.

    :param asset_id: the asset's id from the upload response (templated).
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: first delay between two checks, in seconds.
    :param max_poll_interval: the longest delay between two polls of the trigger, in seconds.
    :param max_consecutive_failures: transient errors tolerated in a row before the sensor fails.
    """

    template_fields: Sequence[str] = ("asset_id",)
    trigger_class = BabouAssetTrigger

    def __init__(self, *, asset_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id

    def _check(self) -> WaitState:
        return asset_state(self.hook.get_asset(self.asset_id))

    def _describe(self) -> str:
        return f"asset {self.asset_id}"
