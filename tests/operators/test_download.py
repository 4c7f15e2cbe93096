"""BabouDownloadExportOperator against the emulator: the file, Asset events, destination checks."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset, ObjectStoragePath

from airflow_provider_babou.exceptions import BabouError, BabouInputError
from airflow_provider_babou.operators._steps import as_location, checked_destination
from airflow_provider_babou.operators.babou import BabouDownloadExportOperator
from tests.download_server import DownloadServer, File
from tests.keys import ALICE
from tests.operators.conftest import BAD_DESTINATIONS, Env, bad_destinations, make_context
from tests.s3 import MotoServer


class TestDownloadExport:
    def test_download_emits_asset_events(self, env: Env, tmp_path: Path) -> None:
        project_id = env.completed_export()
        video, other = Asset("babou://video"), Asset("s3://bucket/other")
        destination = tmp_path / "out" / "run-1" / "video.mp4"  # parents are created
        op = BabouDownloadExportOperator(
            task_id="d", project_id=project_id, destination=str(destination), outlets=[video, other]
        )
        context = make_context()
        result = op.execute(context)
        data = destination.read_bytes()
        assert result["size"] == len(data)
        assert result["sha256"] == hashlib.sha256(data).hexdigest()
        assert result["project_id"] == project_id
        assert result["download_url"]
        assert Path(result["path"]) == destination
        for asset in (video, other):
            assert context["outlet_events"][asset].extra == {
                "project_id": project_id,
                "size": result["size"],
                "sha256": result["sha256"],
                "path": result["path"],
            }
        assert context["ti"].xcoms["babou_video_url"] == result["download_url"]
        # An existing destination is refused before any request, unless overwrite=True.
        before = env.counts()["requests"]
        with pytest.raises(BabouInputError, match="overwrite"):
            op.execute(make_context())
        assert env.counts()["requests"] == before
        op.overwrite = True
        assert op.execute(make_context())["sha256"] == result["sha256"]

    def test_export_not_completed_is_clear(self, env: Env, tmp_path: Path) -> None:
        project_id, _ = env.project_with_prompt()
        env.hook.start_export(project_id)
        with pytest.raises(BabouError, match="not completed"):
            BabouDownloadExportOperator(
                task_id="d", project_id=project_id, destination=str(tmp_path / "v.mp4")
            ).execute(make_context())
        assert not (tmp_path / "v.mp4").exists()

    def test_bad_input_before_any_request(self, env: Env, tmp_path: Path) -> None:
        with pytest.raises(BabouInputError):
            BabouDownloadExportOperator(
                task_id="d", project_id="x y", destination=str(tmp_path / "v.mp4")
            ).execute(make_context())
        with pytest.raises(BabouInputError, match="directory"):
            BabouDownloadExportOperator(task_id="d", project_id="prj_1", destination=str(tmp_path)).execute(
                make_context()
            )
        assert env.counts()["requests"] == 0


@pytest.mark.parametrize("case", BAD_DESTINATIONS)
def test_destination_checked_before_any_request(env: Env, tmp_path: Path, case: str) -> None:
    # Defect 5: a destination no video can be written to fails before Babou is asked anything.
    destination, words = bad_destinations(tmp_path)[case]
    project_id = env.completed_export()  # a download that would otherwise succeed
    requests, posts = env.counts()["requests"], env.posts()
    op = BabouDownloadExportOperator(task_id="d", project_id=project_id, destination=destination)
    with pytest.raises(BabouInputError, match=words):
        op.execute(make_context())
    assert env.posts() == posts
    assert env.counts()["requests"] == requests
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []


def test_download_to_object_storage_path(env: Env, tmp_path: Path) -> None:
    project_id = env.completed_export()
    destination = ObjectStoragePath(f"file://{tmp_path}/video.mp4")
    result = BabouDownloadExportOperator(task_id="d", project_id=project_id, destination=destination).execute(
        make_context()
    )
    assert (tmp_path / "video.mp4").stat().st_size == result["size"]


def test_download_to_s3_feeds_the_asset_event(env: Env, s3_server, s3_bucket) -> None:
    # A templated s3:// string naming the aws connection; streaming is tested in test_hook_s3.py.
    project_id = env.completed_export()
    video = Asset("babou://video")
    destination = f"s3://babou_s3@{s3_bucket}/run-1/video.mp4"
    op = BabouDownloadExportOperator(
        task_id="d", project_id=project_id, destination=destination, outlets=[video]
    )
    context = make_context()
    result = op.execute(context)
    assert result["path"] == destination
    data = s3_server.client().get_object(Bucket=s3_bucket, Key="run-1/video.mp4")["Body"].read()
    assert data[4:8] == b"ftyp"
    assert context["outlet_events"][video].extra == {
        "project_id": project_id,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "path": destination,
    }
    with pytest.raises(BabouInputError, match="already exists"):
        op.execute(make_context())


def test_download_to_s3_through_the_named_connection(env: Env, s3_server: MotoServer, s3_bucket: str) -> None:
    # An s3:// string goes through ObjectStoragePath with dest_conn_id: without it the scheme's
    # default connection (aws_default, absent here) would be used and the write would fail.
    project_id = env.completed_export()
    op = BabouDownloadExportOperator(
        task_id="d",
        project_id=project_id,
        destination=f"s3://{s3_bucket}/runs/v.mp4",
        dest_conn_id="babou_s3",
    )
    result = op.execute(make_context())
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="runs/v.mp4")["Body"].read()
    assert (len(body), hashlib.sha256(body).hexdigest()) == (result["size"], result["sha256"])
    assert result["path"].startswith("s3://")
    assert result["path"].endswith(f"{s3_bucket}/runs/v.mp4")


def test_s3_without_conn_id_uses_aws_default(
    env: Env, s3_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aws_default names the S3 server; boto's own chain (env) would reach a closed port instead.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(s3_server.connection()))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    project_id = env.completed_export()
    destination = f"s3://{s3_bucket}/default/v.mp4"
    result = BabouDownloadExportOperator(task_id="d", project_id=project_id, destination=destination).execute(
        make_context()
    )
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="default/v.mp4")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == result["sha256"]

    # Airflow 3.3 has ObjectStoragePath.conn_id; 3.1 keeps it in storage_options only.
    def conn(path: Any) -> Any:
        return getattr(path, "conn_id", None) or path.storage_options.get("conn_id")

    assert conn(as_location(destination)) == "aws_default"
    assert conn(as_location(f"s3://babou_s3@{s3_bucket}/k")) == "babou_s3"  # the URL's own wins
    assert conn(as_location(destination, "babou_s3")) == "babou_s3"


def test_missing_bucket_fails_before_any_request(env: Env, s3_server: MotoServer, s3_bucket: str) -> None:
    project_id = env.completed_export()
    requests = env.counts()["requests"]
    op = BabouDownloadExportOperator(
        task_id="d", project_id=project_id, destination=f"s3://babou_s3@{s3_bucket}-gone/run/v.mp4"
    )
    with pytest.raises(BabouInputError, match="does not exist"):
        op.execute(make_context())
    assert env.counts()["requests"] == requests
    assert f"{s3_bucket}-gone" not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]


@pytest.mark.parametrize("where", ["/proc/babou-nowhere/out.mp4", "/proc/out.mp4"])
def test_unwritable_destination_fails_before_any_request(env: Env, where: str) -> None:
    # Permission bits say yes to root; only writing tells.
    project_id = env.completed_export()
    requests = env.counts()["requests"]
    with pytest.raises(BabouInputError, match="cannot write"):
        BabouDownloadExportOperator(task_id="d", project_id=project_id, destination=where).execute(
            make_context()
        )
    assert env.counts()["requests"] == requests


def test_destination_probe_leaves_only_the_parents(tmp_path: Path) -> None:
    destination = tmp_path / "a" / "b" / "v.mp4"
    assert checked_destination(str(destination), overwrite=False) == str(destination)
    assert destination.parent.is_dir()
    assert list(destination.parent.iterdir()) == []  # the probe is gone, the parents stay


@pytest.mark.parametrize("body", [b"", b"<html>maintenance</html>"])
def test_no_mp4_no_asset_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    video = Asset("babou://video")
    context = make_context()
    with DownloadServer() as server:
        server.pick = lambda n: File(body)
        conn = {"conn_type": "babou", "host": server.api_url, "password": ALICE}
        monkeypatch.setenv("AIRFLOW_CONN_BABOU_SCRIPT", json.dumps(conn))
        op = BabouDownloadExportOperator(
            task_id="d",
            project_id="prj_script",
            destination=str(tmp_path / "v.mp4"),
            babou_conn_id="babou_script",
            outlets=[video],
        )
        with pytest.raises(BabouError, match=r"empty|not an MP4"):
            op.execute(context)
    assert list(tmp_path.iterdir()) == []
    assert context["outlet_events"][video].extra == {}
