"""``aobserve``, the triggerer's read path: one GET, no retry, one client per loop shared by every hook."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_babou import budget as _budget
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouNotFoundError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
)
from airflow_provider_babou.hooks import _async
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.models import Asset
from airflow_provider_babou.polling import AssetTarget, ExportTarget
from tests.helpers import key_stats, route_count
from tests.keys import ALICE, BOB

ASSET = "GET /api/v1/assets/{asset_id}"


def _asset(hook: BabouHook, tmp_path: Path) -> str:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    return hook.upload_asset(image).id


def _budget_of(hook: BabouHook) -> _budget.KeyBudget:
    config = hook.config
    return _budget.budget_for(_budget.budget_key(config.base_url, config.api_key), config.rate_limit)


async def test_one_get_and_no_retry(hook: BabouHook, emulator: EmulatorControl, tmp_path: Path) -> None:
    asset_id = _asset(hook, tmp_path)
    emulator.inject_fault("503_html", method="GET", path="/api/v1/assets/")
    with pytest.raises(BabouServerError) as info:
        await hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5)
    assert info.value.http_status == 503
    assert route_count(emulator, ASSET) == 1  # no retry inside: the trigger's loop is the retry
    asset = await hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5)
    assert isinstance(asset, Asset)
    assert asset.id == asset_id
    assert route_count(emulator, ASSET) == 2
    with pytest.raises(BabouNotFoundError):
        await hook.aobserve(ExportTarget("prj_missing"), due=time.monotonic(), timeout=5)
    await hook.aclose()


async def test_hooks_of_one_loop_share_one_client(
    babou_conn: str, emulator: EmulatorControl, tmp_path: Path
) -> None:
    first, second = BabouHook(babou_conn), BabouHook(babou_conn)
    asset_id = _asset(first, tmp_path)
    connections_before = key_stats(emulator)["connections"]
    for _ in range(3):
        for hook in (first, second):
            await hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5)
    shared = first._shared
    assert shared is not None
    assert second._shared is shared
    assert shared.users == 2
    assert route_count(emulator, ASSET) == 6
    assert key_stats(emulator)["connections"] - connections_before == 1  # one keep-alive connection
    await first.aclose()
    assert not shared.client.is_closed  # the second hook still uses it
    await second.aclose()
    assert shared.client.is_closed  # the last one out closes it
    third = BabouHook(babou_conn)
    await third.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5)
    assert third._shared is not shared  # a fresh client after the last one closed
    await third.aclose()
    first.close()


async def test_other_keys_get_their_own_client(
    babou_conn: str, make_conn: Callable[..., str], tmp_path: Path
) -> None:
    alice, bob = BabouHook(babou_conn), BabouHook(make_conn("babou_bob", key=BOB))
    await alice.aobserve(AssetTarget(_asset(alice, tmp_path)), due=time.monotonic(), timeout=5)
    await bob.aobserve(AssetTarget(_asset(bob, tmp_path)), due=time.monotonic(), timeout=5)
    assert alice._shared is not None
    assert bob._shared is not None
    assert alice._shared is not bob._shared
    await alice.aclose()
    await bob.aclose()
    alice.close()
    bob.close()


def test_never_shared_across_loops(babou_conn: str, tmp_path: Path) -> None:
    setup = BabouHook(babou_conn)
    asset_id = _asset(setup, tmp_path)
    shared = []
    for _ in range(2):
        hook = BabouHook(babou_conn)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5))
            shared.append(hook._shared)
            loop.run_until_complete(hook.aclose())
        finally:
            loop.close()
    assert shared[0] is not None
    assert shared[0] is not shared[1]
    setup.close()


async def test_a_429_pauses_the_whole_key(babou_conn: str, emulator: EmulatorControl, tmp_path: Path) -> None:
    hook = BabouHook(babou_conn, max_backoff=5)  # Retry-After 1 is within it: honoured in full
    asset_id = _asset(hook, tmp_path)
    emulator.inject_fault("429", method="GET", path="/api/v1/assets/")  # Retry-After: 1
    with pytest.raises(BabouRateLimitError) as info:
        await hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5)
    assert info.value.retry_after == 1
    budget = _budget_of(hook)
    assert 0.5 < budget.paused_until - time.monotonic() <= 1.0
    assert budget.take() > 0.5  # every request on the key waits, the sync ones too
    # Another wait on the key gets no slot within its timeout: nothing reaches Babou meanwhile.
    with pytest.raises(BabouTransportError, match="no request slot"):
        await hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=0.3)
    assert route_count(emulator, ASSET) == 1
    started = time.monotonic()
    assert (await hook.aobserve(AssetTarget(asset_id), due=time.monotonic(), timeout=5)).id == asset_id
    assert time.monotonic() - started > 0.3  # waited for the pause to end
    await hook.aclose()


async def test_timeout_covers_the_whole_call(hook: BabouHook, emulator: EmulatorControl) -> None:
    project = hook.create_project(name="p")
    emulator.inject_fault("delay_after", method="GET", path="/export$", seconds=3)
    started = time.monotonic()
    with pytest.raises(BabouTransportError):
        await hook.aobserve(ExportTarget(project.id), due=time.monotonic(), timeout=0.5)
    assert time.monotonic() - started < 1.5
    await hook.aclose()


async def test_key_never_in_async_errors(make_conn: Callable[..., str], emulator: EmulatorControl) -> None:
    hook = BabouHook(make_conn("babou_other", key="sk-bab-unknown-key-0123456789"))
    with pytest.raises(BabouAuthError) as info:
        await hook.aobserve(ExportTarget("prj_1"), due=time.monotonic(), timeout=5)
    assert info.value.http_status == 401
    assert emulator.stats()["total"]["requests"] == 1  # a 401 is not tried again
    assert "sk-bab-unknown-key-0123456789" not in str(info.value) + repr(info.value)
    assert ALICE not in str(info.value)
    await hook.aclose()


async def _poll_distinct(client: _async.AiohttpClient, base_url: str, numbers: range) -> None:
    """GET one distinct URL per number, ten at a time (404s and 429s are answers too)."""
    for start in range(numbers.start, numbers.stop, 10):
        urls = [f"{base_url}/projects/prj_{n}/export" for n in range(start, min(start + 10, numbers.stop))]
        await asyncio.gather(*(client.get(url, timeout=5) for url in urls))


class TestSharedClientMemory:
    """Issue 16 item 13: a long-lived triggerer client must not keep something per URL ever polled."""

    async def test_cached_requests_are_bounded(
        self, hook: BabouHook, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_async, "MAX_CACHED_REQUESTS", 8)
        client = _async.AiohttpClient(hook.config)
        await _poll_distinct(client, hook.config.base_url, range(40))
        assert client._request.cache_info().currsize == 8
        await _poll_distinct(client, hook.config.base_url, range(40, 80))
        assert client._request.cache_info().currsize == 8
        await client.aclose()

    async def test_memory_does_not_grow_with_distinct_urls(
        self, hook: BabouHook, emulator: EmulatorControl
    ) -> None:
        client = _async.AiohttpClient(hook.config)
        base, more = hook.config.base_url, 1200  # more URLs than a client may keep requests for
        tracemalloc.start()  # from the start: what the second round frees is counted too
        try:
            await _poll_distinct(client, base, range(more))  # past the bound, and warm
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await _poll_distinct(client, base, range(more, 2 * more))
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            await client.aclose()
        # Kept per URL, the second round's URLs would hold about 1.4 MB.
        assert grown < 256 * 1024, f"{grown} bytes kept after polling {more} more URLs"
