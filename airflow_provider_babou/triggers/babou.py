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
import dataclasses
import importlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_babou import exceptions as babou_exceptions
from airflow_provider_babou import polling
from airflow_provider_babou.exceptions import (
    BabouError,
    BabouEventError,
    BabouInputError,
    BabouJobFailedError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import DEFAULT_MAX_FAILURES, TRANSIENT_ERRORS, WaitClock

__all__ = [
    "DEFAULT_MIN_DEFERRAL",
    "TRANSIENT_ERRORS",
    "TRIGGER_EVENT_STATUSES",
    "BabouAssetTrigger",
    "BabouEventError",
    "BabouExportTrigger",
    "BabouPollTrigger",
    "BabouPromptTrigger",
    "describe_event",
    "raise_for_event",
    "validate_event",
]

#: Seconds between two progress lines of a wait whose state did not change.
PROGRESS_EVERY = 60.0

#: Default ``min_deferral`` of the waiting operators and sensors, in seconds: how long after the task
#: deferred its trigger may resume it at the earliest. Airflow (3.1 to 3.3 at least) fails a resumed
#: try when the executor's report of the worker that deferred reaches the scheduler after the task
#: was queued again (apache/airflow#67287, #71580, #72716: "finished with state success, but the task
#: instance's state attribute is queued"). Measured on 2 busy cores, that report comes a median
#: 0.8 s after the deferral, 90% within 6 s (benchmarks/executor_race_results.md).
DEFAULT_MIN_DEFERRAL = 10.0

#: The closed set of ``status`` values a Babou trigger event can carry.
TRIGGER_EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})


class BabouPollTrigger(BaseTrigger):
    """Poll one Babou object until it is terminal, the deadline passes or polling breaks.

    Each round is the wait step of :mod:`~airflow_provider_babou.polling`: one GET through
    :meth:`BabouHook.aobserve` (no retry inside: this loop is the retry), judged by the target.
    Subclasses name their :attr:`target_class` and take its ids (as positional arguments too).

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param end_time: absolute wall-clock deadline, UNIX seconds; past it a ``timeout`` event fires.
    :param poll_interval: first delay between two polls, in seconds.
    :param poll_backoff: factor applied to the delay after each poll.
    :param max_poll_interval: the longest delay between two polls, in seconds.
    :param max_consecutive_failures: transient errors (transport, 5xx, 429) tolerated in a row;
        one more ends the wait with an ``error`` event.
    :param not_before: UNIX time before which no event fires (capped at ``end_time``): an outcome
        known sooner is held until then, so the scheduler has taken the executor's report of the
        worker that deferred before the task is queued again (see :data:`DEFAULT_MIN_DEFERRAL`).
        ``None`` (and triggers serialised without it) holds nothing.
    :param target: import path of a ``WaitTarget`` class of this provider, for a wait with no
        trigger class of its own (set by :meth:`for_target`); ``None`` for the three triggers.
    :param expected: ``[earliest, latest]`` UNIX times Babou expects the job done (its receipt's
        ``estimated_time``, see :func:`~.polling.expected_window`): no polls long before, dense
        polls inside. ``None`` (and triggers serialised without it): the usual cadence.

    A wait polls every ``poll_interval`` while the key's budget has spare requests; when it is
    short, the most overdue poll goes first and the cadence above (growing with the wait's age)
    says when a poll is due (see :class:`~.polling.WaitClock`).
    """

    target_class: ClassVar[type[polling.WaitTarget]]

    def __init__(
        self,
        babou_conn_id: str,
        end_time: float,
        *,
        poll_interval: float = 2.0,
        poll_backoff: float = 1.5,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = DEFAULT_MAX_FAILURES,
        not_before: float | None = None,
        target: str | None = None,
        expected: list[float] | tuple[float, float] | None = None,
        **ids: str,
    ) -> None:
        super().__init__()
        self.babou_conn_id = babou_conn_id
        self.end_time = _unix_time("end_time", end_time)
        self.not_before = None if not_before is None else _unix_time("not_before", not_before)
        self.expected = None if expected is None else _window(expected)
        # Checked now, so a bad cadence (NaN, inf, <= 0) fails at defer() on the worker, not later.
        self.policy = polling.PollPolicy(poll_interval, poll_backoff, max_poll_interval)
        self.poll_interval, self.poll_backoff = float(poll_interval), float(poll_backoff)
        self.max_poll_interval = float(max_poll_interval)
        self.max_consecutive_failures = polling.check_max_failures(max_consecutive_failures)
        # The target checks the ids (no '..', control characters...) and keeps them, in order.
        # A new kind of target needs no trigger class: this one takes its import path.
        self.target_path = target
        self.target = (self.target_class if target is None else _target_class(target))(**ids)
        self.__dict__.update(self.target.ids())

    @classmethod
    def for_target(
        cls,
        target: polling.WaitTarget,
        babou_conn_id: str,
        *,
        end_time: float,
        policy: polling.PollPolicy,
        max_failures: int = DEFAULT_MAX_FAILURES,
        not_before: float | None = None,
        expected: tuple[float, float] | None = None,
    ) -> BabouPollTrigger:
        """The trigger that waits for ``target`` (the one way operators and sensors build one): its
        own class for the three documented waits, else this class told the target's import path."""
        known = TRIGGERS.get(type(target))
        extra: dict[str, Any] = dict(target.ids())
        if not known:
            extra["target"] = f"{type(target).__module__}.{type(target).__qualname__}"
        if expected:
            extra["expected"] = expected
        return (known or BabouPollTrigger)(
            babou_conn_id=babou_conn_id,
            **extra,
            end_time=end_time,
            poll_interval=policy.interval,
            poll_backoff=policy.backoff,
            max_poll_interval=policy.max_interval,
            max_consecutive_failures=max_failures,
            not_before=not_before,
        )

    @classmethod
    def id_fields(cls) -> tuple[str, ...]:
        """The names of the id arguments, in constructor order (serialised and copied into events)."""
        return tuple(f.name for f in dataclasses.fields(cls.target_class))

    def _ids(self) -> dict[str, str]:
        return self.target.ids()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the exact keyword arguments of ``__init__`` (primitives only).

        ``not_before`` is left out when unset, so such a trigger serialises as before it existed.
        """
        kwargs: dict[str, Any] = {
            "babou_conn_id": self.babou_conn_id,
            **self._ids(),
            "end_time": self.end_time,
            "poll_interval": self.poll_interval,
            "poll_backoff": self.poll_backoff,
            "max_poll_interval": self.max_poll_interval,
            "max_consecutive_failures": self.max_consecutive_failures,
        }
        if self.not_before is not None:
            kwargs["not_before"] = self.not_before
        if self.target_path is not None:
            kwargs["target"] = self.target_path
        if self.expected is not None:
            kwargs["expected"] = list(self.expected)
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def _make_hook(self) -> BabouHook:
        """Build the hook of one wait; a method so unit tests can give it a scripted transport."""
        return BabouHook(babou_conn_id=self.babou_conn_id)

    def _event(
        self, outcome: polling.Outcome, clock: WaitClock, error_type: str | None = None
    ) -> TriggerEvent:
        """The one event of this wait, from its :class:`~.polling.Outcome`."""
        last = outcome.last
        if error_type is None and outcome.error is not None:
            error_type = type(outcome.error).__name__
        return TriggerEvent(
            {
                "status": outcome.status,
                "message": outcome.message,
                "state": last.state if last else "unknown",
                "elapsed": round(outcome.elapsed or clock.elapsed(), 3),
                "object": (last.payload or None) if last else None,
                **self._ids(),
                **({"error_type": error_type} if error_type else {}),
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done and yield exactly one event (see the module docstring for its shape)."""
        what = self.target.describe()
        clock = WaitClock(self.end_time, self.policy, self.max_consecutive_failures, expected=self.expected)
        progress = polling.Wait(self.target, clock)
        hook = self._make_hook()
        logged: tuple[str, float] | None = None  # the state and time of the last progress line

        def on_poll(result: Any, step: float) -> None:
            nonlocal logged
            if isinstance(result, BabouError):
                self.log.warning("Polling %s failed (%d in a row): %s", what, clock.failures, result)
            state = progress.last.state if progress.last else "unknown"
            # A progress line when the state changes, else once a minute: a triggerer holds
            # a thousand waits, and a line per poll would cost more than the poll.
            if logged is None:  # the first state is no news: the task logged it before deferring
                logged = (state, clock.elapsed())
            elif state != logged[0] or clock.elapsed() - logged[1] >= PROGRESS_EVERY:
                self.log.info("Babou %s is %r; next poll due in %.1f s", what, state, step)
                logged = (state, clock.elapsed())

        self.log.info("Waiting for Babou %s for at most %.0f s", what, clock.remaining())
        try:
            error_type = None
            try:
                outcome = await follow(hook, progress, on_poll=on_poll)
            except Exception as err:
                # A bug or an unparseable answer: an event, so the task fails with a message
                # instead of waiting for a trigger that died.
                self.log.exception("Unexpected error while polling %s", what)
                message = f"Stopped waiting for {what}: {type(err).__name__}: {err}"
                outcome, error_type = polling.Outcome("error", message, progress.last), type(err).__name__
            if outcome.status != "timeout":  # a timeout is at the deadline: nothing to hold
                await self._hold(what, outcome.last.state if outcome.last else "unknown")
            yield self._event(outcome, clock, error_type)
        finally:
            await hook.aclose()

    async def _hold(self, what: str, state: str) -> None:
        """Sleep until ``not_before`` (never past ``end_time``): the task's deferral must settle
        in the scheduler before its resume is queued (see :data:`DEFAULT_MIN_DEFERRAL`)."""
        hold = hold_seconds(self.not_before, self.end_time)
        if hold > 0:
            self.log.info(
                "Babou %s is %r; resuming the task in %.1f s, once its deferral has settled in "
                "Airflow's scheduler (apache/airflow#72716)",
                what,
                state,
                hold,
            )
            await asyncio.sleep(hold)

    async def on_kill(self) -> None:
        """Do nothing remotely: Babou has no cancel endpoint; ``run()`` releases its client itself."""
        self.log.info(
            "Babou has no cancel endpoint; %s keeps running on Babou's side", self.target.describe()
        )


async def follow(
    hook: BabouHook, progress: polling.Wait, *, on_poll: Callable[[Any, float], None] | None = None
) -> polling.Outcome:
    """Poll ``progress``'s target over the triggerer's shared client until its wait ends; return how.

    Each round is one GET through :meth:`BabouHook.aobserve` (no retry inside: this loop is the
    retry), judged by :meth:`polling.Wait.after`. ``on_poll(result, delay)`` hears each round that
    did not end the wait. An error that is not a :class:`BabouError` (a bug) is raised.
    """
    clock = progress.clock
    due = time.monotonic() + clock.first_delay()
    await asyncio.sleep(due - time.monotonic())
    while True:
        result: Any
        try:
            config = await hook.aconfig()
            # Waiting in the key's queue is not a failure: only the deadline bounds it.
            timeout, limit = clock.request_timeout(config.timeout), clock.request_timeout(math.inf)
            result = await hook.aobserve(progress.target, due=due, timeout=timeout, limit=limit)
        except BabouError as err:
            result = err
        step = progress.after(result)
        if isinstance(step, polling.Outcome):
            return step
        if on_poll is not None:
            on_poll(result, step)
        # Due after ``step`` (its claim on a busy key), it asks for a spare request sooner.
        due = time.monotonic() + step
        await asyncio.sleep(min(step, clock.early))


def hold_seconds(not_before: float | None, end_time: float) -> float:
    """Seconds a trigger holds its event: until ``not_before``, never past ``end_time`` (0: none).

    Under ``dag.test()`` nothing is held: the trigger runs in the task's process, with no executor
    and so no race (see :data:`DEFAULT_MIN_DEFERRAL`).
    """
    if not_before is None or runs_in_line():
        return 0.0
    return max(0.0, min(not_before, end_time) - time.time())


def runs_in_line() -> bool:
    """Whether this code runs inside ``dag.test()`` (3.1 to 3.3: the task and its trigger run in the
    test's own process, talking to an in-process supervisor), rather than under a real executor."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover
        return False
    return type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms"


def _window(value: Any) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise BabouInputError(f"expected must be [earliest, latest] UNIX times, got {value!r}")
    low, high = (_unix_time("expected", v) for v in value)
    if high < low:
        raise BabouInputError(f"expected must be [earliest, latest], got {value!r}")
    return low, high


def _unix_time(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BabouInputError(f"{name} must be a finite UNIX time, got {value!r}")
    return float(value)


class BabouPromptTrigger(BabouPollTrigger):
    """Wait for a prompt to finish, polling its chapter (the documented way to follow a prompt).

    :param project_id: the project holding the chapter.
    :param chapter_id: the chapter the prompt was submitted to.
    :param prompt_id: the prompt's id (``int_...``) from the submission receipt.
    """

    target_class = polling.PromptTarget

    def __init__(
        self,
        babou_conn_id: str,
        project_id: str,
        chapter_id: str,
        prompt_id: str,
        end_time: float,
        **poll: Any,
    ) -> None:
        super().__init__(
            babou_conn_id, end_time, project_id=project_id, chapter_id=chapter_id, prompt_id=prompt_id, **poll
        )


class BabouExportTrigger(BabouPollTrigger):
    """Wait for a project's export to complete (``download_url`` set) or fail; ``project_id`` names it."""

    target_class = polling.ExportTarget

    def __init__(self, babou_conn_id: str, project_id: str, end_time: float, **poll: Any) -> None:
        super().__init__(babou_conn_id, end_time, project_id=project_id, **poll)


class BabouAssetTrigger(BabouPollTrigger):
    """Wait for an uploaded asset (``asset_id`` from the upload) to be ``ready``, or to fail."""

    target_class = polling.AssetTarget

    def __init__(self, babou_conn_id: str, asset_id: str, end_time: float, **poll: Any) -> None:
        super().__init__(babou_conn_id, end_time, asset_id=asset_id, **poll)


#: The trigger class of each documented kind of wait (their class paths are in users' databases).
TRIGGERS: dict[type[polling.WaitTarget], type[BabouPollTrigger]] = {
    t.target_class: t for t in (BabouPromptTrigger, BabouExportTrigger, BabouAssetTrigger)
}


def _target_class(path: str) -> type[polling.WaitTarget]:
    module, _, name = path.rpartition(".")
    found = None
    if module == "airflow_provider_babou" or module.startswith("airflow_provider_babou."):  # ours only
        found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, polling.WaitTarget)):
        raise BabouInputError(f"target must name a WaitTarget class of this provider, got {path!r}")
    return found


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for the task log when a task resumes: outcome, state, elapsed, ids, message."""
    ids = ", ".join(
        f"{k}={event[k]}" for k in ("project_id", "chapter_id", "prompt_id", "asset_id") if k in event
    )
    return (
        f"Babou wait ended {str(event.get('status')).upper()} (state {event.get('state')!r}, "
        f"{float(event.get('elapsed') or 0):.1f} s; {ids}): {event.get('message')}"
    )


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
    logging.getLogger(__name__).info("%s", describe_event(event))
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
