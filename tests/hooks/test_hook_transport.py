"""Connection settings, key handling and secrecy, connection reuse, uploads and downloads."""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from airflow_provider_babou import connection, storage
from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouDownloadExpiredError,
    BabouInputError,
)
from airflow_provider_babou.hooks import _http
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.models import ExportStatus
from airflow_provider_babou.polling import ExportTarget
from tests.helpers import FAST_POLL, completed_export, key_stats, route_count
from tests.keys import ALICE, EXPIRED

DOWNLOAD = "GET /downloads/{project_id}.mp4"


# --------------------------------------------------------------------------- connection


@pytest.mark.parametrize(
    ("host", "port", "schema", "expected"),
    [
        (None, None, None, "https://api.babou.ai/api/v1"),
        ("http://127.0.0.1:8711/api/v1/", None, None, "http://127.0.0.1:8711/api/v1"),
        ("127.0.0.1", 8711, "api/v1", "http://127.0.0.1:8711/api/v1"),
        ("localhost:8711", None, None, "http://localhost:8711/api/v1"),
        ("api.example.com", None, None, "https://api.example.com/api/v1"),
        ("api.example.com", 8443, "/v2", "https://api.example.com:8443/v2"),
        ("https://api.example.com", None, None, "https://api.example.com/api/v1"),
        ("http://[::1]:8711/api/v1", None, None, "http://[::1]:8711/api/v1"),
        # The Port field (filled so that Airflow 3.3.2's Test button works) never changes the URL
        # the Base URL spells out, and the scheme's default port is left out.
        ("https://api.babou.ai/api/v1", 443, None, "https://api.babou.ai/api/v1"),
        ("https://api.babou.ai:443/api/v1", None, None, "https://api.babou.ai/api/v1"),
        ("http://127.0.0.1:8711/api/v1", 443, None, "http://127.0.0.1:8711/api/v1"),
        ("127.0.0.1", 80, None, "http://127.0.0.1/api/v1"),
    ],
)
def test_base_url_forms(host, port, schema, expected) -> None:
    assert connection.build_base_url(host, port, schema) == expected


def test_plain_http_refused_off_loopback(make_conn) -> None:
    make_conn("babou_http", host="http://api.example.com/api/v1")
    with pytest.raises(BabouInputError, match="refusing plain http"):
        BabouHook("babou_http").list_projects()


def test_uri_form_connection(monkeypatch, emulator: EmulatorControl) -> None:
    port = httpx.URL(emulator.url).port
    monkeypatch.setenv(
        "AIRFLOW_CONN_BABOU_URI", f"babou://:{ALICE}@127.0.0.1:{port}/api/v1?timeout=3&max_retries=1"
    )
    hook = BabouHook("babou_uri")
    assert hook.list_projects().items == []
    assert hook.config.timeout == 3
    assert hook.config.max_retries == 1


def test_extras_and_overrides(make_conn) -> None:
    make_conn("babou_x", timeout=7, max_retries=2, max_backoff=9, retry_deadline=11, rate_limit=3)
    config = BabouHook("babou_x").config
    assert (config.timeout, config.max_retries) == (7, 2)
    assert (config.max_backoff, config.retry_deadline, config.rate_limit) == (9, 11, 3)
    assert BabouHook("babou_x", max_backoff=1).config.max_backoff == 1
    assert BabouHook("babou_x", retry_deadline=2).config.retry_deadline == 2
    make_conn("babou_defaults", rate_limit=None)  # make_conn's rate_limit: none, so the default
    defaults = BabouHook("babou_defaults").config
    assert (defaults.timeout, defaults.max_retries, defaults.max_backoff) == (30, None, 30)
    assert (defaults.retry_deadline, defaults.rate_limit) == (300, 20)


def test_env_key_used_only_when_connection_has_none(make_conn, monkeypatch, emulator) -> None:
    make_conn("babou_nokey", key=None)
    with pytest.raises(BabouInputError, match="no Babou API key"):
        BabouHook("babou_nokey").list_projects()
    monkeypatch.setenv("BABOU_API_KEY", ALICE)
    assert BabouHook("babou_nokey").list_projects().items == []
    monkeypatch.setenv("BABOU_API_KEY", EXPIRED)
    # The connection's key wins over the environment's.
    assert BabouHook(make_conn()).list_projects().items == []


def test_bad_key_format_rejected_before_any_request(make_conn, emulator: EmulatorControl) -> None:
    make_conn("babou_bad", key="not-a-babou-key-123")
    hook = BabouHook("babou_bad")
    with pytest.raises(BabouInputError, match="malformed") as info:
        hook.list_projects()
    assert "not-a-babou-key-123" not in str(info.value)
    ok, message = hook.test_connection()
    assert not ok
    assert "sk-bab-" in message
    assert "not-a-babou-key-123" not in message
    assert emulator.stats()["total"]["requests"] == 0


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "not-a-babou-key-123",
            "The Babou API key is malformed: Babou keys start with 'sk-bab-'. Copy the key again from "
            "the Babou dashboard (Settings -> API Keys); keys look like sk-bab-...",
        ),
        (
            "sk-bab-unknown",
            "Babou answered: Unauthorized - Invalid API key (HTTP 401). The key is unknown or revoked: "
            "check the connection's API Key.",
        ),
        (
            None,
            "No Babou API key configured. Set the connection's password (API Key) or the "
            "BABOU_API_KEY environment variable.",
        ),
        (
            "***",
            "Airflow sent the masked key '***' instead of the key (Airflow 3.1's Test button does "
            "this). Test from the command line: airflow connections test <connection id>.",
        ),
    ],
)
def test_test_button_messages_say_each_thing_once(
    make_conn, emulator: EmulatorControl, monkeypatch: pytest.MonkeyPatch, key: str | None, expected: str
) -> None:
    # Airflow's UI tests a copy of the connection saved under a random id: the message must not
    # name that id (the user never saw it), nor repeat "Babou ..." or the HTTP reason.
    monkeypatch.delenv("BABOU_API_KEY", raising=False)
    hook = BabouHook(make_conn("x7f3kq2a", key=key))
    assert hook.test_connection() == (False, expected)


def test_test_button_names_a_code_that_says_more_than_the_status(make_conn, emulator) -> None:
    ok, message = BabouHook(make_conn("x7f3kq2a", key=EXPIRED)).test_connection()
    assert not ok
    assert message.startswith("Babou answered: ")
    assert "(HTTP 401 API_KEY_EXPIRED)" in message
    assert "x7f3kq2a" not in message


def test_missing_connection(emulator) -> None:
    with pytest.raises(BabouInputError, match="'nope' is not defined"):
        BabouHook("nope").get_project("prj_1")
    ok, message = BabouHook("nope").test_connection()
    assert not ok
    assert "not defined" in message


async def test_async_lookup_missing_connection(emulator) -> None:
    with pytest.raises(BabouInputError, match="not defined"):
        await BabouHook("nope").aconfig()
    hook = BabouHook("nope")
    with pytest.raises(BabouInputError, match="not defined"):
        await hook.aobserve(ExportTarget("prj_1"), due=time.monotonic(), timeout=5)
    await hook.aclose()
    assert emulator.stats()["total"]["requests"] == 0


def test_no_io_in_init(monkeypatch) -> None:
    def boom(*_a, **_k):
        raise AssertionError("no lookup in __init__")

    monkeypatch.setattr(BabouHook, "get_connection", boom)
    hook = BabouHook("anything")
    assert repr(hook) == "BabouHook(babou_conn_id='anything')"


def test_invalid_arguments_rejected_locally(hook: BabouHook, emulator, tmp_path) -> None:
    for bad in ("", "a/b", "a b", "x?y"):
        with pytest.raises(BabouInputError):
            hook.get_project(bad)
    with pytest.raises(BabouInputError, match="1 to 30"):
        hook.create_project(name="x" * 31)
    with pytest.raises(BabouInputError, match="limit"):
        hook.list_projects(limit=101)
    with pytest.raises(BabouInputError, match="positive integer"):
        hook.create_chapter("prj_1", name="c", duration=0)
    assert emulator.stats()["total"]["requests"] == 0


# --------------------------------------------------------------------------- secrecy


def test_key_never_leaks(make_conn, caplog, emulator: EmulatorControl) -> None:
    make_conn("babou_expired", key=EXPIRED)
    hook = BabouHook("babou_expired", max_backoff=0.01)
    emulator.inject_fault("503_html", method="GET", path="/api/v1/projects$")
    with caplog.at_level("DEBUG"), pytest.raises(BabouAuthError) as info:
        hook.list_projects()
    texts = [repr(hook), str(info.value), repr(info.value), repr(hook.config), repr(hook.get_conn().auth)]
    texts += [r.getMessage() for r in caplog.records]
    assert all(EXPIRED not in text for text in texts)
    import pickle

    assert EXPIRED not in str(pickle.loads(pickle.dumps(info.value)))  # noqa: S301 - our own bytes


def test_key_registered_with_secrets_masker(hook: BabouHook, monkeypatch) -> None:
    masked: list[str] = []
    monkeypatch.setattr("airflow_provider_babou.connection.mask_secret", lambda s, *a, **k: masked.append(s))
    _ = hook.config
    assert ALICE in masked


def test_user_agent(mock_hook) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"projects": []})

    mock_hook(handler).list_projects()
    agent = seen[0].headers["User-Agent"]
    assert agent.startswith("airflow-provider-babou/")
    assert " apache-airflow/" in agent
    assert " httpx/" in agent


# --------------------------------------------------------------------------- connection reuse


def test_thousand_sync_gets_reuse_one_connection(babou_conn: str, emulator: EmulatorControl) -> None:
    hook = BabouHook(babou_conn, rate_limit=100_000)  # the emulator has no limit: do not pace the loop
    project = hook.create_project(name="p")
    for _ in range(1000):
        hook.get_project(project.id)
    stats = key_stats(emulator)
    assert route_count(emulator, "GET /api/v1/projects/{project_id}") == 1000
    assert stats["connections"] == 1
    hook.close()


# --------------------------------------------------------------------------- uploads


@pytest.fixture
def memory_store():
    """Register fsspec's in-memory filesystem as ``memory://``: a stand-in for a remote object store."""
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    yield fs
    fs.store.clear()


class _CountingReader:
    """A file wrapper recording the largest read, to prove the upload is streamed."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.name = str(path)
        self.largest = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self.largest = max(self.largest, len(chunk))
        return chunk

    def seek(self, *args: int) -> int:
        return self._file.seek(*args)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def test_upload_is_streamed(hook: BabouHook, tmp_path: Path) -> None:
    big = tmp_path / "clip.mp4"
    big.write_bytes(b"\0" * (3 * 1024 * 1024 + 17))
    reader = _CountingReader(big)
    asset = hook.upload_asset(reader)
    reader.close()
    assert asset.size == big.stat().st_size
    assert asset.content_type == "video/mp4"
    assert 0 < reader.largest <= storage.CHUNK_SIZE


def test_upload_object_storage_paths(hook: BabouHook, tmp_path: Path, memory_store) -> None:
    from airflow.sdk import ObjectStoragePath

    local = tmp_path / "song.wav"
    local.write_bytes(b"RIFF" + b"1" * 300)
    assert hook.upload_asset(ObjectStoragePath(f"file://{local}")).content_type == "audio/wav"
    remote = ObjectStoragePath("memory://bucket/voice.mp3")
    with remote.open("wb") as handle:
        handle.write(b"ID3" + b"2" * 400)
    asset = hook.upload_asset(remote)
    assert (asset.content_type, asset.size) == ("audio/mpeg", 403)


def test_upload_retried_with_the_same_bytes(hook: BabouHook, tmp_path: Path, emulator) -> None:
    clip = tmp_path / "c.webm"
    clip.write_bytes(b"W" * 70_000)
    emulator.inject_fault("503_html", method="POST", path="/api/v1/assets$")
    with clip.open("rb") as handle:
        asset = hook.upload_asset(handle)
    assert asset.size == 70_000
    assert route_count(emulator, "POST /api/v1/assets") == 2


def test_upload_input_errors(hook: BabouHook, tmp_path: Path, emulator) -> None:
    with pytest.raises(BabouInputError, match="no such file"):
        hook.upload_asset(tmp_path / "missing.png")
    with pytest.raises(BabouInputError, match="not a regular file"):
        hook.upload_asset(tmp_path)
    odd = tmp_path / "data.xyz123"
    odd.write_bytes(b"1")
    with pytest.raises(BabouInputError, match="cannot guess"):
        hook.upload_asset(odd)
    with pytest.raises(BabouInputError, match="unsupported content type"):
        hook.upload_asset(odd, content_type="application/zip")
    huge = tmp_path / "huge.mp4"
    with huge.open("wb") as handle:  # sparse: nothing is really written
        handle.truncate(100 * 1024 * 1024 + 1)
    with pytest.raises(BabouInputError, match="at most 104857600 bytes"):
        hook.upload_asset(huge)
    assert emulator.stats()["total"]["requests"] == 0


# --------------------------------------------------------------------------- downloads


def test_download_resumes_after_drop(hook: BabouHook, emulator, tmp_path: Path) -> None:
    emulator.configure(mp4_size=2_000_000)
    project_id = completed_export(hook)
    emulator.inject_fault("drop_after", method="GET", path="^/downloads/", after_bytes=700_000, count=2)
    result = hook.download_export(project_id, tmp_path / "v.mp4")
    reference = tmp_path / "ref.mp4"
    hook.download_export(project_id, reference)
    data = reference.read_bytes()
    assert result.size == len(data) == 2_000_000
    assert (
        result.sha256
        == hashlib.sha256(data).hexdigest()
        == hashlib.sha256((tmp_path / "v.mp4").read_bytes()).hexdigest()
    )
    assert route_count(emulator, DOWNLOAD) == 4  # 3 for the resumed download (2 drops), 1 reference
    assert key_stats(emulator)["responses"].get("206", 0) == 2


def test_download_resumes_after_one_early_drop(hook: BabouHook, emulator, tmp_path: Path) -> None:
    project_id = completed_export(hook)
    # The one-chapter video is about 2 KB.
    emulator.inject_fault("drop_after", method="GET", path="^/downloads/", after_bytes=1000)
    result = hook.download_export(project_id, tmp_path / "v.mp4")
    assert result.size == (tmp_path / "v.mp4").stat().st_size
    assert route_count(emulator, DOWNLOAD) == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "v.mp4"]


def test_download_expired_twice(hook: BabouHook, emulator, tmp_path: Path) -> None:
    project_id = completed_export(hook)
    emulator.configure(download_ttl_seconds=0.001)
    status_before = route_count(emulator, "GET /api/v1/projects/{project_id}/export")
    with pytest.raises(BabouDownloadExpiredError, match=r"fetch the export status of prj_.* again") as info:
        hook.download_export(project_id, tmp_path / "v.mp4")
    assert info.value.http_status == 403
    assert route_count(emulator, DOWNLOAD) == 2
    # One status call for the URL, one for the fresh URL, then it gives up.
    assert route_count(emulator, "GET /api/v1/projects/{project_id}/export") - status_before == 2
    assert list(tmp_path.iterdir()) == []


def test_download_expired_url_refreshed(babou_conn: str, emulator, tmp_path: Path) -> None:
    # The emulator mints a fresh URL on every status call, so spoil only the first one.
    spoiled: list[str] = []

    class Spoil(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if request.url.path.endswith("/export") and request.method == "GET" and not spoiled:
                body = json.loads(response.read())
                if body.get("download_url"):
                    body["download_url"] = body["download_url"].split("?")[0] + "?expires=1"
                    spoiled.append(body["download_url"])
                    return httpx.Response(200, json=body)
            return response

    setup = BabouHook(babou_conn)
    project_id = completed_export(setup)
    result = BabouHook(babou_conn, transport=Spoil()).download_export(project_id, tmp_path / "v.mp4")
    assert spoiled
    assert result.size > 0
    assert key_stats(emulator)["responses"]["403"] == 1


def test_download_to_object_storage(hook: BabouHook, tmp_path: Path, memory_store) -> None:
    from airflow.sdk import ObjectStoragePath

    project_id = completed_export(hook)
    local = hook.download_export(project_id, ObjectStoragePath(f"file://{tmp_path}/a.mp4"))
    assert (tmp_path / "a.mp4").stat().st_size == local.size
    target = ObjectStoragePath("memory://videos/out.mp4")
    result = hook.download_export(project_id, target, overwrite=True)
    with target.open("rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == result.sha256 == local.sha256
    with pytest.raises(BabouInputError, match="already exists"):
        hook.download_export(project_id, target)


def test_download_before_completion(hook: BabouHook, emulator, tmp_path: Path) -> None:
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    receipt = hook.submit_prompt(project.id, chapter.id, content="x")
    hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=FAST_POLL, timeout=10)
    emulator.configure(export_queued_seconds=5)
    hook.start_export(project.id)
    assert hook.get_export(project.id).status is ExportStatus.QUEUED
    with pytest.raises(BabouInputError, match="not completed"):
        hook.download_export(project.id, tmp_path / "v.mp4")


# --------------------------------------------------------------------------- MockTransport-only cases


@pytest.mark.parametrize(
    "body",
    [
        [{"id": "prj_a", "name": "a"}, {"id": "prj_b", "name": "b"}],
        {"data": [{"id": "prj_a", "name": "a"}, {"id": "prj_b", "name": "b"}]},
        {"projects": [{"id": "prj_a", "name": "a", "unknown": 1}, {"id": "prj_b", "name": "b"}]},
    ],
)
def test_tolerant_project_lists(mock_hook, body) -> None:
    hook = mock_hook(lambda request: httpx.Response(200, json=body))
    page = hook.list_projects()
    assert [p.id for p in page.items] == ["prj_a", "prj_b"]
    assert page.pagination is None
    assert [p.id for p in hook.iter_projects(page_size=5)] == ["prj_a", "prj_b"]


def test_http_date_retry_after(mock_hook) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            return httpx.Response(
                429, json={"error": "slow down", "code": "X"}, headers={"Retry-After": when}
            )
        return httpx.Response(200, json={"projects": []})

    mock_hook(handler, max_backoff=60).list_projects()
    assert 0.9 <= calls[1] - calls[0] <= 3.5
    parsed = _http.parse_retry_after(email.utils.formatdate(time.time() + 2, usegmt=True))
    assert parsed is not None
    assert 1.0 <= parsed <= 2.1
    assert _http.parse_retry_after("garbage") is None


def test_cdn_download_gets_no_authorization(mock_hook, tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}
    payload = b"\0\0\0\x18ftypmp42" + b"v" * 1000

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("Authorization")
        if request.url.host == "cdn.example.net":
            return httpx.Response(
                200, stream=httpx.ByteStream(payload), headers={"Content-Length": str(len(payload))}
            )
        return httpx.Response(
            200, json={"status": "completed", "download_url": "https://cdn.example.net/v/prj_a.mp4?sig=1"}
        )

    result = mock_hook(handler).download_export("prj_a", tmp_path / "v.mp4")
    assert result.size == len(payload)
    assert seen["api.babou.test"] == f"Bearer {ALICE}"
    assert seen["cdn.example.net"] is None
