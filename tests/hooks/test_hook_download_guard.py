"""Downloads against a scripted server (tests/download_server.py): shapes the emulator cannot serve.

A trickling server, a file that changes between a cut and its resume, a refreshed URL that points
at another export, a ``download_url`` that is not HTTP, a body that is no MP4.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_provider_babou.exceptions import BabouDownloadStalledError, BabouNotFoundError, BabouServerError
from airflow_provider_babou.hooks.babou import BabouHook
from tests.download_server import DownloadServer, File, mp4
from tests.keys import ALICE

PID = "prj_script"


@pytest.fixture
def server() -> Iterator[DownloadServer]:
    with DownloadServer() as s:
        yield s


@pytest.fixture
def make_hook(server: DownloadServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., BabouHook]]:
    conn = {"conn_type": "babou", "host": server.api_url, "password": ALICE, "extra": {"rate_limit": 1000}}
    monkeypatch.setenv("AIRFLOW_CONN_BABOU_SCRIPT", json.dumps(conn))
    hooks: list[BabouHook] = []

    def make(**kw: float) -> BabouHook:
        hooks.append(BabouHook("babou_script", timeout=5, max_backoff=0.05, **kw))  # type: ignore[arg-type]
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- item 3: time bounds


def test_trickling_server_fails_within_the_bound(server, make_hook, tmp_path) -> None:
    # 40 bytes every 50 ms (800 B/s): 40 s for this file, far under the 20 kB/s asked for.
    server.pick = lambda n: File(mp4(32_000), etag='"v"', trickle=(40, 0.05))
    hook = make_hook(retry_deadline=2)
    started = time.monotonic()
    with pytest.raises(BabouDownloadStalledError, match="too slow"):
        hook.download_export(PID, tmp_path / "v.mp4", min_speed=20_000, speed_window=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 0.5 + 2  # retry_deadline + speed_window + slack
    assert len(server.requests) >= 2  # a stall is a cut: resumed while the time bound allowed
    assert server.requests[1]["range"]
    assert _leftovers(tmp_path) == []


def test_deadline_bounds_a_download_that_keeps_pace(server, make_hook, tmp_path) -> None:
    server.pick = lambda n: File(mp4(32_000), trickle=(40, 0.05))
    hook = make_hook(retry_deadline=30, deadline=time.time() + 1.5)
    started = time.monotonic()
    with pytest.raises(BabouDownloadStalledError, match="deadline"):
        hook.download_export(PID, tmp_path / "v.mp4", min_speed=1, speed_window=0.5)
    assert time.monotonic() - started < 1.5 + 1
    assert _leftovers(tmp_path) == []


def test_the_deadline_bounds_trickling_headers(server, make_hook, tmp_path) -> None:
    # About 6 s of headers, each byte well within the 5 s read timeout: only the deadline ends it.
    server.pick = lambda n: File(mp4(1000), head_drip=0.05)
    hook = make_hook(retry_deadline=30, deadline=time.time() + 1)
    started = time.monotonic()
    with pytest.raises(BabouDownloadStalledError, match="deadline"):
        hook.download_export(PID, tmp_path / "v.mp4")
    assert time.monotonic() - started < 1 + 0.5
    assert _leftovers(tmp_path) == []


def test_an_error_body_is_read_only_so_far(server, make_hook, tmp_path) -> None:
    # A 4 MiB error page at about 1.3 MB/s: the error is raised after its first 64 KiB.
    page = b"<html>gone</html>" + b" " * (4 << 20)
    server.pick = lambda n: File(page, status=404, trickle=(64 * 1024, 0.05))
    started = time.monotonic()
    with pytest.raises(BabouNotFoundError, match="gone"):
        make_hook().download_export(PID, tmp_path / "v.mp4")
    assert time.monotonic() - started < 1
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", [float("nan"), 0, -1, float("inf"), True])
def test_bounds_are_checked(make_hook, server, tmp_path, bad) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        make_hook().download_export(PID, tmp_path / "v.mp4", min_speed=bad)
    assert server.api_requests == 0


# --------------------------------------------------------------------------- item 6: same file


A, B = mp4(60_000, b"a"), mp4(90_000, b"b")
SAME_SIZE_B = mp4(60_000, b"b")


def _check(result, path: Path, data: bytes) -> None:
    assert path.read_bytes() == data
    assert (result.size, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_file_of_another_size_restarts(server, make_hook, tmp_path) -> None:
    # The same ETag (a server that reuses one): the size still tells the files apart.
    server.pick = lambda n: File(A, etag='"a"', cut_after=20_000) if n == 0 else File(B, etag='"a"')
    result = make_hook().download_export(PID, tmp_path / "v.mp4")
    _check(result, tmp_path / "v.mp4", B)
    assert [r["range"] for r in server.requests] == [None, "bytes=20000-", None]


def test_without_a_validator_a_cut_restarts_from_zero(server, make_hook, tmp_path) -> None:
    # The same size proves nothing: another file of that size may be behind the URL now.
    server.pick = lambda n: File(A, cut_after=20_000) if n == 0 else File(SAME_SIZE_B)
    result = make_hook().download_export(PID, tmp_path / "v.mp4")
    _check(result, tmp_path / "v.mp4", SAME_SIZE_B)
    assert [r["range"] for r in server.requests] == [None, None]


@pytest.mark.parametrize("honours_if_range", [True, False])
def test_file_with_another_etag_restarts(server, make_hook, tmp_path, honours_if_range) -> None:
    first = File(A, etag='"a"', cut_after=20_000)
    server.pick = lambda n: first if n == 0 else File(SAME_SIZE_B, etag='"b"', if_range=honours_if_range)
    result = make_hook().download_export(PID, tmp_path / "v.mp4")
    _check(result, tmp_path / "v.mp4", SAME_SIZE_B)
    assert server.requests[1]["if_range"] == '"a"'


def test_same_file_with_validator_resumes(server, make_hook, tmp_path) -> None:
    date = "Tue, 01 Dec 2026 10:00:00 GMT"
    server.pick = lambda n: File(A, last_modified=date, cut_after=20_000 if n == 0 else None)
    result = make_hook().download_export(PID, tmp_path / "v.mp4")
    _check(result, tmp_path / "v.mp4", A)
    assert [(r["range"], r["if_range"]) for r in server.requests] == [(None, None), ("bytes=20000-", date)]


def _expiring(first: File, then: File) -> Callable[[int], File]:
    """Cut the first answer, refuse the resume as expired (403), then serve ``then``."""
    return lambda n: first if n == 0 else File(status=403) if n == 1 else then


def test_refreshed_url_without_validator_restarts(server, make_hook, tmp_path) -> None:
    # The docs' download_url is per project: after a refresh the same URL may be a newer export.
    server.pick = _expiring(File(A, cut_after=20_000), File(SAME_SIZE_B))
    result = make_hook().download_export(PID, tmp_path / "v.mp4")
    _check(result, tmp_path / "v.mp4", SAME_SIZE_B)
    assert [r["range"] for r in server.requests] == [None, None, None]
    assert server.api_requests == 2  # the export, then its fresh URL


def test_refreshed_url_of_the_same_file_resumes(server, make_hook, tmp_path) -> None:
    server.pick = _expiring(File(A, etag='"a"', cut_after=20_000), File(A, etag='"a"'))
    result = make_hook().download_export(PID, tmp_path / "v.mp4")
    _check(result, tmp_path / "v.mp4", A)
    assert [(r["range"], r["if_range"]) for r in server.requests][2] == ("bytes=20000-", '"a"')


# --------------------------------------------------------------------------- item 9: unusable URLs


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://cdn.example/v.mp4", "exports/prj.mp4", ""])
def test_unusable_download_url_fails_at_once(server, make_hook, tmp_path, url) -> None:
    server.url_path = url
    started = time.monotonic()
    with pytest.raises(BabouServerError, match="unusable download_url") as info:
        make_hook(retry_deadline=30).download_export(PID, tmp_path / "v.mp4")
    assert time.monotonic() - started < 1
    assert "/etc/hostname" not in str(info.value)  # a signed URL is not echoed
    assert server.requests == []
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- item 16: an MP4


@pytest.mark.parametrize("body", [b"", b"<html>maintenance</html>", b"\x00\x00\x00\x18moov"])
def test_what_is_no_mp4_is_refused(server, make_hook, tmp_path, body) -> None:
    server.pick = lambda n: File(body)
    with pytest.raises(BabouServerError, match=r"empty|not an MP4"):
        make_hook().download_export(PID, tmp_path / "v.mp4")
    assert _leftovers(tmp_path) == []
    assert len(server.requests) == 1  # not retried: the server sent a whole answer
