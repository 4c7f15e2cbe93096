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

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_babou.exceptions import BabouInputError, BabouTransportError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.models import DownloadResult
from tests.helpers import FAST_POLL, key_stats, route_count
from tests.s3 import MotoServer

DOWNLOAD = "GET /downloads/{export_id}.mp4"
MIB = 1024 * 1024
# Above s3fs's 50 MiB block, so the upload is a real multipart one; the cut falls after a part.
BIG = 64 * MIB
CUT = 56 * MIB


def _export(hook: BabouHook) -> str:
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    receipt = hook.submit_prompt(project.id, chapter.id, content="x")
    hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=FAST_POLL, timeout=10)
    hook.start_export(project.id)
    hook.wait_for_export(project.id, poll=FAST_POLL, timeout=10)
    return project.id


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


class _DiskWatch:
    """Samples the bytes held under some directories while a download runs; keeps the largest."""

    def __init__(self, *folders: Path) -> None:
        self.folders, self.peak = folders, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used(self) -> int:
        total = 0
        for folder in self.folders:
            for root, _, files in os.walk(folder):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(root, name)).st_blocks * 512
                    except FileNotFoundError:
                        pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> _DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used())


@pytest.fixture
def local_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_DiskWatch]:
    """Empty temp and working directories for the download, and a watch on what they hold."""
    temp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    temp.mkdir()
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(cwd)
    yield _DiskWatch(temp, cwd)


def test_download_streams_into_s3(hook, emulator, s3_server, s3_bucket, local_disk) -> None:
    emulator.configure(mp4_size=BIG)
    project_id = _export(hook)
    with local_disk:
        result = hook.download_export(project_id, _target(s3_bucket))
    data = _read(s3_server, s3_bucket)
    _check(result, data, s3_bucket, BIG)
    assert data[4:8] == b"ftyp"  # the emulator's MP4, padded
    assert local_disk.peak == 0
    assert _uploads(s3_server, s3_bucket) == []
