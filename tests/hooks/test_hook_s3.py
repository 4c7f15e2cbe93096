"""Downloads to S3 stream: moto's S3 server, reached through the Amazon provider's ObjectStoragePath.

The bytes go from the emulator's response into the object as they arrive; nothing of the video
is written to local disk, a cut stream is resumed into the same upload, and a failed download
leaves neither an object nor an open multipart upload behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_babou.exceptions import BabouInputError, BabouTransportError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.models import DownloadResult
from tests.helpers import DiskWatch, completed_export, key_stats, route_count
from tests.s3 import MotoServer

DOWNLOAD = "GET /downloads/{project_id}.mp4"
MIB = 1024 * 1024
# Several parts of UPLOAD_PART_SIZE (8 MiB): a real multipart upload, cut after its first part.
BIG = 20 * MIB
CUT = 12 * MIB


def _target(bucket: str, key: str = "exports/video.mp4") -> ObjectStoragePath:
    return ObjectStoragePath(f"s3://{bucket}/{key}", conn_id="babou_s3")


def _keys(s3: MotoServer, bucket: str) -> dict[str, int]:
    listing = s3.client().list_objects_v2(Bucket=bucket)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def _uploads(s3: MotoServer, bucket: str) -> list[Any]:
    return list(s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _read(s3: MotoServer, bucket: str, key: str = "exports/video.mp4") -> bytes:
    return bytes(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _check(result: DownloadResult, data: bytes, bucket: str, size: int) -> None:
    assert (result.size, len(data)) == (size, size)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.path == f"s3://babou_s3@{bucket}/exports/video.mp4"  # the conn_id is part of the path


@pytest.fixture
def local_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DiskWatch:
    """Empty temp and working directories for the download, and a watch on what they hold."""
    temp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(cwd)
    return DiskWatch(temp, cwd)


def test_download_streams_into_s3(hook, emulator, s3_server, s3_bucket, local_disk) -> None:
    emulator.configure(mp4_size=BIG)
    project_id = completed_export(hook)
    with local_disk:
        result = hook.download_export(project_id, _target(s3_bucket))
    data = _read(s3_server, s3_bucket)
    _check(result, data, s3_bucket, BIG)
    assert data[4:8] == b"ftyp"  # the emulator's MP4, padded
    assert local_disk.peak == 0
    assert local_disk.unlinked < MIB  # pytest's capture files hold the log lines
    assert _uploads(s3_server, s3_bucket) == []


def test_cut_stream_resumes_into_the_same_upload(hook, emulator, s3_server, s3_bucket, local_disk) -> None:
    emulator.configure(mp4_size=BIG)
    project_id = completed_export(hook)
    emulator.inject_fault("drop_after", method="GET", path="^/downloads/", after_bytes=CUT)
    with local_disk:
        result = hook.download_export(project_id, _target(s3_bucket))
    data = _read(s3_server, s3_bucket)
    _check(result, data, s3_bucket, BIG)
    assert local_disk.peak == 0
    assert local_disk.unlinked < MIB  # pytest's capture files hold the log lines
    assert route_count(emulator, DOWNLOAD) == 2
    assert key_stats(emulator)["responses"]["206"] == 1  # resumed from the byte written, not restarted
    reference = hook.download_export(project_id, Path(tempfile.gettempdir()) / "reference.mp4")
    assert reference.sha256 == result.sha256
    assert _uploads(s3_server, s3_bucket) == []


def test_final_failure_leaves_no_object(make_conn, emulator, s3_server, s3_bucket) -> None:
    hook = BabouHook(make_conn(), timeout=5, max_backoff=0.05, retry_deadline=1)
    emulator.configure(mp4_size=BIG)
    project_id = completed_export(hook)
    # The first request is cut after a part was uploaded; every resume fails until the deadline.
    emulator.inject_fault("drop_after", method="GET", path="^/downloads/", after_bytes=CUT)
    emulator.inject_fault("drop_before", method="GET", path="^/downloads/", count=50)
    with pytest.raises(BabouTransportError, match="/downloads/"):
        hook.download_export(project_id, _target(s3_bucket))
    assert _keys(s3_server, s3_bucket) == {}
    assert _uploads(s3_server, s3_bucket) == []  # the multipart upload was aborted, not completed


def test_existing_object_refused_before_any_request(hook, emulator, s3_server, s3_bucket) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="exports/video.mp4", Body=b"theirs")
    project_id = completed_export(hook)
    before = key_stats(emulator)["requests_by_route"]
    with pytest.raises(BabouInputError, match=r"already exists.*overwrite=True"):
        hook.download_export(project_id, _target(s3_bucket))
    assert key_stats(emulator)["requests_by_route"] == before
    assert _read(s3_server, s3_bucket) == b"theirs"
    result = hook.download_export(project_id, _target(s3_bucket), overwrite=True)
    _check(result, _read(s3_server, s3_bucket), s3_bucket, result.size)


def test_object_appearing_meanwhile_is_not_overwritten(hook, emulator, s3_server, s3_bucket) -> None:
    emulator.configure(mp4_size=BIG)
    project_id = completed_export(hook)
    # The resumed request is held for 2 s: another writer creates the object while ours is open.
    emulator.inject_fault("drop_after", method="GET", path="^/downloads/", after_bytes=CUT)
    emulator.inject_fault("delay_after", method="GET", path="^/downloads/", seconds=2)
    client = s3_server.client()

    def other_writer() -> None:
        while not _uploads(s3_server, s3_bucket):
            threading.Event().wait(0.05)
        client.put_object(Bucket=s3_bucket, Key="exports/video.mp4", Body=b"theirs")

    writer = threading.Thread(target=other_writer, daemon=True)
    writer.start()
    with pytest.raises(BabouInputError, match="appeared while downloading"):
        hook.download_export(project_id, _target(s3_bucket))
    writer.join(5)
    assert _read(s3_server, s3_bucket) == b"theirs"
    assert _uploads(s3_server, s3_bucket) == []


def test_range_ignored_restarts_the_upload(mock_hook, s3_server, s3_bucket, local_disk) -> None:
    # The emulator honours Range; a server that ignores it is a MockTransport's to play.
    payload, cut = b"\x00\x00\x00\x18ftypisom" + os.urandom(BIG - 12), CUT
    ranges: list[str | None] = []

    class CutShort(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield payload[:cut]
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host != "cdn.example.net":
            return httpx.Response(
                200, json={"status": "completed", "download_url": "https://cdn.example.net/v"}
            )
        ranges.append(request.headers.get("Range"))
        body = CutShort() if len(ranges) == 1 else httpx.ByteStream(payload)
        return httpx.Response(200, stream=body, headers={"Content-Length": str(len(payload)), "ETag": '"v"'})

    with local_disk:
        result = mock_hook(handler).download_export("prj_a", _target(s3_bucket))
    assert ranges == [None, f"bytes={cut}-"]  # resumed; the server sent the whole file again
    _check(result, _read(s3_server, s3_bucket), s3_bucket, BIG)
    assert _read(s3_server, s3_bucket) == payload
    assert local_disk.peak == 0
    assert _uploads(s3_server, s3_bucket) == []  # the first upload, a part in, was aborted


def test_missing_bucket_refused_before_any_request(hook, emulator, s3_server, s3_bucket) -> None:
    # The check runs before the export is read, and the download never creates a bucket.
    project_id = completed_export(hook)
    s3_server.client().delete_bucket(Bucket=s3_bucket)
    before = key_stats(emulator)["requests_by_route"]
    with pytest.raises(BabouInputError, match=f"bucket '{s3_bucket}' does not exist"):
        hook.download_export(project_id, _target(s3_bucket))
    assert key_stats(emulator)["requests_by_route"] == before
    buckets = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert s3_bucket not in buckets


@pytest.mark.parametrize("bucket", ["Upper-Case", "under_score", "ab", "a..b", "-dash"])
def test_invalid_bucket_name_is_an_input_error(hook, emulator, s3_server, s3_bucket, bucket) -> None:
    before = key_stats(emulator)["requests_by_route"]
    with pytest.raises(BabouInputError, match="not a valid S3 bucket name"):
        hook.download_export("prj_1", _target(bucket))
    assert key_stats(emulator)["requests_by_route"] == before
