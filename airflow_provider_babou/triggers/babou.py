"""Deferrable waits on Babou: one polling loop, three triggers, and the event contract.

A trigger only ever GETs: every write happens in an operator's ``execute()`` on a worker, because
a trigger can be restarted, moved to another triggerer or run twice at once. Each trigger fires
exactly one event whose ``status`` is in :data:`TRIGGER_EVENT_STATUSES`, then returns::

    {"status": "success" | "failed" | "timeout" | "error",
     "message": str, "state": str, "elapsed": float, "object": dict | None,
     ...the ids the trigger was given,
     "error_type": str}   # only on "error": the BabouError class name, so it can be re-raised

Operators and sensors turn that event into a return value or an exception with
:func:`raise_for_event` (which calls :func:`validate_event`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_babou import exceptions as babou_exceptions
from airflow_provider_babou.exceptions import (
    BabouError,
    BabouJobFailedError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import PollPolicy, WaitState, asset_state, export_state, prompt_state

__all__ = [
    "TRANSIENT_ERRORS",
    "TRIGGER_EVENT_STATUSES",
    "BabouAssetTrigger",
    "BabouEventError",
    "BabouExportTrigger",
    "BabouPollTrigger",
    "BabouPromptTrigger",
    "raise_for_event",
    "validate_event",
]

#: The closed set of ``status`` values a Babou trigger event can carry.
TRIGGER_EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})

#: Errors that may go away on their own: a wait tolerates a few of them in a row.
TRANSIENT_ERRORS: tuple[type[BabouError], ...] = (
    BabouTransportError,
    BabouServerError,
    BabouRateLimitError,
)


class BabouEventError(BabouError):
    """A task resumed with a missing or malformed trigger event (not something Babou said)."""


class BabouPollTrigger(BaseTrigger):
    """Poll one Babou object with a GET until it is terminal, the deadline passes or polling breaks.

    Subclasses say which ids they carry (:attr:`id_fields`, set as attributes before calling this
    ``__init__``), which GET to make (:meth:`_observe`) and how to name the object in messages
    (:meth:`_describe`); the poll kwargs, the serialisation, the loop, the poll cadence, the error
    tolerance and the event shape live here only.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param end_time: absolute wall-clock deadline, UNIX seconds; past it a ``timeout`` event fires.
    :param poll_interval: first delay between two polls, in seconds.
    :param poll_backoff: factor applied to the delay after each poll.
    :param max_poll_interval: the longest delay between two polls, in seconds.
    :param max_consecutive_failures: transient errors (transport, 5xx, 429) tolerated in a row;
        one more ends the wait with an ``error`` event.
    """

    #: What is waited on, for logs and messages ("prompt", "export", "asset").
    kind: ClassVar[str] = "object"
    #: The names of the id arguments, in constructor order (serialised and copied into events).
    id_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        babou_conn_id: str,
        end_time: float,
        poll_interval: float = 2.0,
        poll_backoff: float = 1.5,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = 5,
    ) -> None:
        super().__init__()
        self.babou_conn_id = babou_conn_id
        self.end_time = float(end_time)
        self.poll_interval = float(poll_interval)
        self.poll_backoff = float(poll_backoff)
        self.max_poll_interval = float(max_poll_interval)
        self.max_consecutive_failures = int(max_consecutive_failures)
        if self.max_consecutive_failures < 0:
            raise ValueError(f"max_consecutive_failures must be >= 0, got {max_consecutive_failures}")
        # Built now so a bad cadence fails at defer() time on the worker, not later in the triggerer.
        self.policy = PollPolicy(self.poll_interval, self.poll_backoff, self.max_poll_interval)

    # -- what subclasses provide -------------------------------------------------------------

    def _describe(self) -> str:
        """Name the waited-on object with its ids, for messages."""
        raise NotImplementedError

    async def _observe(self, hook: BabouHook) -> WaitState:
        """Make the one GET and judge the answer."""
        raise NotImplementedError

    # -- serialisation -----------------------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        """Return the ids of the waited-on object, in constructor order (also copied into events)."""
        return {name: getattr(self, name) for name in self.id_fields}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the exact keyword arguments of ``__init__`` (primitives only)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "babou_conn_id": self.babou_conn_id,
                **self._ids(),
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "poll_backoff": self.poll_backoff,
                "max_poll_interval": self.max_poll_interval,
                "max_consecutive_failures": self.max_consecutive_failures,
            },
        )

    # -- the loop ----------------------------------------------------------------------------

    def _make_hook(self) -> BabouHook:
        """Build the hook for one wait; a method so tests can substitute a scripted hook."""
        return BabouHook(babou_conn_id=self.babou_conn_id)

    def _event(
        self, status: str, message: str, state: str, elapsed: float, obj: dict[str, Any] | None, **extra: Any
    ) -> TriggerEvent:
        payload: dict[str, Any] = {
            "status": status,
            "message": message,
            "state": state,
            "elapsed": round(elapsed, 3),
            "object": obj,
            **self._ids(),
            **extra,
        }
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done and yield exactly one event (see the module docstring for its shape)."""
        started = time.monotonic()
        delays = self.policy.delays()
        failures = 0
        last_state = "unknown"
        last_object: dict[str, Any] | None = None
        # One hook, thus one HTTP client and its keep-alive connection, for the whole wait: a
        # triggerer hosts many waits and a new connection per poll would multiply TLS handshakes.
        hook = self._make_hook()
        self.log.info(
            "Waiting for Babou %s for at most %.0f s more", self._describe(), self.end_time - time.time()
        )
        try:
            while True:
                delay = next(delays)
                try:
                    observed = await self._observe(hook)
                except TRANSIENT_ERRORS as err:
                    failures += 1
                    if failures > self.max_consecutive_failures:
                        yield self._event(
                            "error",
                            f"Gave up waiting for {self._describe()} after {failures} failed polls "
                            f"in a row (last state {last_state!r}): {err}",
                            last_state,
                            time.monotonic() - started,
                            last_object,
                            error_type=type(err).__name__,
                        )
                        return
                    retry_after = getattr(err, "retry_after", None)
                    if retry_after:
                        # Babou said when to come back; polling earlier would only earn another 429.
                        delay = max(delay, float(retry_after))
                    self.log.warning(
                        "Babou %s poll failed (%d/%d tolerated in a row), retrying in %.1f s: %s",
                        self.kind,
                        failures,
                        self.max_consecutive_failures,
                        delay,
                        err,
                    )
                except BabouError as err:
                    # Auth, not found, validation...: polling again cannot fix these.
                    yield self._event(
                        "error",
                        f"Stopped waiting for {self._describe()}: {err}",
                        last_state,
                        time.monotonic() - started,
                        last_object,
                        error_type=type(err).__name__,
                    )
                    return
                except Exception as err:
                    # A bug or an unparseable answer: report it as an event so the task fails with
                    # a message instead of the trigger dying and the task waiting for nothing.
                    self.log.exception("Unexpected error while polling %s", self._describe())
                    yield self._event(
                        "error",
                        f"Stopped waiting for {self._describe()}: {type(err).__name__}: {err}",
                        last_state,
                        time.monotonic() - started,
                        last_object,
                        error_type=type(err).__name__,
                    )
                    return
                else:
                    failures = 0
                    last_state = observed.state
                    last_object = observed.payload or None
                    elapsed = time.monotonic() - started
                    if observed.done:
                        yield self._outcome(observed, elapsed)
                        return

                remaining = self.end_time - time.time()
                elapsed = time.monotonic() - started
                if remaining <= 0:
                    yield self._event(
                        "timeout",
                        f"Timed out after {elapsed:.1f} s waiting for {self._describe()}: "
                        f"still {last_state!r} at the deadline",
                        last_state,
                        elapsed,
                        last_object,
                    )
                    return
                # Never sleep past the deadline: the last poll happens right at it.
                sleep_for = min(delay, remaining)
                self.log.info(
                    "Babou %s is %r after %.1f s; next poll in %.1f s",
                    self._describe(),
                    last_state,
                    elapsed,
                    sleep_for,
                )
                await asyncio.sleep(sleep_for)
        finally:
            await hook.aclose()

    def _outcome(self, observed: WaitState, elapsed: float) -> TriggerEvent:
        if observed.succeeded:
            message = f"{self._describe()} is {observed.state} after {elapsed:.1f} s"
            if observed.message:
                message += f": {observed.message}"
            status = "success"
        else:
            message = observed.failure(self._describe())
            status = "failed"
        return self._event(status, message, observed.state, elapsed, observed.payload or None)

    async def on_kill(self) -> None:
        """Do nothing remotely: Babou has no cancel endpoint; ``run()`` closes its client itself."""
        self.log.info("Babou has no cancel endpoint; %s keeps running on Babou's side", self._describe())


class BabouPromptTrigger(BabouPollTrigger):
    """Wait for a prompt to finish, polling its chapter (the documented way to follow a prompt).

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param project_id: the project holding the chapter.
    :param chapter_id: the chapter the prompt was submitted to.
    :param prompt_id: the prompt's id (``int_...``) from the submission receipt.
    :param end_time: and the poll arguments: as for :class:`BabouPollTrigger`.
    """

    kind = "prompt"
    id_fields = ("project_id", "chapter_id", "prompt_id")

    def __init__(
        self,
        babou_conn_id: str,
        project_id: str,
        chapter_id: str,
        prompt_id: str,
        end_time: float,
        poll_interval: float = 2.0,
        poll_backoff: float = 1.5,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = 5,
    ) -> None:
        self.project_id = project_id
        self.chapter_id = chapter_id
        self.prompt_id = prompt_id
        super().__init__(
            babou_conn_id, end_time, poll_interval, poll_backoff, max_poll_interval, max_consecutive_failures
        )

    def _describe(self) -> str:
        return f"prompt {self.prompt_id} (chapter {self.chapter_id}, project {self.project_id})"

    async def _observe(self, hook: BabouHook) -> WaitState:
        chapter = await hook.aget_chapter(self.project_id, self.chapter_id)
        return prompt_state(chapter, self.prompt_id)


class BabouExportTrigger(BabouPollTrigger):
    """Wait for a project's export to complete (``download_url`` set) or fail.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param project_id: the exported project (exports are addressed by project).
    :param end_time: and the poll arguments: as for :class:`BabouPollTrigger`.
    """

    kind = "export"
    id_fields = ("project_id",)

    def __init__(
        self,
        babou_conn_id: str,
        project_id: str,
        end_time: float,
        poll_interval: float = 2.0,
        poll_backoff: float = 1.5,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = 5,
    ) -> None:
        self.project_id = project_id
        super().__init__(
            babou_conn_id, end_time, poll_interval, poll_backoff, max_poll_interval, max_consecutive_failures
        )

    def _describe(self) -> str:
        return f"export of project {self.project_id}"

    async def _observe(self, hook: BabouHook) -> WaitState:
        return export_state(await hook.aget_export(self.project_id))


class BabouAssetTrigger(BabouPollTrigger):
    """Wait for an uploaded asset to be processed (``ready``) or to fail.

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param asset_id: the asset's id (``ast_...``) from the upload response.
    :param end_time: and the poll arguments: as for :class:`BabouPollTrigger`.
    """

    kind = "asset"
    id_fields = ("asset_id",)

    def __init__(
        self,
        babou_conn_id: str,
        asset_id: str,
        end_time: float,
        poll_interval: float = 2.0,
        poll_backoff: float = 1.5,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = 5,
    ) -> None:
        self.asset_id = asset_id
        super().__init__(
            babou_conn_id, end_time, poll_interval, poll_backoff, max_poll_interval, max_consecutive_failures
        )

    def _describe(self) -> str:
        return f"asset {self.asset_id}"

    async def _observe(self, hook: BabouHook) -> WaitState:
        return asset_state(await hook.aget_asset(self.asset_id))


def validate_event(event: Any) -> dict[str, Any]:
    """Check that a task resumed with a well-formed Babou trigger event, and return it.

    :param event: what ``execute_complete`` received as ``event``.
    :raises BabouEventError: the event is missing, not a dict, or its ``status`` is unknown.
    """
    if event is None:
        raise BabouEventError(
            "The task resumed without a trigger event; the Babou trigger did not report an outcome",
            hint="clear the task to wait again",
        )
    if not isinstance(event, dict):
        raise BabouEventError(f"The Babou trigger event must be a dict, got {type(event).__name__}")
    status = event.get("status")
    if status not in TRIGGER_EVENT_STATUSES:
        raise BabouEventError(
            f"The Babou trigger event has an unknown status {status!r}; "
            f"expected one of {sorted(TRIGGER_EVENT_STATUSES)}"
        )
    return event


def raise_for_event(event: Any, *, timeout_error: type[Exception] = BabouWaitTimeoutError) -> dict[str, Any]:
    """Turn a trigger event into the waited-on object, or raise what went wrong.

    Operators keep the default ``timeout_error``; sensors pass ``AirflowSensorTimeout`` so a
    timed-out sensor fails without retrying, as Airflow sensors do.

    :param event: what ``execute_complete`` received as ``event``.
    :param timeout_error: the exception class raised for a ``timeout`` event (built with the message).
    :return: on ``success``, the object (``model_dump(mode="json")``: a chapter, export or asset).
    :raises BabouEventError: the event is missing or malformed.
    :raises BabouJobFailedError: ``failed``: Babou reported the job failed; the text is Babou's reason.
    :raises BabouError: ``error``: the wait broke; the subclass named in ``error_type`` when known.
    """
    event = validate_event(event)
    status = event["status"]
    message = str(event.get("message") or f"Babou wait ended with status {status!r}")
    if status == "success":
        obj = event.get("object")
        return obj if isinstance(obj, dict) else {}
    if status == "failed":
        raise BabouJobFailedError(message)
    if status == "timeout":
        raise timeout_error(message)
    error_class = getattr(babou_exceptions, str(event.get("error_type")), None)
    if not (isinstance(error_class, type) and issubclass(error_class, BabouError)):
        error_class = BabouError
    raise error_class(message)
