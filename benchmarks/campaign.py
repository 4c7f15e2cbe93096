"""The same rows through the mapped example and through the campaign operator, in real deployments.

Run from the repository root (after ``source .ci/env.sh`` once)::

    python benchmarks/campaign.py                      # 1,000 campaign rows, 200 mapped, 10,000,
                                                       # failures, 30,000 projects
    python benchmarks/campaign.py --quick              # a smoke run of every scenario, small (a few minutes)
    python benchmarks/campaign.py --only campaign,mapped --rows 1000 --mapped-rows 200

One emulator on a free 127.0.0.1 port (default timings: prompts 1.5 s, exports 0.5 + 1.5 s),
limited to ``--rate`` requests/s per key (burst the same). Deployment A (the deployment tests'
harness: api-server, scheduler, dag-processor, triggerer as separate processes, LocalExecutor with
parallelism 16, a private Postgres cluster, pool ``babou_api`` of 64 slots ``--include-deferred``,
connection ``babou_default`` with ``rate_limit`` = ``--rate``) runs, one after the other:

* ``campaign``: ``babou_campaign`` over ``--rows`` rows of two-chapter videos, in chunks of
  ``--chunk-size`` rows (one mapped ``BabouCampaignOperator`` each);
* ``mapped``: ``babou_personalized_videos`` over ``--mapped-rows`` rows (one mapped
  ``BabouGenerateVideoOperator`` per row);
* ``fail``: ``babou_campaign`` over ``--fail-rows`` rows with 5% of its prompts failing (emulator
  ``fail-next``, sent right after the run is triggered): the failed try must name exactly the
  failed rows, its retry must send prompts and exports for those rows only and make no project or
  chapter, and the manifests must then be complete;
* ``seed``: ``babou_campaign`` over ``--seed-rows`` rows in an account holding ``--seed-projects``
  old projects; the task process of the first try is SIGKILLed while it creates projects (a lost
  worker): that try must make no ``GET /api/v1/projects``, the retry's search a bounded number.

Deployment B (same settings, its own key, connection ``rate_limit`` = ``--big-rate``, the emulator
raised to that rate) runs ``big``: ``babou_campaign`` over ``--big-rows`` rows.

For each run: wall time (trigger to final state), emulator requests per video by route, the 429
share, Airflow CPU seconds per video by component (psutil on each component's process tree every
0.2 s: live processes' own and reaped children's times, so task processes that exited count), task
processes seen, peak worker memory, tries lost (``Deployment.lost_tries``/``unexplained_tries``),
every MP4 decoded (``unplayable``) and Babou's counters (no project made twice). Prints JSON lines
and a markdown report; ``--write`` puts the report in ``benchmarks/campaign_results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess  # noqa: E402
from tests.deployment.harness import (  # noqa: E402
    CREATES,
    Deployment,
    read_manifests,
    running_deployment,
    unplayable,
    write_recipients,
)
from tests.deployment.services import postgres_cluster  # noqa: E402

CAMPAIGN = "babou_campaign"
MAPPED = "babou_personalized_videos"
KEY_A = "sk-bab-bench-campaign-a"
KEY_B = "sk-bab-bench-campaign-b"
COMPONENTS = ("scheduler", "workers", "api-server", "triggerer", "dag-processor")
SAMPLE_EVERY = 0.2
RETRY_DELAY = 30  # seconds: long enough to read the counters between a failed try and its retry


# -- CPU and memory of each component's process tree ----------------------------------------------


def _is_worker(proc: psutil.Process) -> bool:
    """LocalExecutor workers ("airflow worker -- LocalExecutor: ...") and the task processes they
    fork ("airflow worker -- <ti id>")."""
    try:
        return " ".join(proc.cmdline()).startswith("airflow worker --")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _is_task(proc: psutil.Process) -> bool:
    try:
        title = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return title.startswith("airflow worker --") and "LocalExecutor" not in title


class Sampler(threading.Thread):
    """Samples every component's process tree: CPU (own + reaped children, so processes that exited
    and were waited for within the tree still count), task processes seen, worker memory."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(daemon=True)
        self.deployment = deployment
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.task_pids: set[tuple[int, float]] = set()
        self.peak_worker_rss = 0  # PSS summed over worker processes and task processes
        self.peak_task_rss = 0  # one task process
        self.cpu: dict[str, float] = dict.fromkeys(COMPONENTS, 0.0)

    def reset_peaks(self) -> None:
        with self.lock:
            self.peak_worker_rss = self.peak_task_rss = 0
            self.task_pids = set()

    def measure(self) -> dict[str, float]:
        cpu = dict.fromkeys(COMPONENTS, 0.0)
        worker_rss = 0
        for name, popen in list(self.deployment.procs.items()):
            try:
                root = psutil.Process(popen.pid)
                times = root.cpu_times()
            except psutil.NoSuchProcess:
                continue
            own_bucket = name
            cpu[own_bucket] = cpu.get(own_bucket, 0.0) + times.user + times.system
            # Reaped children: for the scheduler, its executor workers (and what they reaped).
            reaped = "workers" if name == "scheduler" else own_bucket
            cpu[reaped] = cpu.get(reaped, 0.0) + times.children_user + times.children_system
            for child in root.children(recursive=True):
                try:
                    with child.oneshot():
                        t = child.cpu_times()
                        worker = name == "scheduler" and _is_worker(child)
                        # PSS: forked workers share most pages; their RSS would count them each time.
                        rss = child.memory_full_info().pss if worker else 0
                        task = worker and _is_task(child)
                        created = child.create_time()
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                bucket = "workers" if worker else own_bucket
                cpu[bucket] += t.user + t.system + t.children_user + t.children_system
                if worker:
                    worker_rss += rss
                if task:
                    with self.lock:
                        self.task_pids.add((child.pid, created))
                        self.peak_task_rss = max(self.peak_task_rss, rss)
        with self.lock:
            self.peak_worker_rss = max(self.peak_worker_rss, worker_rss)
            self.cpu = cpu
        return cpu

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY):
            with contextlib.suppress(Exception):  # a component going away mid-sample
                self.measure()

    def tasks_alive(self) -> bool:
        proc = self.deployment.procs.get("scheduler")
        if proc is None:
            return False
        with contextlib.suppress(psutil.NoSuchProcess):
            return any(_is_task(c) for c in psutil.Process(proc.pid).children(recursive=True))
        return False


# -- one run ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    scenario: str
    dag_id: str
    rows: int
    run_id: str
    state: str = ""
    wall: float = 0.0
    requests: int = 0
    by_route: dict[str, int] = dataclasses.field(default_factory=dict)
    responses_429: int = 0
    created: dict[str, int] = dataclasses.field(default_factory=dict)
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    task_processes: int = 0
    peak_worker_rss_mib: float = 0.0
    peak_task_rss_mib: float = 0.0
    lost_tries: list[str] = dataclasses.field(default_factory=list)
    unexplained_tries: list[str] = dataclasses.field(default_factory=list)
    videos_valid: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())

    def per_video(self, value: float) -> float:
        return value / self.rows if self.rows else math.nan


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    keys = set(before) | set(after)
    return {
        k: int(after.get(k, 0)) - int(before.get(k, 0))
        for k in sorted(keys)
        if after.get(k, 0) != before.get(k, 0)
    }


def _counters(emulator: EmulatorControl, key: str) -> dict[str, Any]:
    return emulator.stats(key)["key"] or {}


def trigger(deployment: Deployment, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
    """Trigger through the REST API (a CLI call would cost seconds of start-up)."""
    deployment.api(
        "POST",
        f"/api/v2/dags/{dag_id}/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
    )


def run_dag(
    deployment: Deployment,
    sampler: Sampler,
    emulator: EmulatorControl,
    key: str,
    result: Result,
    conf: dict[str, Any],
    timeout: float,
    *,
    after_trigger: Callable[[], None] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Trigger ``result.dag_id``, wait for its final state; fill the common figures. Returns the
    counters and CPU at the start (for scenarios that look further)."""
    view = dataclasses.replace(deployment, dag_id=result.dag_id)
    while sampler.tasks_alive():  # the previous run's last task processes are exiting
        time.sleep(0.5)
    stats0, cpu0 = _counters(emulator, key), sampler.measure()
    sampler.reset_peaks()
    started = time.monotonic()
    trigger(deployment, result.dag_id, result.run_id, conf)
    if after_trigger is not None:
        after_trigger()

    def probe() -> str | None:
        if on_tick is not None:
            on_tick()
        return view.run_state(result.run_id)

    result.state = view.wait_for(f"run {result.run_id}", probe, timeout, every=0.5)
    result.wall = time.monotonic() - started
    settle = time.monotonic() + 30
    while sampler.tasks_alive() and time.monotonic() < settle:
        time.sleep(0.2)
    stats1, cpu1 = _counters(emulator, key), sampler.measure()
    result.requests = int(stats1.get("requests", 0)) - int(stats0.get("requests", 0))
    result.by_route = _delta(stats0.get("requests_by_route", {}), stats1.get("requests_by_route", {}))
    result.responses_429 = _delta(stats0.get("responses", {}), stats1.get("responses", {})).get("429", 0)
    result.created = {k: int(stats1.get(k, 0)) - int(stats0.get(k, 0)) for k in CREATES}
    result.cpu = {k: round(cpu1.get(k, 0.0) - cpu0.get(k, 0.0), 2) for k in COMPONENTS}
    with sampler.lock:
        result.task_processes = len(sampler.task_pids)
        result.peak_worker_rss_mib = round(sampler.peak_worker_rss / 2**20, 1)
        result.peak_task_rss_mib = round(sampler.peak_task_rss / 2**20, 1)
    lost = view.lost_tries(result.run_id)
    result.lost_tries = [f"{t.task} try {t.try_number}: {t.cause[:160]}" for t in lost]
    return stats0, cpu0


def check_videos(result: Result, paths: list[Path]) -> None:
    bad = []
    for path in paths:
        if not path.is_file():
            bad.append(f"{path.name}: missing")
            continue
        problem = unplayable(str(path), path.name)
        if problem:
            bad.append(problem)
    result.videos_valid = len(paths) - len(bad)
    if bad:
        result.problems.append(f"{len(bad)} of {len(paths)} videos bad, e.g. {bad[:3]}")


def check_created(
    result: Result, rows: int, *, prompts: int | None = None, exports: int | None = None
) -> None:
    expected = {
        "projects_created": rows,
        "chapters_created": 2 * rows,
        "prompts_submitted": 2 * rows if prompts is None else prompts,
        "exports_started": rows if exports is None else exports,
    }
    if result.created != expected:
        result.problems.append(f"Babou counters {result.created}, expected {expected}")


def check_manifests(result: Result, folder: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = read_manifests(folder)
    not_done = [k for k in ids if rows.get(k, {}).get("stage") != "done"]
    if not_done or len(rows) != len(ids):
        result.problems.append(f"manifests: {len(rows)} rows, not done: {not_done[:5]} ({len(not_done)})")
    wrong = []
    for key in ids:
        record, path = rows.get(key, {}), folder / f"{key}.mp4"
        if path.is_file():
            data = path.read_bytes()
            if (len(data), hashlib.sha256(data).hexdigest()) != (record.get("size"), record.get("sha256")):
                wrong.append(key)
    if wrong:
        result.problems.append(f"manifest size/sha256 differ from the file for {wrong[:5]} ({len(wrong)})")
    return rows


def campaign_folder(output: Path, run_id: str) -> Path:
    return output / "campaign" / run_id.replace(":", "_")


# -- scenarios --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    deployment: Deployment
    sampler: Sampler
    emulator: EmulatorControl
    key: str
    home: Path
    output: Path
    timeout: float

    def rows_csv(self, name: str, count: int) -> tuple[Path, list[str]]:
        path = self.home / f"{name}.csv"
        return path, write_recipients(path, name, count)


def campaign_scenario(setup: Setup, name: str, rows: int, **hooks: Any) -> tuple[Result, list[str]]:
    csv_path, ids = setup.rows_csv(name, rows)
    result = Result(name, CAMPAIGN, rows, f"bench-{name}-{int(time.time())}")
    conf = {"rows": str(csv_path), "output": str(setup.output)}
    run_dag(setup.deployment, setup.sampler, setup.emulator, setup.key, result, conf, setup.timeout, **hooks)
    return result, ids


def finish_campaign(setup: Setup, result: Result, ids: list[str]) -> None:
    view = dataclasses.replace(setup.deployment, dag_id=CAMPAIGN)
    result.unexplained_tries = [
        f"{t.task} try {t.try_number}: {t.cause[:160]}" for t in view.unexplained_tries(result.run_id)
    ]
    folder = campaign_folder(setup.output, result.run_id)
    check_manifests(result, folder, ids)
    check_videos(result, [folder / f"{k}.mp4" for k in ids])
    if result.state != "success":
        result.problems.append(f"run ended {result.state}")


def scenario_campaign(setup: Setup, rows: int, name: str = "campaign") -> Result:
    result, ids = campaign_scenario(setup, name, rows)
    finish_campaign(setup, result, ids)
    check_created(result, rows)
    if result.unexplained_tries:
        result.problems.append(f"tries lost, not to the executor race: {result.unexplained_tries}")
    return result


def scenario_mapped(setup: Setup, rows: int) -> Result:
    csv_path = Path(setup.deployment.env["BABOU_RECIPIENTS_CSV"])
    ids = write_recipients(csv_path, "mapped", rows)  # the file the DAG reads at run time
    result = Result("mapped", MAPPED, rows, f"bench-mapped-{int(time.time())}")
    conf = {"output": str(setup.output)}
    run_dag(setup.deployment, setup.sampler, setup.emulator, setup.key, result, conf, setup.timeout)
    view = dataclasses.replace(setup.deployment, dag_id=MAPPED)
    result.unexplained_tries = [
        f"{t.task} try {t.try_number}: {t.cause[:160]}" for t in view.unexplained_tries(result.run_id)
    ]
    check_videos(result, [setup.output / "personalized" / f"{k}.mp4" for k in ids])
    check_created(result, rows)
    if result.state != "success":
        result.problems.append(f"run ended {result.state}")
    if result.unexplained_tries:
        result.problems.append(f"tries lost, not to the executor race: {result.unexplained_tries}")
    return result


def _chapters(setup: Setup, project_id: str, chapter_ids: list[str]) -> list[dict[str, Any]]:
    """Each chapter with its prompts' history (``GET`` of one chapter; the listing has no prompts)."""
    chapters = []
    with httpx.Client(
        base_url=setup.emulator.api_url, headers={"Authorization": f"Bearer {setup.key}"}, timeout=30
    ) as api:
        for chapter_id in chapter_ids:
            response = api.get(f"/projects/{project_id}/chapters/{chapter_id}")
            response.raise_for_status()
            chapters.append(response.json())
    return chapters


def _failed_in_log(text: str) -> tuple[int | None, set[str]]:
    """From the failed try's log: the count the error gives and the row keys it names."""
    found = re.search(r"(\d+) of (\d+) rows failed: (.*)", text)
    if not found:
        return None, set()
    return int(found.group(1)), set(
        re.findall(r"'([^'\s]+)' \((?:prompt|export|download|write):", found.group(3))
    )


def scenario_fail(setup: Setup, rows: int) -> Result:
    prompts = 2 * rows
    failing = max(1, round(0.05 * prompts))
    view = dataclasses.replace(setup.deployment, dag_id=CAMPAIGN)
    first: dict[str, Any] = {}
    run_id_box: list[str] = []

    def after_trigger() -> None:
        setup.emulator.fail_next(setup.key, "prompt", count=failing, message="Generation failed: bench")

    def on_tick() -> None:
        # Between the failed tries and their retries (RETRY_DELAY): the counters and manifests.
        if first or not run_id_box:
            return
        tis = view.task_instances(run_id_box[0])
        chunks = [t for t in tis if t[0] == "campaign"]
        if (
            chunks
            and all(t[2] in ("up_for_retry", "success", "failed") for t in chunks)
            and any(t[2] == "up_for_retry" for t in chunks)
            and all(t[3] == 1 for t in chunks)
        ):
            first["stats"] = _counters(setup.emulator, setup.key)
            first["manifest"] = read_manifests(campaign_folder(setup.output, run_id_box[0]))
            first["chunks"] = chunks

    csv_path, ids = setup.rows_csv("fail", rows)
    result = Result("fail", CAMPAIGN, rows, f"bench-fail-{int(time.time())}")
    run_id_box.append(result.run_id)
    conf = {"rows": str(csv_path), "output": str(setup.output)}
    stats0, _ = run_dag(
        setup.deployment,
        setup.sampler,
        setup.emulator,
        setup.key,
        result,
        conf,
        setup.timeout,
        after_trigger=after_trigger,
        on_tick=on_tick,
    )
    finish_campaign(setup, result, ids)
    notes = result.notes
    notes["failing prompts"] = failing
    if not first:
        result.problems.append("never saw every chunk out of its first try with a retry due")
        return result
    failed_rows = {k for k, r in first["manifest"].items() if r["stage"] == "failed"}
    notes["rows failed in try 1 (manifest)"] = len(failed_rows)
    # Ground truth from Babou: the rows whose project holds a failed prompt.
    setup.emulator.configure(rate_limit=0)
    try:
        manifest = read_manifests(campaign_folder(setup.output, result.run_id))
        truth, extra_prompts = set(), {}
        for key, record in manifest.items():
            chapters = _chapters(setup, record["project_id"], list(record["chapter_ids"].values()))
            statuses = [[p.get("status") for p in c.get("prompts", [])] for c in chapters]
            if any("failed" in s for s in statuses):
                truth.add(key)
            extra = sum(len(s) - 1 for s in statuses)
            if extra:
                extra_prompts[key] = extra
    finally:
        setup.emulator.configure(rate_limit=float(setup.deployment.env["BENCH_RATE"]))
    notes["rows with a failed prompt (Babou)"] = len(truth)
    if truth != failed_rows:
        result.problems.append(f"manifest's failed rows {sorted(failed_rows)} != Babou's {sorted(truth)}")
    if set(extra_prompts) != truth:
        result.problems.append(f"prompts sent again for {sorted(extra_prompts)}, failed rows {sorted(truth)}")
    # The failed tries' logs name exactly those rows (up to 20 each, then a count).
    named: set[str] = set()
    counted = 0
    for task_id, map_index, _, _ in first["chunks"]:
        text = view.attempt_log(result.run_id, task_id, map_index, 1).read_text(errors="replace")
        count, keys = _failed_in_log(text)
        named |= keys
        counted += count or 0
    notes["rows named in the failed tries' errors"] = len(named)
    if counted != len(failed_rows) or not named <= failed_rows or len(named) < min(len(failed_rows), 20):
        result.problems.append(
            f"the error names {sorted(named)} (count {counted}), failed {sorted(failed_rows)}"
        )
    final = _counters(setup.emulator, setup.key)
    retry = {k: int(final.get(k, 0)) - int(first["stats"].get(k, 0)) for k in CREATES}
    try1 = {k: int(first["stats"].get(k, 0)) - int(stats0.get(k, 0)) for k in CREATES}
    notes["try 1 creates"], notes["retry creates"] = try1, retry
    expected_retry = {
        "projects_created": 0,
        "chapters_created": 0,
        "prompts_submitted": sum(extra_prompts.values()),
        "exports_started": len(failed_rows),
    }
    if retry != expected_retry or sum(extra_prompts.values()) != failing:
        result.problems.append(
            f"the retry made {retry}, expected {expected_retry} ({failing} prompts failed)"
        )
    check_created(result, rows, prompts=prompts + failing)
    unexpected = [t for t in result.unexplained_tries if "BabouCampaignError" not in t]
    if unexpected:
        result.problems.append(f"tries lost, not to the failures or the executor race: {unexpected}")
    return result


def scenario_seed(setup: Setup, rows: int, projects: int) -> Result:
    setup.emulator.configure(rate_limit=0)
    setup.emulator.seed(setup.key, projects, age_seconds=30 * 86400)
    setup.emulator.configure(rate_limit=float(setup.deployment.env["BENCH_RATE"]))
    view = dataclasses.replace(setup.deployment, dag_id=CAMPAIGN)
    killed: dict[str, Any] = {}
    box: dict[str, Any] = {}

    def on_tick() -> None:
        if killed or "stats0" not in box:
            return
        stats = _counters(setup.emulator, setup.key)
        made = int(stats.get("projects_created", 0)) - int(box["stats0"].get("projects_created", 0))
        if made < max(2, rows // 3):
            return
        tis = view.query(
            "SELECT task_id, map_index, pid, try_number FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "AND state = 'running' AND task_id = 'campaign' AND pid IS NOT NULL",
            CAMPAIGN,
            box["run_id"],
        )
        if not tis:
            return
        task_id, map_index, pid, try_number = tis[0]
        routes = stats.get("requests_by_route", {})
        before = box["stats0"].get("requests_by_route", {})
        killed.update(
            task=f"{task_id}[{map_index}]",
            try_number=int(try_number),
            projects_made=made,
            listings_before_kill=int(routes.get("GET /api/v1/projects", 0))
            - int(before.get("GET /api/v1/projects", 0)),
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)

    csv_path, ids = setup.rows_csv("seed", rows)
    result = Result("seed", CAMPAIGN, rows, f"bench-seed-{int(time.time())}")
    box["run_id"] = result.run_id
    conf = {"rows": str(csv_path), "output": str(setup.output)}

    def after_trigger() -> None:
        box["stats0"] = _counters(setup.emulator, setup.key)

    run_dag(
        setup.deployment, setup.sampler, setup.emulator, setup.key, result, conf, setup.timeout,
        after_trigger=after_trigger, on_tick=on_tick,
    )  # fmt: skip
    finish_campaign(setup, result, ids)
    check_created(result, rows)
    notes = result.notes
    notes["account projects"] = projects
    notes["kill"] = killed
    listings = result.by_route.get("GET /api/v1/projects", 0)
    notes["GET /api/v1/projects in the run"] = listings
    notes["pages of the whole account"] = math.ceil((projects + rows) / 100)
    if not killed:
        result.problems.append("no task process was killed: the scenario proved nothing")
    elif killed["listings_before_kill"]:
        result.problems.append(f"the first try listed projects {killed['listings_before_kill']} times")
    bound = math.ceil(rows / 100) + 2
    if listings > bound:
        result.problems.append(f"the retry's search made {listings} listings, more than {bound}")
    if killed and listings == 0:
        result.problems.append("the retry made no search: the kill came too late to test it")
    unexpected = [
        t
        for t in result.unexplained_tries
        if not t.startswith(f"{killed.get('task')} try {killed.get('try_number')}:")
    ]
    if unexpected:
        result.problems.append(f"tries lost, not to the kill or the executor race: {unexpected}")
    return result


# -- deployments ------------------------------------------------------------------------------------


@contextlib.contextmanager
def deployment(
    work: Path,
    name: str,
    emulator: EmulatorControl,
    key: str,
    rate: float,
    chunk_size: int,
    args: argparse.Namespace,
) -> Any:
    home = work / name
    output = home / "videos"
    output.mkdir(parents=True)
    conn = {"conn_type": "babou", "host": emulator.api_url, "password": key, "extra": {"rate_limit": rate}}
    with (
        postgres_cluster(f"babou_bench_{name}") as db,
        running_deployment(
            home,
            CAMPAIGN,
            db,
            [REPO / "example_dags" / f"{d}.py" for d in (CAMPAIGN, MAPPED)],
            AIRFLOW_CONN_BABOU_DEFAULT=json.dumps(conn),
            BABOU_OUTPUT_DIR=str(output),
            BABOU_RECIPIENTS_CSV=str(home / "mapped.csv"),
            BABOU_CHUNK_SIZE=str(chunk_size),
            AIRFLOW__CORE__PARALLELISM=str(args.parallelism),
            AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY=str(RETRY_DELAY),
            # Airflow's defaults, which the deployment tests shorten for speed: Airflow's CPU is
            # measured as users run it.
            AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="1",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="300",
            AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="2",
            BENCH_RATE=str(rate),
        ) as dep,
    ):
        write_recipients(home / "mapped.csv", "parse", 1)
        dep.airflow("pools", "set", "babou_api", str(args.pool), "campaign bench", "--include-deferred")
        for dag_id in (CAMPAIGN, MAPPED):
            dataclasses.replace(dep, dag_id=dag_id).wait_until_parsed()
            dep.airflow("dags", "unpause", dag_id)
        sampler = Sampler(dep)
        sampler.start()
        try:
            yield Setup(dep, sampler, emulator, key, home, output, args.timeout)
        finally:
            sampler.stopped.set()
            dep.passed = not args.keep


# -- report -----------------------------------------------------------------------------------------


def floors(result: Result, rate: float) -> list[tuple[str, bool, str]]:
    rpv = result.per_video(result.requests)
    share = result.responses_429 / result.requests if result.requests else 0.0
    wall_floor = 1.3 * (result.requests / rate) + 60
    cpu = result.per_video(result.cpu_total)
    four = result.per_video(result.cpu_total - result.cpu.get("dag-processor", 0.0))
    return [
        ("every MP4 valid", result.videos_valid == result.rows, f"{result.videos_valid} of {result.rows}"),
        (
            "no duplicate (counters as expected)",
            not any("Babou counters" in p for p in result.problems),
            json.dumps(result.created),
        ),
        ("<= 12 requests per video", rpv <= 12, f"{rpv:.2f}"),
        (
            "429s <= 1% of requests",
            share <= 0.01,
            f"{result.responses_429} of {result.requests} ({share:.2%})",
        ),
        (
            "wall <= 1.3 x requests/rate + 60 s",
            result.wall <= wall_floor,
            f"{result.wall:.0f} s vs {wall_floor:.0f} s",
        ),
        (
            "Airflow CPU <= 0.05 s per video (all five components; the issue names four)",
            cpu <= 0.05,
            f"{cpu:.3f} s; without the dag-processor {four:.3f} s",
        ),
    ]


def table(results: list[Result]) -> list[str]:
    lines = [
        "| scenario | DAG | rows | state | wall | requests/video | 429s | Airflow CPU s/video: total "
        "(scheduler, workers, api-server, triggerer, dag-processor) | task processes seen | "
        "peak worker PSS, sum (one task) | tries lost (unexplained) | MP4s valid | "
        "creates (projects, chapters, prompts, exports) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = ", ".join(f"{r.per_video(r.cpu.get(c, 0.0)):.3f}" for c in COMPONENTS)
        share = r.responses_429 / r.requests if r.requests else 0.0
        lines.append(
            f"| {r.scenario} | `{r.dag_id}` | {r.rows} | {r.state} | {r.wall:.0f} s | "
            f"{r.per_video(r.requests):.2f} | {r.responses_429} ({share:.2%}) | "
            f"**{r.per_video(r.cpu_total):.3f}** ({per}) | {r.task_processes} | "
            f"{r.peak_worker_rss_mib:.0f} MiB ({r.peak_task_rss_mib:.0f} MiB) | "
            f"{len(r.lost_tries)} ({len(r.unexplained_tries)}) | {r.videos_valid}/{r.rows} | "
            f"{', '.join(str(r.created.get(k)) for k in CREATES)} |"
        )
    return lines


def report(results: list[Result], args: argparse.Namespace, command: str, started: datetime) -> str:
    machine = (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    with contextlib.suppress(Exception):
        import airflow

        machine += f", Airflow {airflow.__version__}"
    lines = [
        f"## Run of {started:%Y-%m-%d %H:%M} UTC" + (" (quick)" if args.quick else ""),
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}; load average at the end {os.getloadavg()[0]:.1f} (shared with other jobs).  ",
        f"Emulator default timings (prompts 1.5 s, exports 0.5 + 1.5 s), {args.rate:g} requests/s per key "
        f"(burst the same; {args.big_rate:g} for the big run), connection `rate_limit` the same; "
        f"LocalExecutor, parallelism {args.parallelism}, Postgres, pool `babou_api` of {args.pool} "
        f"`--include-deferred`, chunk size {args.chunk_size}, retry delay {RETRY_DELAY} s.",
        "",
        *table(results),
        "",
    ]
    for r in results:
        rate = args.big_rate if r.scenario == "big" else args.rate
        lines.append(f"### {r.scenario}: `{r.dag_id}`, {r.rows} rows, run `{r.run_id}`")
        lines.append("")
        if r.dag_id == CAMPAIGN:
            for what, met, figure in floors(r, rate):
                lines.append(f"- {what}: **{'met' if met else 'NOT met'}** ({figure})")
        lines.append(f"- Airflow CPU seconds (total {r.cpu_total:.1f}): {json.dumps(r.cpu)}")
        lines.append(f"- requests by route: {json.dumps(r.by_route)}")
        if r.lost_tries:
            lines.append(f"- lost tries: {r.lost_tries}")
        for key, value in r.notes.items():
            lines.append(f"- {key}: {json.dumps(value) if not isinstance(value, str) else value}")
        lines.append(f"- problems: {r.problems or 'none'}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1000, help="campaign rows")
    parser.add_argument("--mapped-rows", type=int, default=200, help="rows of the mapped example")
    parser.add_argument("--big-rows", type=int, default=10000)
    parser.add_argument("--fail-rows", type=int, default=200)
    parser.add_argument("--seed-rows", type=int, default=200)
    parser.add_argument("--seed-projects", type=int, default=30000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--big-rate", type=float, default=200.0)
    parser.add_argument("--parallelism", type=int, default=16)
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--only", default="campaign,mapped,fail,seed,big")
    parser.add_argument("--quick", action="store_true", help="small rows everywhere: a smoke run")
    parser.add_argument(
        "--write", action="store_true", help="add the report to benchmarks/campaign_results.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep AIRFLOW_HOME")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.mapped_rows, args.big_rows = (
            min(args.rows, 40),
            min(args.mapped_rows, 10),
            min(args.big_rows, 60),
        )
        args.fail_rows, args.seed_rows, args.seed_projects = (
            min(args.fail_rows, 20),
            min(args.seed_rows, 30),
            min(args.seed_projects, 3000),
        )
        args.chunk_size = min(args.chunk_size, 20)
    only = set(args.only.split(","))
    command = "python benchmarks/campaign.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = datetime.now(timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="babou-campaign-bench-"))
    print(f"work folder {work}", file=sys.stderr, flush=True)
    emulator_args = [
        *("--api-key", KEY_A, "--api-key", KEY_B, "--seed", "7"),
        *("--rate-limit", str(args.rate), "--rate-burst", str(int(args.rate))),
    ]
    results: list[Result] = []

    def done(scenario: Callable[[], Result]) -> None:
        try:
            result = scenario()
        except Exception as exc:  # one scenario's breakage is a finding; the others still run
            print(f"scenario failed: {type(exc).__name__}: {str(exc)[-3000:]}", file=sys.stderr, flush=True)
            failed = Result(getattr(scenario, "__name__", "?"), "?", 0, "?")
            failed.problems.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            results.append(failed)
            return
        results.append(result)
        print(json.dumps(dataclasses.asdict(result)), flush=True)

    with EmulatorProcess(emulator_args) as process:
        emulator = EmulatorControl(process.url)
        if only & {"campaign", "mapped", "fail", "seed"}:
            with deployment(work, "a", emulator, KEY_A, args.rate, args.chunk_size, args) as setup:
                if "campaign" in only:
                    done(lambda: scenario_campaign(setup, args.rows))
                if "mapped" in only:
                    done(lambda: scenario_mapped(setup, args.mapped_rows))
                if "fail" in only:
                    done(lambda: scenario_fail(setup, args.fail_rows))
                if "seed" in only:
                    done(lambda: scenario_seed(setup, args.seed_rows, args.seed_projects))
        if "big" in only:
            emulator.configure(rate_limit=args.big_rate, rate_burst=int(args.big_rate))
            with deployment(work, "b", emulator, KEY_B, args.big_rate, args.chunk_size, args) as setup:
                done(lambda: scenario_campaign(setup, args.big_rows, name="big"))
    text = report(results, args, command, started)
    print(text)
    if args.write:
        path = REPO / "benchmarks" / "campaign_results.md"
        old = (
            path.read_text() if path.exists() else "# Campaign benchmark\n\nSee `benchmarks/campaign.py`.\n\n"
        )
        path.write_text(old.rstrip("\n") + "\n\n" + text + "\n")


if __name__ == "__main__":
    main()
