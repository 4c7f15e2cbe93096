"""Export downloads: a real MP4, padding, ranges, HEAD, expiry, no auth."""

from __future__ import annotations

import io
import time

import av
import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.emulator.helpers import EXPORT_DONE, assert_error, client, project_with_completed_chapter
from tests.keys import ALICE


def _download_url(emulator: EmulatorControl) -> str:
    with client(emulator, ALICE) as api:
        project, _ = project_with_completed_chapter(api)
        api.post(f"/projects/{project}/export")
        time.sleep(EXPORT_DONE)
        url: str = api.get(f"/projects/{project}/export").json()["download_url"]
        return url


def _assert_playable(data: bytes) -> None:
    with av.open(io.BytesIO(data), mode="r") as container:
        assert [s.codec_context.name for s in container.streams] == ["h264"]
        frames = list(container.decode(video=0))
    assert len(frames) > 0


def test_download_is_playable_mp4_without_auth(emulator: EmulatorControl) -> None:
    url = _download_url(emulator)
    response = httpx.get(url)  # no Authorization header
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert int(response.headers["content-length"]) == len(response.content)
    _assert_playable(response.content)


def test_padded_download_exact_size_and_playable(emulator: EmulatorControl) -> None:
    url = _download_url(emulator)
    size = len(httpx.get(url).content)
    emulator.configure(mp4_size=3 * 1024 * 1024 + 7)
    response = httpx.get(url)
    assert len(response.content) == 3 * 1024 * 1024 + 7
    assert response.content[size + 4 : size + 8] == b"free"
    _assert_playable(response.content)


def test_large_download_streams(emulator: EmulatorControl) -> None:
    size = 256 * 1024 * 1024
    emulator.configure(mp4_size=size)
    url = _download_url(emulator)
    started = time.monotonic()
    received = 0
    with httpx.stream("GET", url, timeout=60) as response:
        for chunk in response.iter_raw(1024 * 1024):
            received += len(chunk)
    assert received == size
    assert time.monotonic() - started < 30


def test_range_head_and_416(emulator: EmulatorControl) -> None:
    url = _download_url(emulator)
    full = httpx.get(url).content
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-19/{len(full)}"
    assert part.content == full[10:20]
    suffix = httpx.get(url, headers={"Range": "bytes=-5"})
    assert suffix.status_code == 206
    assert suffix.content == full[-5:]
    tail = httpx.get(url, headers={"Range": f"bytes={len(full) - 3}-"})
    assert tail.content == full[-3:]
    unsatisfiable = httpx.get(url, headers={"Range": f"bytes={len(full)}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(full)}"
    assert httpx.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200  # multi-range ignored
    head = httpx.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(full)


def test_download_url_expiry_and_invalid(emulator: EmulatorControl) -> None:
    # Checked through the URL's own expiry time rather than by sleeping past a 1 s TTL, which a
    # loaded machine can overrun before the first GET.
    emulator.configure(download_ttl_seconds=60)
    issued = time.time()
    url = _download_url(emulator)
    expires = int(httpx.URL(url).params["expires"])
    assert issued + 59 <= expires <= time.time() + 61  # the URL lives download_ttl_seconds
    assert httpx.get(url).status_code == 200
    past = url.replace(f"expires={expires}", f"expires={int(time.time()) - 1}")
    expired = assert_error(httpx.get(past), 403, "URL_EXPIRED", "Download URL has expired")
    assert expired["hint"] == "Get the export status again for a fresh download_url"
    assert_error(httpx.get(url.split("?")[0]), 403, "URL_INVALID")
    far = int(time.time()) + 100
    assert_error(httpx.get(f"{emulator.url}/downloads/exp_nope.mp4?expires={far}"), 404, "NOT_FOUND")


@pytest.mark.parametrize("after_bytes", [0, 1000])
def test_download_drop_after_bytes(emulator: EmulatorControl, after_bytes: int) -> None:
    url = _download_url(emulator)
    size = int(httpx.head(url).headers["content-length"])
    assert size > 1000
    emulator.inject_fault("drop_after", path=r"^/downloads/", after_bytes=after_bytes)
    received = 0
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", url) as response:  # noqa: PT012
        assert int(response.headers["content-length"]) == size
        for chunk in response.iter_raw():
            received += len(chunk)
    assert received == after_bytes
    assert httpx.get(url).status_code == 200


def test_download_url_names_the_project_as_the_docs_do(emulator: EmulatorControl) -> None:
    """``.../prj_x.mp4``: the same path for every export of the project (only ``expires`` differs);
    a re-export replaces the video behind it once it completes, never before."""
    with client(emulator, ALICE) as api:
        project, chapter = project_with_completed_chapter(api, "First take")
        api.post(f"/projects/{project}/export")
        time.sleep(EXPORT_DONE)
        first = api.get(f"/projects/{project}/export").json()["download_url"]
        assert httpx.URL(first).path == f"/downloads/{project}.mp4"
        first_video = httpx.get(first).content
        api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": "Second take"})
        time.sleep(0.6)
        emulator.configure(export_queued_seconds=30)
        assert api.post(f"/projects/{project}/export").status_code == 200
        assert httpx.get(first).content == first_video  # the re-export is queued: still the old video
    emulator.reset()


def test_a_completed_re_export_is_served_under_the_same_path(emulator: EmulatorControl) -> None:
    with client(emulator, ALICE) as api:
        project, chapter = project_with_completed_chapter(api, "First take")
        api.post(f"/projects/{project}/export")
        time.sleep(EXPORT_DONE)
        first = api.get(f"/projects/{project}/export").json()["download_url"]
        first_video = httpx.get(first).content
        api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": "Second take"})
        time.sleep(0.6)
        api.post(f"/projects/{project}/export")
        time.sleep(EXPORT_DONE)
        second = api.get(f"/projects/{project}/export").json()["download_url"]
    assert httpx.URL(second).path == httpx.URL(first).path
    second_video = httpx.get(second).content
    assert second_video != first_video  # the new render, behind the same path
    assert httpx.get(first).content == second_video  # an older URL of the project serves it too


def test_the_etag_is_the_export_and_if_range_honours_it(emulator: EmulatorControl) -> None:
    """A resume can prove it continues the same file: ``If-Range`` with another export's ETag gets
    the whole (new) file, with this one's the range."""
    url = _download_url(emulator)
    whole = httpx.get(url)
    etag = whole.headers["etag"]
    assert etag.startswith('"exp_')  # strong: no W/
    same = httpx.get(url, headers={"Range": "bytes=10-", "If-Range": etag})
    assert (same.status_code, same.content) == (206, whole.content[10:])
    assert same.headers["etag"] == etag
    other = httpx.get(url, headers={"Range": "bytes=10-", "If-Range": '"exp_older"'})
    assert (other.status_code, other.content) == (200, whole.content)
