"""Hostile or careless input is refused before any request: keys, ids, numbers, text, files, paths."""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_babou import storage
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import BabouInputError, BabouNotFoundError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.models import DownloadResult
from tests.helpers import FAST_POLL, completed_export, route_count

DOWNLOAD = "GET /downloads/{project_id}.mp4"


def _no_requests(emulator: EmulatorControl) -> None:
    assert emulator.stats()["total"]["requests"] == 0


# --------------------------------------------------------------------------- the key


@pytest.mark.parametrize(
    "key",
    [
        "sk-bab-abc\r\ndef-0123456789",
        "sk-bab-abc\ndef-0123456789",
        "sk-bab-abc\rX-Injected: yes",
        "sk-bab-abc\x00def-0123456789",
        "sk-bab-abc def-0123456789",
        "sk-bab-abc\tdef-0123456789",
        "sk-bab-abcdéf-0123456789",
    ],
)
def test_key_with_control_characters_refused(
    make_conn: Callable[..., str], emulator: EmulatorControl, key: str
) -> None:
    hook = BabouHook(make_conn("babou_paste", key=key))
    with pytest.raises(BabouInputError, match="line breaks or control characters") as info:
        hook.list_projects()
    ok, message = hook.test_connection()
    assert not ok
    for text in (str(info.value), repr(info.value), message, repr(hook)):
        for part in (key, repr(key)[1:-1], "abc", "0123456789", "X-Injected"):
            assert part not in text
    _no_requests(emulator)


# --------------------------------------------------------------------------- ids


BAD_IDS = [".", "..", "a\x00b", "%2e", "%2e%2e", "prj%2F1", "a\\b", "..\\..", "a/../b", "\ud800", "x" * 201]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_ids_that_would_change_the_url_refused(
    hook: BabouHook, emulator: EmulatorControl, tmp_path: Path, bad: str
) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: hook.get_project(bad),
        lambda: hook.list_chapters(bad),
        lambda: hook.create_chapter(bad, name="c"),
        lambda: hook.get_chapter(bad, "cht_1"),
        lambda: hook.get_chapter("prj_1", bad),
        lambda: hook.submit_prompt("prj_1", bad, content="x"),
        lambda: hook.find_prompt(bad, "cht_1", content="x"),
        lambda: hook.start_export(bad),
        lambda: hook.get_export(bad),
        lambda: hook.find_export(bad),
        lambda: hook.wait_for_export(bad, poll=FAST_POLL, timeout=1),
        lambda: hook.wait_for_prompt("prj_1", "cht_1", bad, poll=FAST_POLL, timeout=1),
        lambda: hook.get_asset(bad),
        lambda: hook.wait_for_asset(bad, poll=FAST_POLL, timeout=1),
        lambda: hook.download_export(bad, tmp_path / "v.mp4"),
    ]
    for call in calls:
        with pytest.raises(BabouInputError, match="id"):
            call()
    _no_requests(emulator)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- numbers


NOT_FINITE: list[Any] = [math.nan, math.inf, -math.inf, -1, True, "nan", "inf", "-2", "soon"]


@pytest.mark.parametrize("name", ["timeout", "max_backoff", "retry_deadline", "rate_limit", "max_retries"])
@pytest.mark.parametrize("value", NOT_FINITE, ids=repr)
def test_bad_numbers_in_extras_refused(
    make_conn: Callable[..., str], emulator: EmulatorControl, name: str, value: Any
) -> None:
    hook = BabouHook(make_conn("babou_numbers", **{name: value}))
    with pytest.raises(BabouInputError, match=name):
        hook.list_projects()
    _no_requests(emulator)


@pytest.mark.parametrize("name", ["timeout", "max_backoff", "retry_deadline", "rate_limit", "max_retries"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, True], ids=repr)
def test_bad_numbers_as_hook_arguments_refused(
    babou_conn: str, emulator: EmulatorControl, name: str, value: Any
) -> None:
    hook = BabouHook(babou_conn, **{name: value})
    with pytest.raises(BabouInputError, match=name):
        hook.get_project("prj_1")
    _no_requests(emulator)


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -1.0, 0.0, True], ids=repr)
def test_bad_wait_timeouts_refused(hook: BabouHook, emulator: EmulatorControl, timeout: Any) -> None:
    for call in (
        lambda: hook.wait_for_export("prj_1", poll=FAST_POLL, timeout=timeout),
        lambda: hook.wait_for_prompt("prj_1", "cht_1", "int_1", poll=FAST_POLL, timeout=timeout),
        lambda: hook.wait_for_asset("ast_1", poll=FAST_POLL, timeout=timeout),
    ):
        with pytest.raises(BabouInputError, match="timeout"):
            call()
    _no_requests(emulator)


# --------------------------------------------------------------------------- text and settings


def test_lone_surrogates_refused(hook: BabouHook, emulator: EmulatorControl) -> None:
    for call in (
        lambda: hook.create_project(name="bad \ud800 name"),
        lambda: hook.create_project(name="ok", description="bad \udfff"),
        lambda: hook.create_chapter("prj_1", name="\ud83d"),
        lambda: hook.submit_prompt("prj_1", "cht_1", content="a prompt \udc00"),
    ):
        with pytest.raises(BabouInputError, match="Unicode"):
            call()
    _no_requests(emulator)


def test_bad_settings_and_paging_refused(hook: BabouHook, emulator: EmulatorControl) -> None:
    nested: dict[str, Any] = {}
    for _ in range(5000):
        nested = {"a": nested}
    for settings in ("x", ["a"], {"a": math.nan}, {"a": [math.inf]}, {"a": object()}, {1j: 1}, nested):
        with pytest.raises(BabouInputError, match="settings"):
            hook.create_project(name="p", settings=settings)  # type: ignore[arg-type]
    for limit, offset in ((True, 0), (0, 0), (101, 0), (1.5, 0), (10, -1), (10, False), (10, "0")):
        with pytest.raises(BabouInputError):
            hook.list_projects(limit=limit, offset=offset)  # type: ignore[arg-type]
        with pytest.raises(BabouInputError):
            hook.list_assets(limit=limit, offset=offset)  # type: ignore[arg-type]
    for page_size in (True, 0, 101):
        with pytest.raises(BabouInputError):
            hook.iter_projects(page_size=page_size)
        with pytest.raises(BabouInputError):
            hook.iter_assets(page_size=page_size)
    with pytest.raises(BabouInputError, match="duration"):
        hook.create_chapter("prj_1", name="c", duration=True)
    with pytest.raises(BabouInputError, match="control character"):
        hook.create_project(name="two\nlines")
    _no_requests(emulator)


def test_text_mode_files_refused_before_the_post(
    hook: BabouHook, emulator: EmulatorControl, tmp_path: Path
) -> None:
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    with image.open("r", encoding="latin-1") as text, pytest.raises(BabouInputError, match="text-mode"):
        hook.upload_asset(text, content_type="image/png")
    with pytest.raises(BabouInputError, match="text-mode"):
        hook.upload_asset(io.StringIO("not bytes"), content_type="image/png")
    with pytest.raises(BabouInputError, match="cannot upload a"):
        hook.upload_asset(b"raw bytes", content_type="image/png")
    _no_requests(emulator)


# --------------------------------------------------------------------------- download destinations


def test_download_destinations_refused_before_any_request(
    hook: BabouHook, emulator: EmulatorControl, tmp_path: Path
) -> None:
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep me")
    a_file = tmp_path / "plain-file"
    a_file.write_bytes(b"x")
    refused = {
        None: "empty",
        "": "empty",
        "   ": "empty",
        42: "must be a path",
        str(tmp_path): "directory",
        tmp_path: "directory",
        existing: "already exists",
        a_file / "v.mp4": "not a directory",  # the parent is a regular file: works as root too
        tmp_path / ("n" * 296 + ".mp4"): "too long",
        tmp_path / ("n" * 250 + ".mp4"): "too long",  # no room left for the partial file's suffix
        tmp_path / ("n" * 300) / "v.mp4": "too long",
        str(tmp_path / "v\x00.mp4"): "NUL",
    }
    for destination, reason in refused.items():
        with pytest.raises(BabouInputError, match=reason):
            hook.download_export("prj_1", destination)
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mp4", "plain-file"]
    _no_requests(emulator)


def test_download_creates_missing_parents_before_any_request(hook: BabouHook, tmp_path: Path) -> None:
    # A deferred task may resume on a worker that never saw the folder; the project does not exist,
    # so the folder is made before the first request (which then fails).
    with pytest.raises(BabouNotFoundError):
        hook.download_export("prj_1", tmp_path / "new" / "deeper" / "v.mp4")
    assert (tmp_path / "new" / "deeper").is_dir()
    assert list((tmp_path / "new" / "deeper").iterdir()) == []


def test_download_into_an_unwritable_directory_refused(
    hook: BabouHook, emulator: EmulatorControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:
        # root passes every permission check: make os.access answer as it would for anyone else
        real_access = os.access
        monkeypatch.setattr(
            storage.os,
            "access",
            lambda path, mode, **kw: False if Path(path) == locked else real_access(path, mode, **kw),
        )
    try:
        with pytest.raises(BabouInputError, match="no write permission"):
            hook.download_export("prj_1", locked / "v.mp4")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
    _no_requests(emulator)


def test_two_concurrent_downloads_to_one_file(
    babou_conn: str, emulator: EmulatorControl, tmp_path: Path
) -> None:
    emulator.configure(mp4_size=3_000_000)
    setup = BabouHook(babou_conn)
    project_id = completed_export(setup)
    target = tmp_path / "video.mp4"
    start = threading.Barrier(2)
    outcomes: list[DownloadResult | BaseException] = []

    def download() -> None:
        hook = BabouHook(babou_conn)
        start.wait()
        try:
            outcomes.append(hook.download_export(project_id, target))
        except BaseException as exc:
            outcomes.append(exc)
        finally:
            hook.close()

    threads = [threading.Thread(target=download) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    results = [o for o in outcomes if isinstance(o, DownloadResult)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(results) == 1, outcomes
    assert len(errors) == 1, outcomes
    assert isinstance(errors[0], BabouInputError)
    assert "already exists" in str(errors[0]) or "appeared while downloading" in str(errors[0])
    data = target.read_bytes()
    assert len(data) == results[0].size == 3_000_000
    assert hashlib.sha256(data).hexdigest() == results[0].sha256
    assert data[4:8] == b"ftyp"
    assert list(tmp_path.iterdir()) == [target]  # the loser's partial file is gone too
    assert 1 <= route_count(emulator, DOWNLOAD) <= 2
    setup.close()
