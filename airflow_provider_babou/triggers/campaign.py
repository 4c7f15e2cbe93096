"""One trigger for every wait of a campaign task: all its rows' prompts and exports, polled at once.

Each wait is the wait step of :mod:`~airflow_provider_babou.polling`, as in
:class:`~.babou.BabouPollTrigger`, over the triggerer's shared client and the key's budget (most
overdue first). The trigger fires **one** event when the worker has work to do, in batches: once
every wait has ended, or :attr:`batch_window` seconds after the first one ended, whichever comes
first. So a slow row holds the others back by at most that window, and the task resumes about once
per window, however many rows it has. Its event::

    {"status": "success", "message": str, "pending": int, "carry": dict,
     "outcomes": {"prompts:<project_id>" | "export:<project_id>": [status, message, download_url]}}

An outcome's ``status`` is a wait's (``success``, ``failed``, ``timeout``, ``error``); waits still
running when it fires are left out (the task defers on them again). A bug in the trigger ends it with
an ``error`` event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_babou import polling
from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import DEFAULT_MAX_FAILURES, WaitClock
from airflow_provider_babou.triggers.babou import PROGRESS_EVERY, follow, hold_seconds

#: The kinds of wait a campaign row has, by the name its key starts with.
KINDS: dict[str, type[polling.WaitTarget]] = {
    "prompts": polling.ChaptersTarget,
    "export": polling.ExportTarget,
}
#: Default seconds from the first ended wait to the event (see the module docstring).
DEFAULT_BATCH_WINDOW = 60.0


class BabouCampaignTrigger(BaseTrigger):
    """Poll many rows' prompts (``["prompts", project_id]``) and exports (``["export", project_id]``).

    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    :param waits: ``[kind, project_id]`` pairs, kind ``prompts`` or ``export``.
    :param end_time: UNIX time past which a wait ends ``timeout``.
    :param batch_window: seconds from the first ended wait to the event.
    :param not_before: UNIX time before which no event fires (Airflow's executor race).
    :param carry: small JSON values handed back in the event as ``carry`` (``dag.test()`` resumes a
        task with the event alone, without the deferral's kwargs).
    """

    def __init__(
        self,
        babou_conn_id: str,
        waits: list[list[str]],
        end_time: float,
        *,
        batch_window: float = DEFAULT_BATCH_WINDOW,
        poll_interval: float = 2.0,
        poll_backoff: float = 1.5,
        max_poll_interval: float = 30.0,
        max_consecutive_failures: int = DEFAULT_MAX_FAILURES,
        not_before: float | None = None,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.carry = dict(carry or {})
        self.babou_conn_id, self.waits = babou_conn_id, [list(w) for w in waits]
        self.end_time = polling.check_seconds("end_time", end_time)
        self.batch_window = polling.check_seconds("batch_window", batch_window, allow_zero=True)
        self.not_before = None if not_before is None else polling.check_seconds("not_before", not_before)
        self.policy = polling.PollPolicy(poll_interval, poll_backoff, max_poll_interval)
        self.max_consecutive_failures = polling.check_max_failures(max_consecutive_failures)
        self.targets: dict[str, polling.WaitTarget] = {}
        for wait in self.waits:
            if len(wait) != 2 or wait[0] not in KINDS:
                raise BabouInputError(
                    f"a campaign wait is [kind, project_id] with kind in {sorted(KINDS)}, got {wait!r}"
                )
            self.targets[f"{wait[0]}:{wait[1]}"] = KINDS[wait[0]](project_id=wait[1])  # type: ignore[call-arg]

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The classpath and the exact keyword arguments of ``__init__`` (primitives only)."""
        kwargs: dict[str, Any] = {
            "babou_conn_id": self.babou_conn_id,
            "waits": self.waits,
            "end_time": self.end_time,
            "batch_window": self.batch_window,
            "poll_interval": self.policy.interval,
            "poll_backoff": self.policy.backoff,
            "max_poll_interval": self.policy.max_interval,
            "max_consecutive_failures": self.max_consecutive_failures,
        }
        if self.not_before is not None:
            kwargs["not_before"] = self.not_before
        if self.carry:
            kwargs["carry"] = self.carry
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def _make_hook(self) -> BabouHook:
        return BabouHook(babou_conn_id=self.babou_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Follow every wait; fire one event per batch (see the module docstring)."""
        hook = self._make_hook()
        tasks = {asyncio.create_task(self._follow(hook, t)): name for name, t in self.targets.items()}
        outcomes: dict[str, list[Any]] = {}
        first_end: float | None = None
        logged = time.monotonic()
        self.log.info(
            "Waiting on %d Babou campaign waits for at most %.0f s", len(tasks), self._clock().remaining()
        )
        try:
            pending = set(tasks)
            while pending:
                timeout = PROGRESS_EVERY
                if first_end is not None:
                    timeout = min(timeout, max(0.0, first_end + self.batch_window - time.monotonic()))
                done, pending = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    outcome = task.result()
                    last = outcome.last.payload if outcome.last else {}
                    # A success needs no words: the event of a thousand rows stays small.
                    message = None if outcome.status == "success" else outcome.message
                    outcomes[tasks[task]] = [outcome.status, message, last.get("download_url")]
                    first_end = first_end or time.monotonic()
                if time.monotonic() - logged >= PROGRESS_EVERY:
                    self.log.info("Babou campaign waits: %d ended, %d running", len(outcomes), len(pending))
                    logged = time.monotonic()
                if first_end is not None and time.monotonic() - first_end >= self.batch_window:
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await hook.aclose()
        await self._hold()
        running = len(self.targets) - len(outcomes)
        message = f"{len(outcomes)} of {len(self.targets)} campaign waits ended; {running} still running"
        event = {"status": "success", "message": message, "pending": running, "outcomes": outcomes}
        yield TriggerEvent({**event, "carry": self.carry})

    async def _follow(self, hook: BabouHook, target: polling.WaitTarget) -> polling.Outcome:
        progress = polling.Wait(target, self._clock())
        try:
            return await follow(hook, progress)
        except Exception as err:  # a bug or an unreadable answer: this wait ends, the others go on
            self.log.exception("Unexpected error while polling %s", target.describe())
            message = f"Stopped waiting for {target.describe()}: {type(err).__name__}: {err}"
            return polling.Outcome("error", message, progress.last)

    def _clock(self) -> WaitClock:
        return WaitClock(self.end_time, self.policy, self.max_consecutive_failures)

    async def _hold(self) -> None:
        """No event before ``not_before`` (see :data:`~.babou.DEFAULT_MIN_DEFERRAL`)."""
        await asyncio.sleep(hold_seconds(self.not_before, self.end_time))
