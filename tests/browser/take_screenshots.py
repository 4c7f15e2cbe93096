"""Screenshots of what a user sees of the provider in Airflow's UI, each step checked as it goes.

    BABOU_EXTRAS=dev,browser source .ci/env.sh      # playwright (its driver only; no browser download)
    apt-get install -y chromium                       # Debian's headless Chromium, /usr/bin/chromium
    python -m tests.browser.take_screenshots [--out docs/screenshots]

It starts the emulator and a real deployment (``tests/deployment/harness.py``: api-server,
scheduler, dag-processor and triggerer on SQLite), saves ``babou_default`` without a port from
the CLI, runs ``babou_video_pipeline``, then drives Chromium through the connection form, the
Test button, the providers page, the DAG's docs and the finished run's XCom, links and rendered
templates. Each step asserts what the page shows and the script exits non-zero if one did not,
so a run is a check as well as a set of pictures. It takes about two minutes on two cores, which
is why the default test suite does not run it (``tests/package/test_ui_api.py`` checks the same API
answers in-process in seconds). Every process it starts is stopped by PID on exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_babou.emulator import EmulatorProcess
from tests.deployment.harness import Deployment, running_deployment
from tests.deployment.services import SqliteDatabase

REPO = Path(__file__).resolve().parents[2]

KEY = "sk-bab-emulator-demo-key"
DAG_ID = "babou_video_pipeline"
RUN_TIMEOUT = 240.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETTLE_MS = 3000  # the UI fetches after the first paint


class Shots:
    """One browser page on the deployment's UI, and where its screenshots go."""

    def __init__(self, page: Any, api_url: str, out: Path) -> None:
        self.page = page
        self.api_url = api_url
        self.out = out
        self.failures: list[str] = []

    def open(self, path: str) -> None:
        self.page.goto(self.api_url + path)
        self.page.wait_for_timeout(SETTLE_MS)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.out / f"{name}.png"))
        print(f"  {self.out / name}.png")

    def step(self, name: str, run: Callable[[], None]) -> None:
        print(f"- {name}")
        try:
            run()
        except Exception:  # one broken step must not hide the others' pictures
            self.failures.append(name)
            traceback.print_exc()

    def toast(self) -> str:
        toast = self.page.locator("[data-scope=toast]").last
        toast.wait_for(timeout=20_000)
        self.page.wait_for_timeout(1000)  # the toast slides in
        return str(toast.inner_text())


def connection_form(s: Shots, emulator_api_url: str) -> None:
    """Add a Babou connection through the form, with the Port filled so the Test button works."""
    s.open("/connections")
    s.page.get_by_role("button", name="Add Connection").click()
    dialog = s.page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill("babou_ui")
    dialog.get_by_role("combobox").fill("Babou")
    s.page.keyboard.press("Enter")
    s.page.wait_for_timeout(1000)
    text = dialog.inner_text()
    for label in ("Base URL", "API Key", "Port"):
        assert label in text, f"{label!r} not in the form:\n{text}"
    dialog.get_by_placeholder("https://api.babou.ai/api/v1").fill(emulator_api_url)
    dialog.get_by_placeholder("sk-bab-...").fill(KEY)
    port = dialog.get_by_placeholder("443: optional, lets Airflow 3.3.2's Test button work")
    assert port.input_value() == ""
    s.shot("connection-form")
    port.fill(str(httpx.URL(emulator_api_url).port))
    dialog.get_by_text("Extra Fields", exact=True).click()  # the accordion shows one section
    s.page.wait_for_timeout(1000)
    text = dialog.inner_text()
    for label in ("Retry deadline (seconds)", "Rate limit (requests per second)", "Dashboard URL template"):
        assert label in text, f"{label!r} not in the form:\n{text}"
    s.shot("connection-form-extras")
    dialog.get_by_role("button", name="Save").click()
    s.page.wait_for_timeout(SETTLE_MS)


def edit_form(s: Shots) -> None:
    """The saved connection in the edit form: the key masked, the port kept."""
    s.open("/connections")
    s.page.get_by_role("row").filter(has_text="babou_ui").get_by_role(
        "button", name="Edit Connection"
    ).click()
    dialog = s.page.get_by_role("dialog")
    dialog.wait_for()
    s.page.wait_for_timeout(1000)
    s.shot("connection-edit")
    dialog.get_by_role("button", name="Close").click()


def press_test(s: Shots, conn_id: str) -> str:
    s.open("/connections")
    row = s.page.get_by_role("row").filter(has_text=conn_id)
    row.get_by_role("button", name="Test Connection").click()
    return s.toast()


def test_button(s: Shots, emulator_api_url: str) -> None:
    """The Test button: a connection saved without a port (3.3.2 refuses it), then one with."""
    refused = press_test(s, "babou_default")
    print(f"  babou_default (no port): {refused!r}")
    s.shot("test-button-without-port")
    ok = press_test(s, "babou_ui")
    print(f"  babou_ui (port filled): {ok!r}")
    s.shot("test-button")
    assert f"Connected to Babou at {emulator_api_url}" in ok, ok
    wrong = press_test(s, "babou_wrong_key")
    print(f"  babou_wrong_key: {wrong!r}")
    s.shot("test-button-wrong-key")
    assert "Babou answered: Unauthorized - Invalid API key (HTTP 401)." in wrong, wrong


def providers_page(s: Shots) -> None:
    s.open("/providers")
    row = s.page.get_by_role("row").filter(has_text="airflow-provider-babou")
    text = row.inner_text()
    assert "Babou text-to-video API: projects, chapters" in text, text
    href = row.get_by_role("link", name="airflow-provider-babou").get_attribute("href")
    urls = dict(e.split(", ", 1) for e in metadata("airflow-provider-babou").get_all("Project-URL") or [])
    print(f"  docs link: {href}")
    assert href == urls["Documentation"], (href, urls)
    s.shot("providers")


def dag_docs(s: Shots) -> None:
    s.open(f"/dags/{DAG_ID}")
    s.page.get_by_role("button", name="Dag Docs").click()
    dialog = s.page.get_by_role("dialog")
    dialog.wait_for()
    assert "Three chapters of text to one downloaded MP4" in dialog.inner_text()
    s.shot("dag-docs")


def run_pages(s: Shots, run_id: str) -> None:
    """The finished run: XCom keys of each kind of task, the links, the rendered description."""
    base = f"/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}/tasks"
    expected = {
        "create_project": {"project_id", "babou_project_url", "return_value"},
        "start_export": {"export_id", "babou_project_url", "babou_video_url", "return_value"},
    }
    for task, keys in expected.items():
        s.open(f"{base}/{task}/xcom")
        shown = {k for k in s.page.get_by_role("row").all_inner_texts() for k in [k.split()[0]] if k}
        shown.discard("Key")
        print(f"  {task} XCom keys: {sorted(shown)}")
        assert shown == keys, (task, shown)
        s.shot(f"xcom-{task}")
    s.open(f"{base}/download_video/details")
    links = s.page.get_by_role("link", name="Babou video")
    assert links.count() == 1
    assert "/downloads/" in (links.get_attribute("href") or "")
    s.shot("links-download_video")
    s.open(f"{base}/create_project/rendered_templates")
    assert "[airflow:" not in s.page.locator("main, body").first.inner_text()
    s.shot("rendered-templates-create_project")


def stored_description(emulator_api_url: str) -> str:
    """The project's description as Babou stores it (with the run marker)."""
    answer = httpx.get(f"{emulator_api_url}/projects", headers={"Authorization": f"Bearer {KEY}"})
    body = answer.raise_for_status().json()
    (project,) = body["projects"]
    return str(project["description"])


def finished_run(deployment: Deployment) -> str:
    deployment.airflow("dags", "unpause", DAG_ID)
    deployment.airflow("dags", "trigger", DAG_ID)
    state = deployment.wait_for("the DAG run to finish", deployment.run_state, RUN_TIMEOUT)
    assert state == "success", f"run {state}\n{deployment.diagnostics()}"
    ((run_id,),) = deployment.query("SELECT run_id FROM dag_run WHERE dag_id = ?", DAG_ID)
    return str(run_id)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    timings = ["--prompt-seconds", "1", "--export-queued-seconds", "0.5", "--export-processing-seconds", "1"]
    home = Path(tempfile.mkdtemp(prefix="babou-screenshots-"))
    (home / "videos").mkdir()
    started = time.monotonic()
    with (
        EmulatorProcess(["--api-key", KEY, *timings]) as emulator,
        running_deployment(
            home,
            DAG_ID,
            SqliteDatabase(home / "airflow.db"),
            sorted((REPO / "example_dags").glob("*.py")),
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            BABOU_OUTPUT_DIR=str(home / "videos"),
        ) as deployment,
    ):
        conn = ["--conn-type", "babou", "--conn-host", emulator.api_url, "--conn-password", KEY]
        deployment.airflow("connections", "add", "babou_default", *conn)
        port = str(httpx.URL(emulator.api_url).port)
        wrong = ["--conn-password", "sk-bab-revoked", "--conn-port", port]
        deployment.airflow("connections", "add", "babou_wrong_key", *conn[:4], *wrong)
        deployment.wait_until_parsed()
        run_id = finished_run(deployment)
        description = stored_description(emulator.api_url)
        print(f"run {run_id} finished after {time.monotonic() - started:.0f} s")
        print(f"description stored in Babou: {description!r}")  # the run marker, not in the UI
        assert "[airflow:" in description, description
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                shots = Shots(page, deployment.api_url, args.out)
                shots.step("connection form", lambda: connection_form(shots, emulator.api_url))
                shots.step("edit form", lambda: edit_form(shots))
                shots.step("Test button", lambda: test_button(shots, emulator.api_url))
                shots.step("providers page", lambda: providers_page(shots))
                shots.step("DAG docs", lambda: dag_docs(shots))
                shots.step("run: XCom, links, rendered templates", lambda: run_pages(shots, run_id))
            finally:
                browser.close()
        deployment.passed = not shots.failures
    print(json.dumps({"failed_steps": shots.failures, "seconds": round(time.monotonic() - started)}))
    return 1 if shots.failures else 0


if __name__ == "__main__":
    sys.exit(main())
