"""Tries lost to Airflow's executor race on resumed deferred tasks, in a real deployment.

Run from the repository root::

    python benchmarks/executor_race.py --rows 80                       # this checkout
    python benchmarks/executor_race.py --rows 80 --provider-ref a2c6148  # the package at a commit

Runs ``example_dags/babou_personalized_videos.py`` over ``--rows`` CSV rows in a real deployment
(the deployment tests' harness: api-server, scheduler, dag-processor and triggerer as separate
processes, LocalExecutor with parallelism 4, a private Postgres cluster, pool ``babou_api`` of
``--pool`` slots counting deferred tasks) against an emulator on 127.0.0.1 with the test
session emulator's timings (prompts 0.3 s, exports 0.1 + 0.3 s), so each video defers on a
prompt and on its export and each trigger can fire within a second or two. With
``--provider-ref`` the components import ``airflow_provider_babou`` as it was at that commit
(``git archive``, first on their ``PYTHONPATH``).

It prints one markdown table row: the run's state and wall clock, the videos, every try that did
not end its task instance, split into those the scheduler failed on the stale "success" of the
deferring worker (the audit log's ``state mismatch``, apache/airflow#72716: the race) and any
other, as the deployment tests classify them (``Deployment.lost_tries``); then the race window
seen in that run: for each deferral, the seconds from the worker's defer to the scheduler taking
the executor's report of that worker (``TaskInstance Finished`` with ``state=deferred`` or later
in the scheduler's log). A trigger event before that report risks the race.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess  # noqa: E402
from tests.deployment.harness import Deployment, running_deployment, write_recipients  # noqa: E402
from tests.deployment.services import postgres_cluster  # noqa: E402
from tests.keys import ALICE  # noqa: E402

DAG_ID = "babou_personalized_videos"
MAPPED = "personalized_video"
EMULATOR_TIMES = [
    "--prompt-seconds",
    "1.5",
    "--export-queued-seconds",
    "0.5",
    "--export-processing-seconds",
    "1.5",
]
_FINISHED = re.compile(
    r"^(\S+) .*TaskInstance Finished: dag_id=" + DAG_ID + r", task_id=" + MAPPED + r", run_id=(\S+), "
    r"map_index=(-?\d+),.*?state=(\w+), executor=.*?try_number=(\d+),"
)


def provider_at(ref: str, folder: Path) -> Path:
    """``airflow_provider_babou`` as it was at ``ref``, extracted under ``folder``; return ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "airflow_provider_babou"], check=True, capture_output=True
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def defer_times(deployment: Deployment, run_id: str) -> dict[tuple[int, int], list[float]]:
    """When each (map index, try) deferred, from its task log (the worker's "deferred" line)."""
    found: dict[tuple[int, int], list[float]] = {}
    root = deployment.logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={MAPPED}"
    for path in root.glob("map_index=*/attempt=*.log"):
        if ".trigger." in path.name:
            continue
        index = int(path.parent.name.removeprefix("map_index="))
        attempt = int(path.name.removeprefix("attempt=").removesuffix(".log"))
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "Pausing task as DEFERRED" in str(record.get("event")):
                found.setdefault((index, attempt), []).append(_stamp(record["timestamp"]))
    return found


def _reports(deployment: Deployment, run_id: str) -> dict[tuple[int, int], list[float]]:
    """When the scheduler took each executor report of a mapped try's worker, per (map index, try)."""
    reports: dict[tuple[int, int], list[float]] = {}
    for line in (deployment.component_logs / "scheduler.log").read_text(errors="replace").splitlines():
        found = _FINISHED.search(line)
        if found and found.group(2) == run_id and found.group(4) != "running":
            key = (int(found.group(3)), int(found.group(5)))
            reports.setdefault(key, []).append(_stamp(found.group(1)))
    return reports


def _first_after(times: list[float], start: float) -> float | None:
    return min((t for t in times if t >= start), default=None)


def report_lags(deployment: Deployment, run_id: str) -> list[float]:
    """Seconds from each deferral to the scheduler's taking the executor report of its worker."""
    reports = _reports(deployment, run_id)
    lags = []
    for key, deferrals in defer_times(deployment, run_id).items():
        later = sorted(reports.get(key, []))
        for deferred in sorted(deferrals):
            after = [t for t in later if t >= deferred]
            if after:
                lags.append(after[0] - deferred)
                later.remove(after[0])
    return lags


def fire_margins(deployment: Deployment, run_id: str) -> list[float]:
    """For the last deferral of each try (the one whose trigger log the triggerer keeps): seconds
    from the scheduler's taking the deferring worker's report to the trigger's event. Below zero,
    the trigger fired first: the race's exposure."""
    reports = _reports(deployment, run_id)
    margins = []
    root = deployment.logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={MAPPED}"
    for key, deferrals in defer_times(deployment, run_id).items():
        logs = root.glob(f"map_index={key[0]}/attempt={key[1]}.log.trigger.*")
        fired = [
            _stamp(json.loads(line)["timestamp"])
            for path in logs
            for line in path.read_text(errors="replace").splitlines()
            if '"Trigger fired event"' in line
        ]
        report = _first_after(reports.get(key, []), max(deferrals))
        if fired and report is not None:
            margins.append(max(fired) - report)
    return margins


def late_reports(deployment: Deployment, run_id: str) -> dict[str, int]:
    """Executor reports of a deferring worker taken after its trigger had already fired, by the
    task instance's state then: ``scheduled`` (Airflow 3.3.2 lets it pass, 3.1 fails the try),
    ``queued`` or ``running`` (the try is lost): the race's exposure, lost or not."""
    late: dict[str, int] = {}
    for line in (deployment.component_logs / "scheduler.log").read_text(errors="replace").splitlines():
        found = _FINISHED.search(line)
        state = found.group(4) if found and found.group(2) == run_id else None
        if state in ("scheduled", "queued", "running") and "executor_state=success" in line:
            late[state] = late.get(state, 0) + 1
    return late


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=80)
    parser.add_argument("--pool", type=int, default=16, help="babou_api slots (deferred tasks count)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--provider-ref", help="run the package as it was at this git ref")
    parser.add_argument("--label", default=None, help="first column of the printed row")
    parser.add_argument("--parallelism", type=int, default=4, help="[core] parallelism (executor slots)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="babou-race-"))
    if args.provider_ref:
        staged = provider_at(args.provider_ref, work / "provider")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(staged), os.environ.get("PYTHONPATH")) if p
        )
    home = work / "home"
    csv_path, output = home / "recipients.csv", home / "videos"
    output.mkdir(parents=True)
    ids = write_recipients(csv_path, "race", args.rows)
    emulator_args = ["--api-key", ALICE, "--seed", "7", "--rate-limit", "0", *EMULATOR_TIMES]
    with EmulatorProcess(emulator_args) as process, postgres_cluster("babou_race") as db:
        emulator = EmulatorControl(process.url)
        conn = {"conn_type": "babou", "host": emulator.api_url, "password": ALICE}
        with running_deployment(
            home,
            DAG_ID,
            db,
            [REPO / "example_dags" / f"{DAG_ID}.py"],
            AIRFLOW_CONN_BABOU_DEFAULT=json.dumps(conn),
            BABOU_OUTPUT_DIR=str(output),
            BABOU_RECIPIENTS_CSV=str(csv_path),
            AIRFLOW__CORE__PARALLELISM=str(args.parallelism),
        ) as deployment:
            deployment.airflow(
                "pools", "set", "babou_api", str(args.pool), "race bench", "--include-deferred"
            )
            deployment.wait_until_parsed()
            deployment.airflow("dags", "unpause", DAG_ID)
            run_id = f"race-{int(time.time())}"
            started = time.monotonic()
            deployment.airflow("dags", "trigger", DAG_ID, "--run-id", run_id)
            state = deployment.wait_for(
                "the run", lambda: deployment.run_state(run_id), args.timeout, every=2
            )
            elapsed = time.monotonic() - started
            lost = deployment.lost_tries(run_id)
            lags = sorted(report_lags(deployment, run_id))
            late = late_reports(deployment, run_id)
            margins = sorted(fire_margins(deployment, run_id))
            videos = sum((output / "personalized" / f"{c}.mp4").is_file() for c in ids)
            counts = emulator.stats(ALICE)["key"] or {}
            deployment.passed = state == "success" and not lost  # else AIRFLOW_HOME is kept
    races = [t for t in lost if t.executor_race]
    others = [t for t in lost if not t.executor_race]
    window = (
        f"n={len(lags)} median {statistics.median(lags):.1f} s, "
        f"p90 {lags[int(0.9 * (len(lags) - 1))]:.1f} s, "
        f"max {lags[-1]:.1f} s"
        if lags
        else "n/a"
    )
    label = args.label or (f"`{args.provider_ref}`" if args.provider_ref else "this checkout")
    print(
        f"\nHOME {home}\nlost tries: {[(t.task, t.try_number, t.cause[:200]) for t in lost]}", file=sys.stderr
    )
    print(
        "| label | rows | run | wall clock | videos | tries lost to the race | other lost tries | "
        "prompts/exports sent | reports after the trigger fired | defer -> executor report | "
        "report -> trigger event (min, median) |"
    )
    print(
        f"| {label} | {args.rows} | {state} | {elapsed:.0f} s | {videos} | {len(races)} | {len(others)} | "
        f"{counts.get('prompts_submitted')}/{counts.get('exports_started')} | {late or 0} | {window} | "
        + (
            f"{margins[0]:.1f} s, {statistics.median(margins):.1f} s (n={len(margins)}) |"
            if margins
            else "n/a |"
        )
    )


if __name__ == "__main__":
    main()
