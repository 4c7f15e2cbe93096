"""Unit tests of the per-key request budget: ``KeyBudget`` (on explicit clocks) and ``AsyncGate``."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.budget import AsyncGate, KeyBudget
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import AssetTarget


@pytest.fixture(autouse=True)
def fresh_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets are process-wide: give each test its own, so no pause or slowdown leaks out."""
    monkeypatch.setattr(_budget, "_budgets", {})


#: Clock slack: tokens are floats, and 0.1 s at 10/s may come out a hair under one token.
EPS = 1e-6


def new_budget(rate: float, burst: float | None = None) -> tuple[KeyBudget, float]:
    """A budget and a start time at or after its creation (``now=`` values count from there)."""
    budget = KeyBudget(rate, burst)
    return budget, time.monotonic()


def drain(budget: KeyBudget, now: float) -> int:
    """Take every saved token at ``now``; return how many there were."""
    taken = 0
    while budget.take(now) == 0:
        taken += 1
    return taken


# -- the token bucket --------------------------------------------------------------------------


def test_burst_then_one_token_per_interval() -> None:
    budget, t0 = new_budget(rate=10, burst=3)
    assert [budget.take(t0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    # Refilling starts a token's time after a full bucket is first taken from (Babou's own bucket
    # starts when that request arrives), then one token every 1/rate seconds.
    assert budget.take(t0) == pytest.approx(0.2)
    assert budget.take(t0 + 0.15) == pytest.approx(0.05)
    assert budget.take(t0 + 0.2 + EPS) == 0.0
    assert budget.take(t0 + 0.2 + EPS) == pytest.approx(0.1, abs=1e-5)
    # Paced over a whole second: rate tokens, no more.
    # (Half a step past the second, so float rounding cannot push its last token out.)
    assert sum(budget.take(t0 + 0.2 + i / 100 + EPS) == 0.0 for i in range(1, 106)) == 10
    # A long quiet spell saves up at most the burst.
    assert drain(budget, t0 + 100) == 3


def test_default_burst_is_one_seconds_worth_and_at_least_one() -> None:
    budget, t0 = new_budget(rate=20)
    assert drain(budget, t0) == 20
    slow, t1 = new_budget(rate=0.2)
    assert drain(slow, t1) == 1
    assert slow.take(t1) == pytest.approx(10.0)  # a token's time of slack, then a token's time


def test_a_bucket_that_never_fills_pays_no_slack() -> None:
    # Under steady load (a bucket never full again) the slack is not taken again: the full rate.
    budget, t0 = new_budget(rate=10, burst=2)
    assert drain(budget, t0) == 2
    taken = sum(budget.take(t0 + i / 100 + EPS) == 0.0 for i in range(1, 1001))  # 10 s
    assert taken in (99, 100)  # 10 s at 10/s, less the one token of slack


def test_a_429_pauses_the_whole_key_until_retry_after() -> None:
    budget, t0 = new_budget(rate=10, burst=10)
    budget.throttled(3.0, now=t0)
    # No token for anyone until Retry-After has passed, although 10 were saved up.
    for dt in (0.0, 1.0, 2.9):
        assert budget.take(t0 + dt) == pytest.approx(3.0 - dt)
    # Then one at a time at the (halved) rate: the saved burst was dropped, not resumed.
    assert budget.rate == 5
    assert budget.take(t0 + 3.0) == pytest.approx(0.2)
    assert budget.take(t0 + 3.2 + EPS) == 0.0
    assert budget.take(t0 + 3.2 + EPS) > 0


def test_a_429_without_retry_after_pauses_one_second() -> None:
    budget, t0 = new_budget(rate=10)
    budget.throttled(None, now=t0)
    assert budget.take(t0 + 0.99) > 0
    assert budget.take(t0 + 1.3) == 0.0  # 1 s of pause, then 1.5 tokens at the halved rate


def test_a_later_429_never_shortens_the_pause() -> None:
    budget, t0 = new_budget(rate=10)
    budget.throttled(5.0, now=t0)
    budget.throttled(1.0, now=t0 + 0.5)
    assert budget.take(t0 + 4.9) == pytest.approx(0.1)


def test_every_waiter_on_the_key_sees_the_pause() -> None:
    # One budget per base URL and key in the process: a 429 seen by one hook or gate holds all.
    key = _budget.budget_key("http://127.0.0.1:1/api/v1", "sk-bab-one")
    budget = _budget.budget_for(key, 20)
    assert _budget.budget_for(key, 20) is budget
    assert _budget.budget_for(_budget.budget_key("http://127.0.0.1:1/api/v1", "sk-bab-two"), 20) is not budget

    async def gate_budget() -> KeyBudget:
        return _budget.gate_for(key, 20).budget

    assert asyncio.run(gate_budget()) is budget
    budget.throttled(30.0)
    assert _budget.budget_for(key, 20).take() > 29


def test_the_rate_halves_at_most_once_a_second() -> None:
    budget, t0 = new_budget(rate=16)
    budget.throttled(0.1, now=t0)
    assert budget.rate == 8
    for dt in (0.1, 0.5, 0.99):  # a burst of 429s within the second: one halving
        budget.throttled(0.1, now=t0 + dt)
        assert budget.rate == 8
    budget.throttled(0.1, now=t0 + 1.0)
    assert budget.rate == 4
    budget.throttled(0.1, now=t0 + 1.5)
    assert budget.rate == 4
    for n in range(2, 10):
        budget.throttled(0.1, now=t0 + n)
    assert budget.rate == 1  # never below one request a second (min_rate)


def test_the_rate_recovers_a_twentieth_of_the_ceiling_per_quiet_second() -> None:
    budget, t0 = new_budget(rate=20)
    budget.throttled(0.0, now=t0)
    assert budget.rate == 10
    budget.succeeded(now=t0 + 0.5)
    assert budget.rate == 10  # not a quiet second yet
    budget.succeeded(now=t0 + 1.0)
    assert budget.rate == 11
    budget.succeeded(now=t0 + 1.9)
    assert budget.rate == 11  # at most one step per second, however many answers
    rates = []
    for n in range(2, 20):
        budget.succeeded(now=t0 + n)
        rates.append(budget.rate)
    assert rates[:9] == [12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert rates[9:] == [20] * 9  # up to the ceiling, never above


def test_recovery_is_a_twentieth_of_the_ceiling_for_any_ceiling() -> None:
    budget, t0 = new_budget(rate=3)
    budget.throttled(0.0, now=t0)
    assert budget.rate == 1.5
    budget.succeeded(now=t0 + 1)
    assert budget.rate == pytest.approx(1.65)
    for n in range(2, 40):
        budget.succeeded(now=t0 + n)
        assert budget.rate <= 3
    assert budget.rate == 3


def test_a_pause_is_not_quiet_time() -> None:
    budget, t0 = new_budget(rate=20)
    budget.throttled(5.0, now=t0)  # Retry-After: 5
    budget.succeeded(now=t0 + 5.5)
    assert budget.rate == 10  # half a second after the pause ended: not a quiet second yet
    budget.succeeded(now=t0 + 6.0)
    assert budget.rate == 11


def test_a_429_right_after_recovery_halves_again() -> None:
    budget, t0 = new_budget(rate=2)
    budget.throttled(0.1, now=t0)
    for n in range(1, 12):
        budget.succeeded(now=t0 + n)
    assert budget.rate == 2
    budget.throttled(0.1, now=t0 + 11.2)
    assert budget.rate == 1


def test_wait_sync_refuses_to_wait_past_the_deadline() -> None:
    budget = KeyBudget(0.1)
    budget.take()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no token"):
        budget.wait_sync(deadline=time.monotonic() + 1)
    assert time.monotonic() - started < 0.5


# -- the gate: most overdue first ----------------------------------------------------------------


async def served_in_order(gate: AsyncGate, dues: list[float], timeout: float = 5.0) -> list[float]:
    """Queue one waiter per due time, in list order; return the due times in the order served."""
    order: list[float] = []

    async def waiter(due: float) -> None:
        await gate.acquire(due, timeout)
        order.append(due)

    await asyncio.gather(*(waiter(due) for due in dues))
    return order


async def test_gate_serves_the_most_overdue_first_not_the_first_to_come() -> None:
    budget = KeyBudget(rate=50, burst=1)
    drain(budget, time.monotonic())  # saturated: one token every 20 ms
    gate = AsyncGate(budget)
    now = time.monotonic()
    dues = [now - i for i in range(6)]  # each arrival is more overdue than the one before
    assert await served_in_order(gate, dues) == sorted(dues)


async def test_gate_serves_a_late_but_overdue_waiter_before_earlier_arrivals() -> None:
    budget = KeyBudget(rate=20, burst=1)
    drain(budget, time.monotonic())
    gate = AsyncGate(budget)
    now = time.monotonic()
    order: list[str] = []
    first_served = asyncio.Event()

    async def waiter(name: str, due: float) -> None:
        await gate.acquire(due, 5.0)
        order.append(name)
        first_served.set()

    async def late() -> None:
        await first_served.wait()  # arrives while three earlier arrivals still wait
        await waiter("late", now - 10)

    await asyncio.gather(*(waiter(f"early{i}", now + i * 0.001) for i in range(4)), late())
    assert order == ["early0", "late", "early1", "early2", "early3"]


async def test_a_timed_out_waiter_does_not_block_the_others() -> None:
    budget = KeyBudget(rate=20, burst=1)
    drain(budget, time.monotonic())
    gate = AsyncGate(budget)
    now = time.monotonic()
    with pytest.raises(TimeoutError):
        await gate.acquire(now - 100, 0.01)  # the most overdue, but it gives up at once
    served = await asyncio.wait_for(served_in_order(gate, [now, now + 1, now + 2]), 2)
    assert served == [now, now + 1, now + 2]


async def test_a_cancelled_waiter_does_not_block_the_others() -> None:
    budget = KeyBudget(rate=20, burst=1)
    drain(budget, time.monotonic())
    gate = AsyncGate(budget)
    now = time.monotonic()
    cancelled = asyncio.ensure_future(gate.acquire(now - 100, 30))
    others = asyncio.ensure_future(served_in_order(gate, [now, now + 1]))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await asyncio.wait_for(others, 2) == [now, now + 1]
    assert cancelled.cancelled()


async def test_a_paused_key_holds_every_waiter_of_the_gate() -> None:
    budget = KeyBudget(rate=100)
    gate = AsyncGate(budget)
    budget.throttled(0.3)
    started = time.monotonic()
    await served_in_order(gate, [started, started + 1, started + 2])
    assert time.monotonic() - started >= 0.29


# -- the shared client: one per loop, never across loops -----------------------------------------


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1], "state": "processing"})


def asset_hook(conn_id: str) -> BabouHook:
    return BabouHook(babou_conn_id=conn_id, async_transport=httpx.MockTransport(ok))


async def test_waits_in_one_loop_share_one_client_until_the_last_leaves(unit_conn: str) -> None:
    conn_id = unit_conn
    hooks = [asset_hook(conn_id) for _ in range(3)]
    for hook in hooks:
        await hook.aobserve(AssetTarget("ast_1"), due=time.monotonic(), timeout=5)
    shared = {id(hook._shared) for hook in hooks}
    assert len(shared) == 1
    client = hooks[0]._shared.client  # type: ignore[union-attr]
    assert hooks[0]._shared.users == 3  # type: ignore[union-attr]
    await hooks[0].aclose()
    await hooks[1].aclose()
    assert not client.is_closed
    await hooks[2].aclose()
    assert client.is_closed
    # The next wait opens a new client.
    hook = asset_hook(conn_id)
    await hook.aobserve(AssetTarget("ast_1"), due=time.monotonic(), timeout=5)
    assert hook._shared is not None
    assert hook._shared.client is not client
    await hook.aclose()


def test_two_event_loops_never_share_a_client(unit_conn: str) -> None:
    conn_id = unit_conn
    both_open = threading.Barrier(2, timeout=10)
    clients: dict[str, list[httpx.AsyncClient]] = {}
    loops: dict[str, asyncio.AbstractEventLoop] = {}
    errors: list[BaseException] = []

    async def two_waits(name: str) -> None:
        hooks = [asset_hook(conn_id) for _ in range(2)]
        for hook in hooks:
            await hook.aobserve(AssetTarget("ast_1"), due=time.monotonic(), timeout=5)
        clients[name] = [hook._shared.client for hook in hooks]  # type: ignore[union-attr]
        loops[name] = asyncio.get_running_loop()
        await asyncio.to_thread(both_open.wait)  # both loops hold their clients at once
        for hook in hooks:
            await hook.aclose()

    def thread(name: str) -> None:
        try:
            asyncio.run(two_waits(name))
        except BaseException as err:  # reported in the main thread
            errors.append(err)

    threads = [threading.Thread(target=thread, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    a, b = clients["a"], clients["b"]
    assert a[0] is a[1]  # shared within a loop
    assert b[0] is b[1]
    assert a[0] is not b[0]  # never across loops
    assert loops["a"] is not loops["b"]
    assert a[0].is_closed
    assert b[0].is_closed


def test_an_edited_rate_limit_moves_the_ceiling_and_keeps_the_pause() -> None:
    key = _budget.budget_key("http://127.0.0.1:1/api/v1", "sk-bab-retarget")
    budget = _budget.budget_for(key, 20)
    budget.throttled(30.0)
    assert _budget.budget_for(key, 100) is budget  # one budget per key, whatever the rate asked
    assert budget.max_rate == 100
    assert budget.rate == 10  # the slowdown is kept; the new ceiling is reached step by step
    assert budget.take() > 29  # and so is the pause
    _budget.budget_for(key, 4)
    assert (budget.max_rate, budget.rate) == (4, 4)
