"""A wait's cadence and deadline are checked when the trigger or sensor is built; delays grow with age."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from airflow_provider_babou import polling
from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.sensors.babou import BabouAssetSensor
from airflow_provider_babou.triggers.babou import (
    BabouAssetTrigger,
    BabouExportTrigger,
    BabouPollTrigger,
    BabouPromptTrigger,
)

FAST = {"poll_interval": 0.05, "poll_backoff": 1.0, "max_poll_interval": 0.05}
ASSET_ROUTE = "GET /api/v1/assets/{asset_id}"


# -- a bad cadence or deadline fails at construction ---------------------------------------------


IDS: dict[type[BabouPollTrigger], dict[str, str]] = {
    BabouPromptTrigger: {"project_id": "prj_1", "chapter_id": "cht_1", "prompt_id": "int_1"},
    BabouExportTrigger: {"project_id": "prj_1"},
    BabouAssetTrigger: {"asset_id": "ast_1"},
}
TRIGGERS = list(IDS)


def build(trigger_class: type[BabouPollTrigger], **kwargs: Any) -> BabouPollTrigger:
    arguments: dict[str, Any] = {**IDS[trigger_class], "end_time": 1e10, **kwargs}
    return trigger_class(babou_conn_id="babou_default", **arguments)


BAD = [math.nan, math.inf, -math.inf, 0, -1]


@pytest.mark.parametrize("trigger_class", TRIGGERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("field", ["poll_interval", "max_poll_interval"])
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_bad_poll_interval_fails_at_construction(
    trigger_class: type[BabouPollTrigger], field: str, value: float
) -> None:
    with pytest.raises(BabouInputError, match="poll interval"):
        build(trigger_class, **{field: value})


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.5, -2, True], ids=repr)
def test_bad_backoff_fails_at_construction(value: float) -> None:
    with pytest.raises(BabouInputError, match="backoff"):
        build(BabouAssetTrigger, poll_backoff=value)


@pytest.mark.parametrize("trigger_class", TRIGGERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "soon", None, True], ids=repr)
def test_bad_end_time_fails_at_construction(trigger_class: type[BabouPollTrigger], value: Any) -> None:
    with pytest.raises(BabouInputError, match="end_time"):
        build(trigger_class, end_time=value)


def test_input_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        build(BabouAssetTrigger, poll_interval=math.nan)


def test_a_good_cadence_round_trips() -> None:
    trigger = build(BabouPromptTrigger, poll_interval=1, poll_backoff=2, max_poll_interval=8)
    _path, kwargs = trigger.serialize()
    assert (kwargs["poll_interval"], kwargs["poll_backoff"], kwargs["max_poll_interval"]) == (1.0, 2.0, 8.0)
    assert kwargs["end_time"] == 1e10


@pytest.mark.parametrize(
    "kwargs",
    [{"poll_interval": 0}, {"max_poll_interval": math.nan}, {"max_poll_interval": math.inf}],
    ids=repr,
)
def test_sensor_with_a_bad_cadence_fails_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(BabouInputError, match="poll interval"):
        BabouAssetSensor(task_id="s", asset_id="ast_1", **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_interval": math.nan},
        {"poll_interval": math.inf},
        {"timeout": math.inf},
        {"timeout": math.nan},
        {"poke_interval": math.nan},
    ],
    ids=repr,
)
def test_sensor_with_a_bad_cadence_fails_in_airflows_own_checks(kwargs: dict[str, Any]) -> None:
    # Airflow's BaseSensorOperator checks poke_interval and timeout first (ValueError, or
    # OverflowError for inf): the sensor still fails at construction, though not with BabouInputError.
    with pytest.raises((ValueError, OverflowError)):
        BabouAssetSensor(task_id="s", asset_id="ast_1", **kwargs)


def test_delays_grow_with_the_waits_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll held back (e.g. 20 s in a busy key's queue) is not followed by a beginner's 2 s delay."""
    now = [1000.0]
    monkeypatch.setattr(polling.time, "monotonic", lambda: now[0])
    clock = polling.WaitClock(time.time() + 1000, polling.PollPolicy(2, 1.5, 30), 5)
    assert clock.first_delay() == 2
    now[0] += 2
    assert clock.observed() == 2  # on time: the policy's cadence
    now[0] += 20
    assert clock.observed() == 11  # 22 s old: half its age, more than the policy's 3 s
    now[0] += 100
    assert clock.observed() == 30  # never above max_interval


def test_a_wait_may_poll_every_interval_while_its_due_delay_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The due delay is a busy key's schedule; ``early`` (a spare request) stays at the interval."""
    now = [1000.0]
    monkeypatch.setattr(polling.time, "monotonic", lambda: now[0])
    clock = polling.WaitClock(time.time() + 1000, polling.PollPolicy(2, 1.5, 30), 5)
    now[0] += 60
    assert clock.observed() == 30
    assert clock.early == 2


def test_a_user_who_polls_less_is_never_polled_more_often(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = polling.WaitClock(time.time() + 1000, polling.PollPolicy(60, 2, 600), 5)
    assert clock.first_delay() == 60
    assert clock.observed() == 60
    assert clock.early == 60


def test_after_a_failed_poll_no_early_retry() -> None:
    from airflow_provider_babou.exceptions import BabouRateLimitError

    clock = polling.WaitClock(time.time() + 1000, polling.PollPolicy(2, 1.5, 30), 5)
    assert clock.failed(BabouRateLimitError("slow", retry_after=7, http_status=429)) == 7
    assert clock.early == 7


def test_429s_never_end_a_wait_only_its_deadline_does() -> None:
    from airflow_provider_babou.exceptions import BabouRateLimitError, BabouServerError

    clock = polling.WaitClock(time.time() + 1000, polling.PollPolicy(2, 1.5, 30), 1)
    busy = BabouRateLimitError("slow", retry_after=1, http_status=429)
    assert clock.failed(BabouServerError("oops", http_status=500)) > 0
    for _ in range(50):  # a busy key: neither counted nor a reset of the 5xx streak
        assert clock.failed(busy) > 0
    assert clock.failures == 1
    with pytest.raises(BabouServerError):
        clock.failed(BabouServerError("oops again", http_status=500))


def test_babous_window_no_polls_long_before_dense_inside_then_as_usual(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(polling.time, "time", lambda: now[0])
    monkeypatch.setattr(polling.time, "monotonic", lambda: now[0])
    start = now[0]
    policy = polling.PollPolicy(2, 1.5, 30)
    clock = polling.WaitClock(start + 1000, policy, 5, expected=(start + 120, start + 300))
    assert clock.first_delay() == 30  # before the window: at the user's slowest pace
    now[0] = start + 100
    assert clock.observed() == 20 == clock.early  # to the window's start, no sooner
    now[0] = start + 200
    assert clock.observed() == 2 == clock.early  # inside it: every interval, even 200 s old
    now[0] = start + 310
    assert clock.observed() == 5  # 10 s past the window: the schedule, aged from its end
    assert clock.early == 2


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("30-90 seconds", (30, 90)),
        ("2-5 minutes", (120, 300)),
        ("2 to 4 hours", (7200, 14400)),
        ("about 45 sec", (45, 45)),
        ("2\u20135 minutes", (120, 300)),
        ("soon", None),
        (None, None),
        (90, None),
        ("10-5 seconds", None),
    ],
)
def test_babous_estimated_time_is_read(text: Any, span: Any) -> None:
    assert polling.parse_estimate(text) == span


@pytest.mark.parametrize("seconds", [0, 0.5, 1.5, 2, 45, 60, 180, 3600])
def test_the_emulators_estimate_holds_its_configured_time(seconds: float) -> None:
    from airflow_provider_babou.emulator.store import estimate

    span = polling.parse_estimate(estimate(seconds))
    assert span is not None
    assert span[0] <= seconds <= span[1]
    assert span[0] >= math.floor(seconds / 2)  # a window, not "any time from now"


def test_expected_round_trips_and_is_checked() -> None:
    trigger = build(BabouExportTrigger, expected=[100.0, 200.0])
    _, kwargs = trigger.serialize()
    assert kwargs["expected"] == [100.0, 200.0]
    assert build(
        BabouExportTrigger, **{k: v for k, v in kwargs.items() if k != "babou_conn_id"}
    ).expected == (
        100.0,
        200.0,
    )
    assert "expected" not in build(BabouExportTrigger).serialize()[1]  # as before it existed
    for bad in ([200.0, 100.0], [1.0], "30-90 seconds", [math.nan, 1.0]):
        with pytest.raises(BabouInputError, match="expected"):
            build(BabouExportTrigger, expected=bad)
