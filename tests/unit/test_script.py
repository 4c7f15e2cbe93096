"""The scripted Babou and the virtual clock (``tests/unit/script.py``) do what the unit tests rely on."""

from __future__ import annotations

import time

import pytest

from tests.unit.script import Script, Step, VirtualClock, ok, scripted_hook


def test_script_answers_in_order_and_refuses_the_unexpected(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(("GET", "/projects/prj_1", ok({"id": "prj_1", "name": "a"})))
    hook = scripted_hook(monkeypatch, script)
    assert hook.get_project("prj_1").name == "a"
    assert script.done
    with pytest.raises(AssertionError, match="unexpected request GET /api/v1/projects/prj_2"):
        hook.get_project("prj_2")
    script.steps.append(Step("POST", "/projects", ok({})))
    with pytest.raises(AssertionError, match="expected"):
        hook.get_project("prj_3")
    assert script.sent == [("GET", "/projects/prj_1"), ("GET", "/projects/prj_2"), ("GET", "/projects/prj_3")]


def test_virtual_clock_moves_only_when_slept(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock.install(monkeypatch)
    wall, mono = time.time(), time.monotonic()
    time.sleep(250)
    # Both clocks start at their real value: float sums of it and 250 are exact to a nanosecond.
    assert (time.time() - wall, time.monotonic() - mono) == (pytest.approx(250), pytest.approx(250))
    assert clock.sleeps == [250]
    assert clock.elapsed == 250
