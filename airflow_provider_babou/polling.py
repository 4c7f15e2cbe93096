"""One definition of a wait step, used by the hook's blocking waits, the sensors and the triggers.

A wait step is *observe* (one GET, described by a :class:`WaitTarget`) and *judge* (the target's
:meth:`~WaitTarget.judge`: done, failed or still running, as a :class:`WaitState`). Between steps a
:class:`WaitClock` decides how long to sleep, how many transient errors in a row to tolerate and
when the deadline has passed: the same rules whether the loop runs in a worker or the triggerer.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_provider_babou import endpoints
from airflow_provider_babou.exceptions import (
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.models import (
    Asset,
    BabouModel,
    Chapter,
    ChapterList,
    ChapterStatus,
    Export,
    ExportStatus,
)
from airflow_provider_babou.validation import check_id

log = logging.getLogger(__name__)

#: Transient errors in a row a wait tolerates (blocking, sensor or trigger); one more ends it.
DEFAULT_MAX_FAILURES = 10

#: The error classes that can be transient (kept for imports; the rule is ``BabouError.transient``).
TRANSIENT_ERRORS: tuple[type[BabouError], ...] = (BabouTransportError, BabouServerError, BabouRateLimitError)


def check_seconds(label: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is a finite, positive number of seconds (NaN and inf are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BabouInputError(f"{label} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise BabouInputError(f"{label} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PollPolicy:
    """Polling cadence: the docs advise starting at 2 s; we back off x1.5 to 30 s.

    :param interval: first delay between two polls, in seconds.
    :param backoff: factor applied to the delay after each poll.
    :param max_interval: the longest delay between two polls.
    """

    interval: float = 2.0
    backoff: float = 1.5
    max_interval: float = 30.0

    def __post_init__(self) -> None:
        check_seconds("poll interval", self.interval)
        check_seconds("max poll interval", self.max_interval)
        if isinstance(self.backoff, bool) or not math.isfinite(self.backoff) or self.backoff < 1:
            raise BabouInputError(f"poll backoff must be a finite number >= 1, got {self.backoff!r}")
        if self.max_interval < self.interval:
            raise BabouInputError(
                f"max poll interval ({self.max_interval}) must be >= the poll interval ({self.interval})"
            )

    def delays(self) -> Iterator[float]:
        """Yield the successive delays between polls, forever."""
        delay = self.interval
        while True:
            yield delay
            delay = min(delay * self.backoff, self.max_interval)


_ESTIMATE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:(?:-|\u2013|to)\s*(\d+(?:\.\d+)?)\s*)?(second|sec|s|minute|min|m|hour|hr|h)",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_estimate(text: object) -> tuple[float, float] | None:
    """Babou's ``estimated_time`` (``"30-90 seconds"``, ``"2-5 minutes"``) as ``(low, high)`` seconds;
    ``None`` when it reads as neither (it is free text: a wait then keeps its usual cadence)."""
    found = _ESTIMATE.search(text) if isinstance(text, str) else None
    if found is None:
        return None
    unit = _UNIT_SECONDS[found[3][0].lower()]
    low = float(found[1]) * unit
    high = float(found[2]) * unit if found[2] else low
    return (low, high) if high >= low else None


def expected_window(estimate: object, started: float) -> tuple[float, float] | None:
    """When a job started at ``started`` (UNIX seconds) should be done, by Babou's ``estimate``."""
    span = parse_estimate(estimate)
    return None if span is None else (started + span[0], started + span[1])


@dataclass(frozen=True)
class WaitState:
    """One judged observation: ``done``/``succeeded``, the state word, Babou's message, the JSON."""

    done: bool
    succeeded: bool
    state: str
    message: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def failure(self, what: str) -> str:
        """Say that ``what`` ended in this state, and Babou's reason."""
        return f"{what} ended {self.state!r}: {self.message or 'Babou gave no reason'}"


def _by_status(status: ExportStatus | Any, message: str | None, obj: BabouModel) -> WaitState:
    return WaitState(
        status.is_terminal, status.is_success, status.value, message, obj.model_dump(mode="json")
    )


def prompt_state(chapter: Chapter, prompt_id: str) -> WaitState:
    """Judge a prompt from its chapter (the docs' way to poll a prompt); payload is the prompt only."""
    prompt = chapter.find_prompt(prompt_id)
    if prompt is None:  # a wrong id would otherwise be polled until the deadline
        message = f"prompt {prompt_id} is not on chapter {chapter.id}: check the ids"
        return WaitState(True, False, "missing", message)
    status = chapter.prompt_status(prompt_id)
    # The prompt without its content: events and logs stay short, and the text is the user's own.
    payload = {**prompt.model_dump(mode="json", exclude={"content"}), "status": status.value}
    return WaitState(status.is_terminal, status.is_success, status.value, prompt.result, payload)


def chapters_state(chapters: ChapterList) -> WaitState:
    """Judge every prompt of a project at once from its chapter list: done when no chapter is
    processing, failed when one is in ``error`` or has no prompt; payload: each chapter's status."""
    states = [{"id": c.id, "name": c.name, "status": c.status and c.status.value} for c in chapters.chapters]
    payload: dict[str, Any] = {"chapters": states}
    if not chapters.chapters:
        return WaitState(True, False, "missing", "the project has no chapters", payload)
    # A status never seen (or none at all) is not terminal: keep polling rather than guess.
    if any(c.status in (ChapterStatus.PROCESSING, ChapterStatus.UNKNOWN, None) for c in chapters.chapters):
        return WaitState(False, False, "processing", None, payload)
    failed = [c.name for c in chapters.chapters if c.status is ChapterStatus.ERROR or c.prompt_count == 0]
    if failed:
        message = f"chapters {failed} have no completed latest prompt (status error, or no prompt)"
        return WaitState(True, False, "error", message, payload)
    return WaitState(True, True, "ready", None, payload)


def export_state(export: Export) -> WaitState:
    """Judge a project's export from Get Export Status."""
    return _by_status(export.status, export.error, export)


def asset_state(asset: Asset) -> WaitState:
    """Judge an asset: ``ready`` succeeds, ``error``/``failed`` fail."""
    return _by_status(asset.state, None, asset)


@dataclass(frozen=True)
class WaitTarget:
    """What a wait observes: the GET to make (:attr:`path`, :attr:`model`) and how to judge the answer.

    Subclasses are frozen dataclasses of their ids, with templates filled from those ids.
    """

    model: ClassVar[type[BabouModel]] = BabouModel
    path_template: ClassVar[str] = ""
    describe_template: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, value in self.ids().items():
            check_id(name.removesuffix("_id"), value)

    def ids(self) -> dict[str, str]:
        """The ids, as constructor keywords."""
        return dict(self.__dict__)

    @property
    def path(self) -> str:
        """The path of the GET below the base URL."""
        return self.path_template.format(**self.ids())

    def describe(self) -> str:
        """Name the object with its ids, for messages."""
        return self.describe_template.format(**self.ids())

    def judge(self, obj: Any) -> WaitState:
        """Judge one parsed answer."""
        raise NotImplementedError


@dataclass(frozen=True)
class PromptTarget(WaitTarget):
    """A prompt, followed through its chapter."""

    project_id: str
    chapter_id: str
    prompt_id: str
    model: ClassVar[type[BabouModel]] = Chapter
    path_template: ClassVar[str] = endpoints.CHAPTER
    describe_template: ClassVar[str] = "prompt {prompt_id} (chapter {chapter_id}, project {project_id})"

    def judge(self, obj: Any) -> WaitState:
        return prompt_state(obj, self.prompt_id)


@dataclass(frozen=True)
class ExportTarget(WaitTarget):
    """A project's export (exports are addressed by project)."""

    project_id: str
    model: ClassVar[type[BabouModel]] = Export
    path_template: ClassVar[str] = endpoints.EXPORT
    describe_template: ClassVar[str] = "export of project {project_id}"

    def judge(self, obj: Any) -> WaitState:
        return export_state(obj)


@dataclass(frozen=True)
class ChaptersTarget(WaitTarget):
    """Every prompt of a project, followed through its chapter list: one GET for all its chapters
    (a campaign's row waits on its prompts with half the requests of one wait per chapter)."""

    project_id: str
    model: ClassVar[type[BabouModel]] = ChapterList
    path_template: ClassVar[str] = endpoints.CHAPTERS
    describe_template: ClassVar[str] = "prompts of project {project_id}"

    def judge(self, obj: Any) -> WaitState:
        return chapters_state(obj)


@dataclass(frozen=True)
class AssetTarget(WaitTarget):
    """An uploaded asset."""

    asset_id: str
    model: ClassVar[type[BabouModel]] = Asset
    path_template: ClassVar[str] = endpoints.ASSET
    describe_template: ClassVar[str] = "asset {asset_id}"

    def judge(self, obj: Any) -> WaitState:
        return asset_state(obj)


class WaitClock:
    """The pacing of one wait: poll delays, the transient-error budget and a wall-clock deadline.

    Each step gives two delays. The one returned is when the next poll is *due*: the user's
    :class:`PollPolicy`, growing with the wait's age, is its claim on a busy key's budget (a
    trigger's gate serves the most overdue first). :attr:`early` is how soon it may poll when the
    key has spare requests: ``policy.interval``, never sooner. A blocking wait has no shared
    budget to spend and sleeps the due delay.

    :param end_time: absolute deadline, UNIX seconds (wall clock: it survives a triggerer restart).
    :param policy: the poll cadence.
    :param max_failures: transient errors tolerated in a row; one more is raised.
    :param expected: when Babou expects the job done, ``(earliest, latest)`` UNIX seconds (from a
        receipt's ``estimated_time``, see :func:`expected_window`): before the window a wait polls
        at most every ``max_interval``, inside it every ``interval``, after it as without one.
    """

    def __init__(
        self,
        end_time: float,
        policy: PollPolicy,
        max_failures: int,
        *,
        expected: tuple[float, float] | None = None,
    ) -> None:
        self.end_time = end_time
        self.failures = 0
        self.max_failures = max_failures
        self.policy = policy
        self.expected = expected
        self._delays = policy.delays()
        self.started = time.monotonic()
        #: Seconds after the last poll from which the next may take a spare request of the key.
        self.early = policy.interval

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.end_time - time.time()

    def elapsed(self) -> float:
        """Seconds since the wait started."""
        return time.monotonic() - self.started

    def first_delay(self) -> float:
        """The delay before a deferred wait's first poll: its operator or sensor has just looked."""
        before = self._before_window()
        return self._cut(self.policy.interval if before is None else max(self.policy.interval, before))

    def _before_window(self) -> float | None:
        """The delay before a poll while Babou's window has not opened (``None`` once it has)."""
        if self.expected is None or time.time() >= self.expected[0]:
            return None
        # Not long before it; but an estimate can be wrong, so at the user's slowest pace until then.
        return min(self.policy.max_interval, self.expected[0] - time.time())

    def observed(self) -> float:
        """Record a good observation; return the delay before the next one is due, cut to the deadline.

        The due delay grows with the wait's age as well as with each poll (at least ``backoff - 1``
        times the time waited so far, or since Babou's window closed), so on a busy key the
        youngest waits are polled first and old ones do not crowd them; inside Babou's window it
        stays at ``interval``. A wait may poll sooner (:attr:`early`) when the key has room.
        """
        self.failures = 0
        before = self._before_window()
        if before is not None:
            self.early = delay = before
        elif self.expected is not None and time.time() <= self.expected[1]:
            self.early = delay = self.policy.interval  # the job is due: look often
        else:
            since = self.elapsed()
            if self.expected is not None:
                since = min(since, time.time() - self.expected[1])
            by_age = min(self.policy.max_interval, (self.policy.backoff - 1) * since)
            delay = max(next(self._delays), by_age)
            self.early = self.policy.interval
        self.early = self._cut(min(self.early, delay))
        return self._cut(delay)

    def failed(self, error: BabouError) -> float:
        """Record a failed observation: re-raise it unless transient and tolerated; else the delay.

        A 429's ``Retry-After`` lengthens the delay: polling earlier would only earn another 429.
        """
        if not error.transient:
            raise error
        # A 429 is the key's budget speaking, not Babou failing: it neither counts nor resets the
        # streak, and only the deadline bounds it (many waits on a busy key would otherwise give up).
        if not isinstance(error, BabouRateLimitError):
            self.failures += 1
            if self.failures > self.max_failures:
                raise error
        # A wait's retry is its next poll, on the wait's own cadence; a Retry-After pushes it back.
        retry_after = getattr(error, "retry_after", None)
        self.early = delay = self._cut(max(next(self._delays), retry_after or 0.0))  # never sooner
        return delay

    def _cut(self, delay: float) -> float:
        return max(0.0, min(delay, self.remaining()))

    def request_timeout(self, default: float) -> float:
        """Timeout of the next GET: never much past the deadline (a floor lets the last poll answer)."""
        return max(0.5, min(default, self.remaining() + 0.5))


def check_max_failures(value: object) -> int:
    """Return ``value`` if it is a non-negative whole number of tolerated failures."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BabouInputError(f"max_consecutive_failures must be a whole number >= 0, got {value!r}")
    return value


#: Seconds a blocking wait keeps for its last poll: it polls this long before its deadline, not at it
#: (a quarter of a wait shorter than four times this).
LAST_POLL = 1.0


@dataclass(frozen=True)
class Outcome:
    """How a wait ended, in the words of a trigger event's ``status`` (``success``, ``failed``,
    ``timeout`` or ``error``), with its one message; blocking waits and triggers read the same."""

    status: str
    message: str
    last: WaitState | None = None
    obj: Any = None
    error: BabouError | None = None
    #: Seconds from the start of the wait to this outcome (a held event keeps when Babou said so).
    elapsed: float = 0.0

    def result(self) -> Any:
        """The waited-on object on success; else raise what the event would say."""
        if self.status == "success":
            return self.obj
        if self.status == "failed":
            assert self.last is not None
            raise BabouJobFailedError(self.message, code=self.last.state.upper())
        if self.status == "timeout":
            raise BabouWaitTimeoutError(self.message, hint="wait longer, or check it in the Babou dashboard")
        assert self.error is not None
        raise self.error


class Wait:
    """The progress of one wait: hand it each poll's result (the object, or the :class:`BabouError`
    the poll raised); it answers the delay before the next poll, or the :class:`Outcome`.

    :param margin: seconds before the deadline after which no poll starts (a blocking wait's last
        poll must answer by the deadline; a trigger polls up to it).
    """

    def __init__(self, target: WaitTarget, clock: WaitClock, *, margin: float = 0.0) -> None:
        self.target, self.clock, self.margin = target, clock, margin
        self.last: WaitState | None = None

    def after(self, result: Any) -> Outcome | float:
        """Judge one poll's result: the outcome when the wait is over, else the next delay."""
        what, clock = self.target.describe(), self.clock
        if isinstance(result, BabouError):
            try:
                delay = clock.failed(result)
            except BabouError:
                streak = f" after {clock.failures} failed polls in a row" if clock.failures > 1 else ""
                message = f"Stopped waiting for {what}{streak}: {result}"
                return Outcome("error", message, self.last, error=result, elapsed=clock.elapsed())
        else:
            self.last = state = self.target.judge(result)
            if state.done and state.succeeded:
                message = f"{what} is {state.state} after {clock.elapsed():.1f} s"
                message += f": {state.message}" if state.message else ""
                return Outcome("success", message, state, result, elapsed=clock.elapsed())
            if state.done:
                return Outcome("failed", state.failure(what), state, result, elapsed=clock.elapsed())
            delay = clock.observed()
        left = clock.remaining() - self.margin
        if left <= 0:
            state_word = self.last.state if self.last else "unknown"
            message = f"Timed out after {clock.elapsed():.1f} s waiting for {what}: still {state_word!r}"
            return Outcome("timeout", message, self.last, elapsed=clock.elapsed())
        return min(delay, left)


def look(
    observe: Callable[[float], Any], target: WaitTarget, clock: WaitClock, timeout: float
) -> tuple[Any, WaitState]:
    """One blocking wait step (a sensor's poke): ``observe(seconds)`` until it answers, and judge it;
    a transient error is tried again in place while ``clock`` tolerates it, else raised."""
    progress = Wait(target, clock, margin=LAST_POLL)
    while True:
        try:
            obj = observe(max(0.01, min(timeout, clock.remaining())))
        except BabouError as err:
            delay = progress.after(err)
            if isinstance(delay, Outcome):
                raise err from None
            _failed(target, clock, err)
            time.sleep(delay)
            continue
        return obj, target.judge(obj)


def wait(observe: Callable[[float], Any], target: WaitTarget, clock: WaitClock, timeout: float) -> Any:
    """Poll ``target`` until done: return the object, or raise its failure, the error or a timeout.

    Never past the deadline: the last poll starts :data:`LAST_POLL` seconds before it, with that
    time to answer; each GET gets ``timeout`` seconds at most.
    """
    # A short wait (a task's poll before deferring) keeps a quarter of its time for the last poll.
    progress = Wait(target, clock, margin=min(LAST_POLL, clock.remaining() / 4))
    while True:
        try:
            result = observe(max(0.01, min(timeout, clock.remaining())))
        except BabouError as err:
            result = err
        step = progress.after(result)
        if isinstance(step, Outcome):
            return step.result()
        if isinstance(result, BabouError):
            _failed(target, clock, result)
        else:
            state = progress.last.state if progress.last else "unknown"
            log.info("Babou %s is %r; next poll in %.1f s", target.describe(), state, step)
        time.sleep(step)


def _failed(target: WaitTarget, clock: WaitClock, error: BabouError) -> None:
    log.warning("Checking %s failed (%d tolerated in a row): %s", target.describe(), clock.failures, error)
