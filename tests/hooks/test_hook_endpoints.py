"""Every endpoint of the hook, sync and async, against the emulator over real HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import BabouInputError, BabouNotFoundError
from airflow_provider_babou.models import AssetState, ChapterStatus, ExportStatus, PromptStatus
from tests.hooks.conftest import FAST_POLL, Api, route_count

SAMPLE_MP4 = (
    Path(__file__).resolve().parents[2] / "airflow_provider_babou" / "emulator" / "data" / "sample.mp4"
)


def _video(api: Api) -> tuple[str, str, str]:
    project = api.create_project(name="Launch", description="demo")
    chapter = api.create_chapter(project.id, name="Intro", duration=10)
    receipt = api.submit_prompt(project.id, chapter.id, content="Show the logo")
    return project.id, chapter.id, receipt.prompt_id


def test_projects(api: Api) -> None:
    created = api.create_project(name="Alpha", description="first", settings={"k": 1})
    assert created.id.startswith("prj_")
    assert created.description == "first"
    assert api.get_project(created.id).name == "Alpha"
    api.create_project(name="Beta")
    api.create_project(name="Alpha")
    page = api.list_projects(limit=2, offset=0)
    assert len(page.items) == 2
    assert page.pagination is not None
    assert page.pagination.total == 3
    assert [p.name for p in api.list_projects(limit=2, offset=2).items] == ["Alpha"]
    assert len(api.collect("iter_projects", page_size=1)) == 3
    found = api.find_projects(name="Alpha")
    assert len(found) == 2
    assert found[0].created_at >= found[1].created_at
    assert api.find_projects(name="nothing") == []


def test_chapters_and_prompts(api: Api) -> None:
    project_id, chapter_id, prompt_id = _video(api)
    chapters = api.list_chapters(project_id)
    assert [c.id for c in chapters] == [chapter_id]
    assert chapters[0].duration == 10
    chapter = api.wait_for_prompt(project_id, chapter_id, prompt_id, poll=FAST_POLL, timeout=10)
    assert chapter.status is ChapterStatus.READY
    assert chapter.prompt_status(prompt_id) is PromptStatus.COMPLETED
    assert api.get_chapter(project_id, chapter_id).find_prompt(prompt_id) is not None
    found = api.find_prompt(project_id, chapter_id, content="Show the logo")
    assert found is not None
    assert found.id == prompt_id
    assert api.find_prompt(project_id, chapter_id, content="other") is None
    no_duration = api.create_chapter(project_id, name="Outro")
    assert no_duration.duration is None


def test_export_and_download(api: Api, tmp_path: Path, emulator: EmulatorControl) -> None:
    project_id, chapter_id, prompt_id = _video(api)
    with pytest.raises(BabouNotFoundError, match="No export found"):
        api.get_export(project_id)
    api.wait_for_prompt(project_id, chapter_id, prompt_id, poll=FAST_POLL, timeout=10)
    receipt = api.start_export(project_id)
    assert receipt.status is ExportStatus.QUEUED
    export = api.wait_for_export(project_id, poll=FAST_POLL, timeout=10)
    assert export.download_url
    assert api.get_export(project_id).status is ExportStatus.COMPLETED
    target = tmp_path / "video.mp4"
    result = api.download_export(project_id, target)
    data = target.read_bytes()
    assert result.size == len(data) == SAMPLE_MP4.stat().st_size
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert data[4:8] == b"ftyp"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
    with pytest.raises(BabouInputError, match="already exists"):
        api.download_export(project_id, target)
    assert api.download_export(project_id, target, overwrite=True).sha256 == result.sha256
    assert route_count(emulator, "GET /downloads/{export_id}.mp4") == 2


def test_assets(api: Api, tmp_path: Path) -> None:
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 5000)
    asset = api.upload_asset(image)
    assert asset.content_type == "image/png"
    assert asset.size == image.stat().st_size
    with image.open("rb") as handle:
        second = api.upload_asset(handle)
    with SAMPLE_MP4.open("rb") as handle:
        video = api.upload_asset(handle, content_type="video/mp4")
    assert video.size == SAMPLE_MP4.stat().st_size
    ready = api.wait_for_asset(asset.id, poll=FAST_POLL, timeout=10)
    assert ready.state is AssetState.READY
    assert api.get_asset(second.id).id == second.id
    page = api.list_assets(limit=2)
    assert len(page.items) == 2
    assert page.pagination is not None
    assert page.pagination.total == 3
    assert {a.id for a in api.collect("iter_assets", page_size=1)} == {asset.id, second.id, video.id}
    assert [a.id for a in api.collect("iter_assets", content_type="video/mp4")] == [video.id]
    assert [a.id for a in api.list_assets(content_type="image/png", state="ready", limit=10).items] in (
        [asset.id],
        [asset.id, second.id],
        [second.id, asset.id],
    )


def test_connection_ok_and_dashboard(api: Api) -> None:
    ok, message = api.test_connection()
    assert ok, message
    assert "Connected" in message
    assert api.dashboard_url("prj_1") is None  # no template in the test connection


def test_dashboard_template(babou_conn, emulator: EmulatorControl) -> None:
    from airflow_provider_babou.hooks.babou import BabouHook

    conn_id = babou_conn("babou_dash", dashboard_url_template="https://app.example/p/{project_id}")
    assert BabouHook(conn_id).dashboard_url("prj_9") == "https://app.example/p/prj_9"
