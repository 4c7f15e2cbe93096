"""``babou_personalized_videos`` in a real deployment on Postgres, under chaos and through an outage.

One deployment serves both scenarios: a private PostgreSQL cluster (``pg_createcluster``), the four
Airflow components as separate processes (LocalExecutor, parallelism 4, retry delay 5 s), the
``babou_api`` pool counting deferred tasks (``--include-deferred``, as the README prescribes), and
an emulator of its own. Each scenario writes the CSV the DAG reads (``BABOU_RECIPIENTS_CSV``),
triggers a run and checks what a user would: the run succeeds, every row has a playable MP4, and
Babou saw exactly one project, two chapters, two prompts and one export per row (no duplicate
spending credits). The failure message reports the tries of every task and what ended each lost
try. Everything is bounded; the components are stopped by process group and the cluster is
dropped in teardown, even on failure.

Wall clock on the project's 2-core machines (Airflow 3.3.2 and 3.1.0 alike): the deployment comes
up in about 25 s, the 20-row chaos run takes about 4 min (each wait resumes its task at least
``min_deferral``, 10 s, after it deferred), the outage run about 1.5 min; the module about 6 min.
Both CI jobs run it (.ci/test);
``pytest -m "not deployment"`` leaves out every real-deployment test for a quick loop.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from tests.conftest import REPO
from tests.deployment.harness import Deployment, key_leaks, running_deployment, unplayable, write_recipients
from tests.deployment.services import PostgresCluster, postgres_cluster
from tests.keys import ALICE

pytestmark = pytest.mark.deployment

DAG_ID = "babou_personalized_videos"
MAPPED = "personalized_video"
POOL_SLOTS = 4
CHAOS_ROWS = 20
CHAOS_RUN_TIMEOUT = 600.0  # ~240 s (measured with min_deferral's hold)
OUTAGE_ROWS = 4
OUTAGE_SECONDS = 40.0
OUTAGE_HOLD = 3.0  # seconds the first project POST's response is held: the outage starts meanwhile
OUTAGE_RUN_TIMEOUT = 300.0  # today's hook: ~60 s
# Short waits, but not the session emulator's sub-second ones: when a trigger fires within a second
# or two of its deferral, the scheduler more often meets the stale "success" of the deferring worker
# after the task has resumed and fails the try (apache/airflow#72716). Measured here on a fault-free
# 20-row run: 1 s prompts / 1 s renders lost 3 tries to that race (run 67 s), 4 s / 3 s lost 1 (80 s).
EMULATOR_ARGS = [
    *("--api-key", ALICE, "--seed", "4242"),
    *("--prompt-seconds", "4", "--export-queued-seconds", "0.2", "--export-processing-seconds", "3"),
]


@pytest.fixture(scope="module")
def chaos_emulator() -> Iterator[EmulatorControl]:
    """An emulator of this module's own (the scenarios change its fault profile), default rate limit."""
    with EmulatorProcess(EMULATOR_ARGS) as process:
        yield EmulatorControl(process.url)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with postgres_cluster("babou_chaos") as cluster:
        yield cluster


@dataclass
class Campaign:
    """What a scenario needs from the shared deployment."""

    deployment: Deployment
    csv_path: Path
    output_dir: Path
    results: list[bool]


@pytest.fixture(scope="module")
def campaign(chaos_emulator: EmulatorControl, postgres: PostgresCluster) -> Iterator[Campaign]:
    home = Path(tempfile.mkdtemp(prefix="babou-chaos-deployment-"))
    csv_path = home / "recipients.csv"
    output_dir = home / "videos"
    output_dir.mkdir()
    conn = {"conn_type": "babou", "host": chaos_emulator.api_url, "password": ALICE}
    with running_deployment(
        home,
        DAG_ID,
        postgres,
        [REPO / "example_dags" / f"{DAG_ID}.py"],
        AIRFLOW_CONN_BABOU_DEFAULT=json.dumps(conn),
        BABOU_OUTPUT_DIR=str(output_dir),
        BABOU_RECIPIENTS_CSV=str(csv_path),
        AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="5",
    ) as deployment:
        deployment.airflow(
            "pools", "set", "babou_api", str(POOL_SLOTS), "Babou API rate limit", "--include-deferred"
        )
        deployment.wait_until_parsed()
        deployment.airflow("dags", "unpause", DAG_ID)
        results: list[bool] = []
        yield Campaign(deployment, csv_path, output_dir, results)
        deployment.passed = bool(results) and all(results)


def _check_video(path: Path) -> str | None:
    """None when ``path`` is an MP4 that PyAV opens and decodes a video frame from, else why not."""
    return unplayable(str(path), path.name) if path.is_file() else f"{path.name}: missing"


def _run(
    campaign: Campaign,
    emulator: EmulatorControl,
    prefix: str,
    rows: int,
    timeout: float,
    while_running: Callable[[], None] | None = None,
) -> tuple[str, list[str], str, float]:
    """Write ``rows`` recipients, trigger a run, wait for its end; return its state, the customer
    ids, the run id and the seconds it took. ``while_running`` is called about every 0.25 s."""
    deployment = campaign.deployment
    busy = deployment.query(
        "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND state NOT IN ('success', 'failed')", DAG_ID
    )
    assert not busy, f"an earlier scenario left runs unfinished: {busy}"
    ids = write_recipients(campaign.csv_path, prefix, rows)
    run_id = f"{prefix}-{int(time.time())}"
    started = time.monotonic()
    deployment.airflow("dags", "trigger", DAG_ID, "--run-id", run_id)

    def probe() -> str | None:
        if while_running is not None:
            while_running()
        return deployment.run_state(run_id)

    try:
        state = deployment.wait_for(f"run {run_id} to finish", probe, timeout, every=0.25)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n{deployment.tries_report(run_id)}\n{emulator.stats(ALICE)['key']}"
        ) from None
    return state, ids, run_id, time.monotonic() - started


def _inventory(emulator: EmulatorControl) -> str:
    """What Babou holds, per project: duplicate projects, chapters and prompts, missing ones."""
    emulator.configure(faults="none")  # the scenario is over: read without faults
    emulator.outage(0)
    with httpx.Client(
        base_url=emulator.api_url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=10
    ) as api:
        projects: list[dict[str, Any]] = []
        while True:
            page = api.get("/projects", params={"limit": 100, "offset": len(projects)}).json()
            projects += page["projects"]
            if not page["projects"] or len(projects) >= page["pagination"]["total"]:
                break
        names = Counter(p["name"] for p in projects)
        findings = [f"project {n!r} x{c}" for n, c in sorted(names.items()) if c > 1]
        for project in sorted(projects, key=lambda p: p["name"]):
            chapters = api.get(f"/projects/{project['id']}/chapters").json()["chapters"]
            prompts = {c["name"]: c["prompt_count"] for c in chapters}
            if len(chapters) != 2 or len(prompts) != 2 or set(prompts.values()) != {1}:
                chapter_names = [c["name"] for c in chapters]
                findings.append(f"{project['name']}: chapters {chapter_names}, prompts per chapter {prompts}")
    return f"in Babou: {len(projects)} projects; " + ("; ".join(findings) or "no duplicates")


def _problems(
    campaign: Campaign, emulator: EmulatorControl, state: str, ids: list[str], run_id: str
) -> list[str]:
    """Everything that differs from a clean campaign: run state, task states, videos, counters, and
    any try lost other than to Airflow's executor race (faults are ridden out inside a try)."""
    deployment = campaign.deployment
    rows = len(ids)
    problems = []
    if state != "success":
        problems.append(f"the run ended {state}")
    mapped = [ti for ti in deployment.task_instances(run_id) if ti[0] == MAPPED]
    not_ok = [ti for ti in mapped if ti[2] != "success"]
    if len(mapped) != rows or not_ok:
        problems.append(f"{len(mapped)} mapped task instances, not successful: {not_ok}")
    videos = [_check_video(campaign.output_dir / "personalized" / f"{c}.mp4") for c in ids]
    bad_videos = [v for v in videos if v is not None]
    if bad_videos:
        problems.append(f"{rows - len(bad_videos)} of {rows} videos; {bad_videos}")
    counts = emulator.stats(ALICE)["key"] or {}
    expected = {
        "projects_created": rows,
        "chapters_created": 2 * rows,
        "prompts_submitted": 2 * rows,
        "exports_started": rows,
    }
    seen = {k: counts.get(k) for k in expected}
    if seen != expected:
        problems.append(
            f"Babou counters {seen}, expected {expected} (a duplicate spends credits); {_inventory(emulator)}"
        )
    lost = deployment.unexplained_tries(run_id)
    if lost:
        problems.append(
            f"tries lost, not to Airflow's executor race: {[(t.task, t.try_number, t.cause) for t in lost]}"
        )
    leaks = key_leaks([deployment.logs, deployment.component_logs], ALICE)
    if leaks:
        problems.append(f"the API key appears in {leaks}")
    return problems


def _report(
    campaign: Campaign, emulator: EmulatorControl, run_id: str, elapsed: float, problems: list[str]
) -> str:
    stats = emulator.stats(ALICE)["key"] or {}
    traffic = {k: stats.get(k) for k in ("requests", "responses", "faults_injected")}
    return "\n".join(
        [
            f"run {run_id}: {elapsed:.0f}s",
            *(f"PROBLEM: {p}" for p in problems),
            campaign.deployment.tries_report(run_id),
            f"emulator traffic: {traffic}",
        ]
    )


def test_chaos_campaign_delivers_every_video_once(
    campaign: Campaign, chaos_emulator: EmulatorControl
) -> None:
    """20 videos under the ``chaos`` fault profile: all delivered, nothing created twice."""
    chaos_emulator.reset()
    chaos_emulator.configure(faults="chaos")
    campaign.results.append(False)
    state, ids, run_id, elapsed = _run(campaign, chaos_emulator, "chaos", CHAOS_ROWS, CHAOS_RUN_TIMEOUT)
    problems = _problems(campaign, chaos_emulator, state, ids, run_id)
    report = _report(campaign, chaos_emulator, run_id, elapsed, problems)
    print(report)
    assert not problems, campaign.deployment.failure(report, run_id)
    campaign.results[-1] = True


def test_outage_during_execute_costs_no_try(campaign: Campaign, chaos_emulator: EmulatorControl) -> None:
    """A 40 s total outage that starts while the tasks are in ``execute()`` is ridden out inside
    the try: the run succeeds with every task on try 1 and nothing is created twice.

    The outage starts right after the first project POST: that POST's response is held back
    (a scripted ``delay_after``) so the outage is surely on when its task sends its next request
    (a chapter POST, whose outcome the task must then settle); tasks that start later meet it at
    their first request, tasks already deferred meet it in the triggerer.

    The only lost try tolerated is one the scheduler takes away itself through the executor race on
    resumed deferred tasks (apache/airflow#72716, the audit log's ``state mismatch``): the task did
    nothing wrong there, and the report lists it.
    """
    chaos_emulator.reset()  # faults "none": the outage is the only fault
    chaos_emulator.inject_fault("delay_after", method="POST", path=r"^/api/v1/projects$", seconds=OUTAGE_HOLD)
    campaign.results.append(False)
    started = time.monotonic()
    outage: dict[str, float] = {}

    def start_outage_after_first_project_post() -> None:
        if outage:
            return
        routes = (chaos_emulator.stats()["total"] or {}).get("requests_by_route", {})
        if routes.get("POST /api/v1/projects", 0) >= 1:
            chaos_emulator.outage(OUTAGE_SECONDS, "drop")
            outage["at"] = time.monotonic() - started

    state, ids, run_id, elapsed = _run(
        campaign,
        chaos_emulator,
        "outage",
        OUTAGE_ROWS,
        OUTAGE_RUN_TIMEOUT,
        while_running=start_outage_after_first_project_post,
    )
    problems = _problems(campaign, chaos_emulator, state, ids, run_id)
    faults = (chaos_emulator.stats(ALICE)["key"] or {}).get("faults_injected", {})
    if not outage:
        problems.append("no project POST reached the emulator: the outage never started")
    elif not faults.get("outage_drop"):
        problems.append("no request arrived during the outage: it proved nothing")
    report = _report(campaign, chaos_emulator, run_id, elapsed, problems)
    report += f"\noutage: {OUTAGE_SECONDS:.0f}s from {outage.get('at', float('nan')):.1f}s into the run"
    print(report)
    assert not problems, campaign.deployment.failure(report, run_id)
    campaign.results[-1] = True
