"""Bad input to the emulator gets a 4xx or argparse's error, never a 500 or a traceback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from airflow_provider_babou.emulator.config import DEMO_API_KEY
from tests.emulator.helpers import EXPORT_DONE, assert_error, client, project_with_completed_chapter
from tests.keys import ALICE

JSON = {"Content-Type": "application/json"}


def _download_url(api: httpx.Client) -> str:
    project, _ = project_with_completed_chapter(api)
    api.post(f"/projects/{project}/export")
    time.sleep(EXPORT_DONE)
    url: str = api.get(f"/projects/{project}/export").json()["download_url"]
    return url


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/projects", '{"name": "a\\ud800"}'),
        ("/projects", '{"name": "ok", "description": "\\udfff"}'),
        ("/projects", '{"name": "ok", "settings": {"\\ud83d": 1}}'),
        ("{project}/chapters", '{"name": "\\ud800"}'),
        ("{chapter}/prompt", '{"content": "a lone \\ud800 half"}'),
    ],
)
def test_a_lone_surrogate_is_refused_at_input(emulator: EmulatorControl, path: str, body: str) -> None:
    with client(emulator, ALICE) as api:
        project, chapter = project_with_completed_chapter(api)
        url = path.format(project=f"/projects/{project}", chapter=f"/projects/{project}/chapters/{chapter}")
        err = assert_error(api.post(url, content=body, headers=JSON), 400, "VALIDATION_ERROR")
        assert "\\uD800" in err["hint"]
        # Nothing was stored: every read of the key still answers.
        assert api.get("/projects").status_code == 200
        assert api.get(f"/projects/{project}/chapters").status_code == 200
        assert api.get(f"/projects/{project}/chapters/{chapter}").status_code == 200
        paired = api.post("/projects", content='{"name": "\\ud83d\\ude00"}', headers=JSON)  # a pair is fine
        assert paired.json()["name"] == "\N{GRINNING FACE}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/config", '{"faults": 5}'),
        ("PATCH", "/config", '{"faults": ["flaky"]}'),
        ("PATCH", "/config", '{"faults": {"name": []}}'),
        ("PATCH", "/config", '{"faults": {"drop": Infinity}}'),
        ("PATCH", "/config", '{"prompt_seconds": Infinity}'),
        ("PATCH", "/config", '{"download_ttl_seconds": NaN}'),
        ("POST", "/faults", '{"fault": "delay_after", "seconds": Infinity}'),
        ("POST", "/outage", '{"seconds": NaN}'),
    ],
)
def test_control_bodies_of_a_wrong_type_or_not_finite_are_400(
    emulator: EmulatorControl, method: str, path: str, body: str
) -> None:
    before = httpx.get(f"{emulator.url}/_emulator/config").json()
    response = httpx.request(method, f"{emulator.url}/_emulator{path}", content=body, headers=JSON)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert httpx.get(f"{emulator.url}/_emulator/config").json() == before  # nothing changed
    assert httpx.get(f"{emulator.url}/_emulator/outage").json()["active"] is False


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--port", "70000", "argument --port: '70000' is out of range"),
        ("--port", "-1", "argument --port: '-1' is out of range"),
        ("--prompt-seconds", "inf", "argument --prompt-seconds: 'inf' is out of range"),
        ("--export-processing-seconds", "nan", "argument --export-processing-seconds: 'nan' is out of range"),
        ("--download-ttl", "0", "argument --download-ttl: '0' is out of range"),
        ("--rate-burst", "0", "argument --rate-burst: '0' is out of range"),
        ("--mp4-size", "big", "argument --mp4-size: 'big' is not an integer"),
    ],
)
def test_cli_flags_out_of_range_are_argparse_errors(flag: str, value: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_babou.emulator", flag, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("usage: babou-emulator")
    assert lines[-1].startswith(f"babou-emulator: error: {message}")  # one line says what was wrong
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "expires", ["\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT NINE}" * 12, "+9" * 6, " 99"]
)
def test_expires_that_is_not_ascii_digits_is_an_invalid_url(emulator: EmulatorControl, expires: str) -> None:
    with client(emulator, ALICE) as api:
        url = _download_url(api).split("?")[0]
    assert_error(httpx.get(url, params={"expires": expires}), 403, "URL_INVALID")


def test_chapter_durations_are_bounded(emulator: EmulatorControl) -> None:
    with client(emulator, ALICE) as api:
        project = api.post("/projects", json={"name": "p"}).json()["id"]
        for duration in (2**17, 86_401, 10**30):
            err = assert_error(
                api.post(f"/projects/{project}/chapters", json={"name": "c", "duration": duration}),
                400,
                "VALIDATION_ERROR",
            )
            assert err["hint"] == "Duration must be at most 86400 seconds"
        longest = api.post(f"/projects/{project}/chapters", json={"name": "c", "duration": 86_400})
        assert longest.status_code == 200
        chapter = longest.json()["id"]
        api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": "x"})
        time.sleep(0.6)
        assert api.post(f"/projects/{project}/export").status_code == 200
        time.sleep(EXPORT_DONE)
        url = api.get(f"/projects/{project}/export").json()["download_url"]
    assert httpx.get(url, timeout=30).status_code == 200  # the day-long card renders


@pytest.mark.parametrize(
    "value", ["bytes= 1 - 3", "bytes=+1-3", "bytes=1-+3", "bytes=1 -3", "bytes=-+3", "bytes=5-2"]
)
def test_a_syntactically_invalid_range_is_ignored(emulator: EmulatorControl, value: str) -> None:
    with client(emulator, ALICE) as api:
        url = _download_url(api)
    full = httpx.get(url).content
    response = httpx.get(url, headers={"Range": value})
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == full


def test_a_reset_during_downloads_finishes_or_refuses_them_cleanly() -> None:
    """A download under way finishes; one whose video a reset deleted before it was opened is a 404."""
    args = ["--rate-limit", "0", "--prompt-seconds", "0", "--export-queued-seconds", "0"]
    args += ["--export-processing-seconds", "0", "--mp4-size", str(64 * 1024 * 1024)]
    with EmulatorProcess(args) as process, client(EmulatorControl(process.url), DEMO_API_KEY) as api:
        control = EmulatorControl(process.url)
        # Streaming: the first bytes are in, then everything is wiped.
        streamed = 0
        with httpx.stream("GET", _download_url(api), timeout=30) as response:
            chunks = response.iter_raw(1024 * 1024)
            streamed += len(next(chunks))
            control.reset()
            streamed += sum(len(chunk) for chunk in chunks)
        assert streamed == 64 * 1024 * 1024
        # Rendering: a slow first render (long unbroken prompts wrap slowly) that a reset deletes.
        project = api.post("/projects", json={"name": "slow"}).json()["id"]
        for n in range(6):
            chapter = api.post(f"/projects/{project}/chapters", json={"name": f"c{n}"}).json()["id"]
            api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": "w" * 5000})
        assert api.post(f"/projects/{project}/export").status_code == 200
        url = api.get(f"/projects/{project}/export").json()["download_url"]
        answers: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: answers.append(httpx.get(url, timeout=60)))
        thread.start()
        time.sleep(0.3)  # the render is under way
        control.reset()
        thread.join(60)
        [answer] = answers
        assert answer.status_code in (200, 404), answer.text  # finished first, or wiped: never a 500
        assert httpx.get(url).status_code == 404  # the reset wiped the project
        errors = process._err()
    assert "Traceback" not in errors
    assert "Exception" not in errors
