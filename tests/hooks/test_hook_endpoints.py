"""Every endpoint of the hook against the emulator over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import BabouInputError, BabouNotFoundError
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.models import AssetState, ChapterStatus, ExportStatus, PromptStatus
from tests.helpers import FAST_POLL, route_count

SAMPLE_MP4 = (
    Path(__file__).resolve().parents[2] / "airflow_provider_babou" / "emulator" / "data" / "sample.mp4"
)


def _video(hook: BabouHook) -> tuple[str, str, str]:
    project = hook.create_project(name="Launch", description="demo")
    chapter = hook.create_chapter(project.id, name="Intro", duration=10)
    receipt = hook.submit_prompt(project.id, chapter.id, content="Show the logo")
    return project.id, chapter.id, receipt.prompt_id


def test_projects(hook: BabouHook) -> None:
    created = hook.create_project(name="Alpha", description="first", settings={"k": 1})
    assert created.id.startswith("prj_")
    assert created.description == "first"
    assert hook.get_project(created.id).name == "Alpha"
    hook.create_project(name="Beta")
    hook.create_project(name="Alpha")
    page = hook.list_projects(limit=2, offset=0)
    assert len(page.items) == 2
    assert page.pagination is not None
    assert page.pagination.total == 3
    assert [p.name for p in hook.list_projects(limit=2, offset=2).items] == ["Alpha"]
    assert len(list(hook.iter_projects(page_size=1))) == 3
    found = hook.find_projects(name="Alpha")
    assert len(found) == 2
    assert found[0].created_at >= found[1].created_at
    assert hook.find_projects(name="nothing") == []


def test_iter_projects_pages_past_one_hundred(babou_conn: str, emulator: EmulatorControl) -> None:
    hook = BabouHook(babou_conn, rate_limit=10_000)  # 205 creates: no pacing needed on the emulator
    created = [hook.create_project(name=f"p{i}").id for i in range(205)]
    listed = [p.id for p in hook.iter_projects()]
    assert sorted(listed) == sorted(created)
    assert len(set(listed)) == 205
    # page_size 100: pages of 100, 100 and 5, then the total says it is over
    assert route_count(emulator, "GET /api/v1/projects") == 3
    assert [p.id for p in hook.iter_projects(page_size=37)] == listed
    assert len(hook.find_projects(name="p204")) == 1


def test_chapters_and_prompts(hook: BabouHook) -> None:
    project_id, chapter_id, prompt_id = _video(hook)
    chapters = hook.list_chapters(project_id)
    assert [c.id for c in chapters] == [chapter_id]
    assert chapters[0].duration == 10
    chapter = hook.wait_for_prompt(project_id, chapter_id, prompt_id, poll=FAST_POLL, timeout=10)
    assert chapter.status is ChapterStatus.READY
    assert chapter.prompt_status(prompt_id) is PromptStatus.COMPLETED
    assert hook.get_chapter(project_id, chapter_id).find_prompt(prompt_id) is not None
    found = hook.find_prompt_by_content(project_id, chapter_id, content="Show the logo")
    assert found is not None
    assert found.id == prompt_id
    assert hook.find_prompt_by_content(project_id, chapter_id, content="other") is None
    no_duration = hook.create_chapter(project_id, name="Outro")
    assert no_duration.duration is None


def test_export_and_download(hook: BabouHook, tmp_path: Path, emulator: EmulatorControl) -> None:
    project_id, chapter_id, prompt_id = _video(hook)
    with pytest.raises(BabouNotFoundError, match="No export found"):
        hook.get_export(project_id)
    assert hook.find_export(project_id) is None
    hook.wait_for_prompt(project_id, chapter_id, prompt_id, poll=FAST_POLL, timeout=10)
    receipt = hook.start_export(project_id)
    assert receipt.status is ExportStatus.QUEUED
    export = hook.wait_for_export(project_id, poll=FAST_POLL, timeout=10)
    assert export.download_url
    assert hook.get_export(project_id).status is ExportStatus.COMPLETED
    target = tmp_path / "video.mp4"
    result = hook.download_export(project_id, target)
    data = target.read_bytes()
    assert result.size == len(data) == int(httpx.head(export.download_url).headers["content-length"])
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert data[4:8] == b"ftyp"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
    with pytest.raises(BabouInputError, match="already exists"):
        hook.download_export(project_id, target)
    assert hook.download_export(project_id, target, overwrite=True).sha256 == result.sha256
    assert route_count(emulator, "GET /downloads/{project_id}.mp4") == 2


def test_assets(hook: BabouHook, tmp_path: Path) -> None:
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 5000)
    asset = hook.upload_asset(image)
    assert asset.content_type == "image/png"
    assert asset.size == image.stat().st_size
    with image.open("rb") as handle:
        second = hook.upload_asset(handle)
    with SAMPLE_MP4.open("rb") as handle:
        video = hook.upload_asset(handle, content_type="video/mp4")
    assert video.size == SAMPLE_MP4.stat().st_size
    ready = hook.wait_for_asset(asset.id, poll=FAST_POLL, timeout=10)
    assert ready.state is AssetState.READY
    assert hook.get_asset(second.id).id == second.id
    page = hook.list_assets(limit=2)
    assert len(page.items) == 2
    assert page.pagination is not None
    assert page.pagination.total == 3
    assert {a.id for a in hook.iter_assets(page_size=1)} == {asset.id, second.id, video.id}
    assert [a.id for a in hook.iter_assets(content_type="video/mp4")] == [video.id]
    assert [a.id for a in hook.list_assets(content_type="image/png", state="ready", limit=10).items] in (
        [asset.id],
        [asset.id, second.id],
        [second.id, asset.id],
    )


def test_connection_ok_and_dashboard(make_conn: Callable[..., str]) -> None:
    hook = BabouHook(make_conn("babou_plain"))  # the emulator, no dashboard template
    ok, message = hook.test_connection()
    assert ok, message
    assert "Connected" in message
    assert hook.dashboard_url("prj_1") is None  # no template, and not Babou's own API


def test_dashboard_template(make_conn: Callable[..., str], babou_conn: str) -> None:
    conn_id = make_conn("babou_dash", dashboard_url_template="https://app.example/p/{project_id}")
    assert BabouHook(conn_id).dashboard_url("prj_9") == "https://app.example/p/prj_9"
    assert BabouHook(babou_conn).dashboard_url("prj_9") == "https://app.babou.test/projects/prj_9"
