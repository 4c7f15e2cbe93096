"""The export's MP4 shows the project: a title card per included chapter, held for its duration."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from airflow_provider_babou.emulator import DEMO_API_KEY, EmulatorControl, EmulatorProcess
from airflow_provider_babou.emulator.config import SAMPLE_MP4
from airflow_provider_babou.emulator.video import Segment, VideoPlan, render_card
from tests.emulator.helpers import EXPORT_DONE, PROMPT_DONE, client, project_with_completed_chapter
from tests.keys import ALICE


def _frames(data: bytes) -> list[tuple[Fraction, Fraction, bool, Image.Image]]:
    """Each decoded frame as (start, duration in seconds, keyframe?, picture)."""
    with av.open(io.BytesIO(data)) as container:
        return [
            (
                Fraction(frame.pts) * frame.time_base,
                Fraction(frame.duration) * frame.time_base,
                frame.key_frame,
                frame.to_image(),
            )
            for frame in container.decode(video=0)
        ]


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel value (0-255) of two same-sized RGB images."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def _export(api: httpx.Client, project: str, meanwhile: Callable[[], object] = lambda: None) -> str:
    """Export ``project`` (calling ``meanwhile`` right after the start); its download URL."""
    assert api.post(f"/projects/{project}/export").status_code == 200
    meanwhile()
    time.sleep(EXPORT_DONE)
    status = api.get(f"/projects/{project}/export").json()
    assert status["status"] == "completed", status
    url: str = status["download_url"]
    return url


def _project(api: httpx.Client, chapters: list[tuple[str, int | None, str | None]]) -> str:
    """A project with ``(name, duration, prompt or None)`` chapters; prompts completed or failed."""
    project: str = api.post("/projects", json={"name": "Launch film"}).json()["id"]
    for name, duration, prompt in chapters:
        body = {"name": name} if duration is None else {"name": name, "duration": duration}
        chapter = api.post(f"/projects/{project}/chapters", json=body).json()["id"]
        if prompt is not None:
            api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": prompt})
    time.sleep(PROMPT_DONE)
    return project


def test_video_shows_included_chapters_in_order_for_their_durations(emulator: EmulatorControl) -> None:
    with client(emulator, ALICE) as api:
        project = _project(
            api,
            [
                ("Opening", 3, "A sunrise over the harbour, gulls, the logo fades in."),
                ("No prompt", 9, None),  # never completed: left out
                ("Broken", 9, "[[emulator:fail]] this one fails"),  # latest prompt failed: left out
                ("Unset", None, "The team at work, close-ups of hands and screens."),
                ("Close", 1, "Thank you.\nSee you next time."),
            ],
        )
        opening = api.get(f"/projects/{project}/chapters").json()["chapters"][0]["id"]
        # A prompt submitted while the export runs shows in the next export, not this one.
        url = _export(
            api,
            project,
            lambda: api.post(f"/projects/{project}/chapters/{opening}/prompt", json={"content": "Changed"}),
        )
        assert api.get(f"/projects/{project}/export").json()["duration_seconds"] == 6
    frames = _frames(httpx.get(url).content)
    assert [(start, length, key) for start, length, key, _ in frames] == [
        (0, 3, True),
        (3, 2, True),  # no duration: 2 s
        (5, 1, True),
    ]
    plan = VideoPlan(
        "Launch film",
        (
            Segment("Opening", "A sunrise over the harbour, gulls, the logo fades in.", 3),
            Segment("Unset", "The team at work, close-ups of hands and screens.", 2),
            Segment("Close", "Thank you.\nSee you next time.", 1),
        ),
    )
    cards = [render_card(plan, i) for i in range(3)]
    for index, (_, _, _, picture) in enumerate(frames):
        # Each frame is its own chapter's card up to compression (~1.5), and clearly not another's.
        errors = [_difference(picture, card) for card in cards]
        assert errors[index] < 2.5, errors
        assert all(error > 10 for i, error in enumerate(errors) if i != index), errors
    # The text counts: the same card with the later prompt's text is farther than compression.
    changed = VideoPlan(plan.project, (Segment("Opening", "Changed", 3), *plan.segments[1:]))
    assert _difference(frames[0][3], render_card(changed, 0)) > 2.5


def test_first_downloads_render_once_and_ranges_come_from_the_cached_file(emulator: EmulatorControl) -> None:
    with client(emulator, ALICE) as api:
        project, _ = project_with_completed_chapter(api, "One chapter, five seconds")
        url = _export(api, project)
    with ThreadPoolExecutor(4) as pool:  # concurrent first requests, one of them a HEAD
        heads = pool.submit(httpx.head, url)
        bodies = [f.result().content for f in [pool.submit(httpx.get, url) for _ in range(3)]]
    assert bodies[0] == bodies[1] == bodies[2]
    full = bodies[0]
    assert int(heads.result().headers["content-length"]) == len(full)
    assert [(start, length) for start, length, _, _ in _frames(full)] == [(0, 5)]
    part = httpx.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == full[100:1100]
    assert httpx.get(url, headers={"Range": "bytes=-10"}).content == full[-10:]
    assert emulator.stats(ALICE)["key"]["videos_rendered"] == 1
    with client(emulator, ALICE) as api:  # a new export of the same project renders anew
        url = _export(api, project)
    assert httpx.get(url).content != b""
    assert emulator.stats(ALICE)["key"]["videos_rendered"] == 2


def test_padding_keeps_the_rendered_video_playable(emulator: EmulatorControl) -> None:
    with client(emulator, ALICE) as api:
        project, _ = project_with_completed_chapter(api)
        url = _export(api, project)
    video = httpx.get(url).content
    emulator.configure(mp4_size=len(video) + 4)  # no room for a box: served as rendered
    assert httpx.get(url).content == video
    emulator.configure(mp4_size=1024 * 1024 + 3)
    padded = httpx.get(url)
    assert int(padded.headers["content-length"]) == len(padded.content) == 1024 * 1024 + 3
    assert padded.content[: len(video)] == video
    assert padded.content[len(video) + 4 : len(video) + 8] == b"free"
    assert [f[:3] for f in _frames(padded.content)] == [f[:3] for f in _frames(video)]
    tail = httpx.get(url, headers={"Range": f"bytes={len(video) - 2}-{len(video) + 9}"}).content
    assert tail == padded.content[len(video) - 2 : len(video) + 10]
    assert emulator.stats(ALICE)["key"]["videos_rendered"] == 1


# An emulator of its own whose prompts and exports finish at once.
_FAST = [
    *("--rate-limit", "0", "--prompt-seconds", "0"),
    *("--export-queued-seconds", "0", "--export-processing-seconds", "0"),
]


def test_videos_live_in_a_temp_dir_removed_on_reset_and_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with EmulatorProcess(_FAST) as process, client(EmulatorControl(process.url), DEMO_API_KEY) as api:
        url = _export(api, _project(api, [("Only", 1, "Hello")]))
        assert httpx.get(url).status_code == 200
        [directory] = tmp_path.iterdir()
        assert directory.name.startswith("babou-emulator-videos-")
        [video] = directory.iterdir()  # named by the export (the URL names the project)
        assert re.fullmatch(r"exp_[A-Za-z0-9]{21}\.mp4", video.name)
        EmulatorControl(process.url).reset()
        assert list(directory.iterdir()) == []
    assert list(tmp_path.iterdir()) == []  # the emulator removed its directory when it stopped


def test_without_pyav_downloads_are_the_sample_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that fails to import stands in for an install without the emulator extra.
    (tmp_path / "av.py").write_text("raise ImportError(\"No module named 'av'\")\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    with EmulatorProcess(_FAST) as process, client(EmulatorControl(process.url), DEMO_API_KEY) as api:
        url = _export(api, _project(api, [("Only", 1, "Hello")]))
        assert httpx.get(url).content == SAMPLE_MP4.read_bytes()
        assert EmulatorControl(process.url).stats()["total"]["videos_rendered"] == 0
        warning = process._err()  # the server's stderr so far
    assert warning == (
        "babou-emulator: export videos are the bundled sample MP4, not the project's chapters "
        "(No module named 'av'); install 'airflow-provider-babou[emulator]' for rendered videos"
    )
