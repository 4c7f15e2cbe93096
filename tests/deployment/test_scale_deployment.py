"""Scale-out: both video examples on CeleryExecutor, two workers, two triggerers, MP4s in S3.

A private Postgres cluster holds the metadata, a Redis server is the Celery broker, moto's server
mode is the S3 the MP4s go to (through the Amazon provider's ``ObjectStoragePath`` and an ``aws``
connection whose extra names the endpoint). api-server, scheduler and dag-processor share one
AIRFLOW_HOME; two triggerers run beside them; two Celery workers each have an AIRFLOW_HOME, DAG
folder and TMPDIR of their own, so they share no disk with anything (a downloaded video can only
reach the test through S3). Every component is a separate process, stopped by process group.

``babou_video_pipeline`` and ``babou_personalized_videos`` (mapped over ``ROWS`` CSV rows, pool
``babou_api`` counting deferred tasks) run at once, their ``output`` param set to ``s3://...``.
During the runs the test SIGKILLs the Celery worker running the task whose project POST Babou has
just carried out (its answer held back, so the try dies not knowing), and, while both triggerers
(capacity 5 each) hold deferred waits, the triggerer holding the most. The runs must still succeed
with every MP4 in S3 (a valid MP4 whose size and sha256 are those of its Asset event), nothing
else in the bucket, and Babou's counters showing exactly one project, chapter, prompt and export
per video asked for.

Short timeouts make Airflow notice the losses in seconds: a try whose worker died is failed after
``[scheduler] task_instance_heartbeat_timeout`` (30 s here, 300 by default) and retried; the dead
triggerer's waits move to the other one after ``[triggerer] triggerer_health_check_threshold``
(15 s here, 30 by default); a task stuck in ``queued`` (its message taken by the dead worker
before it started) is re-queued after ``[scheduler] task_queued_timeout`` (120 s here, 600 by
default).

Wall clock on the project's 2-core machines, Airflow 3.3.2 and 3.1.0 alike: 1.5 to 3 min for the
module (the deployment comes up in about 30 s, the two runs take 70 to 150 s depending on load).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from tests.conftest import REPO
from tests.deployment.harness import (
    CREATES,
    Deployment,
    component_env,
    copy_dags,
    key_leaks,
    running_deployment,
    unplayable,
    write_recipients,
)
from tests.deployment.services import PostgresCluster, postgres_cluster, redis_server
from tests.keys import ALICE
from tests.s3 import MotoServer

pytestmark = pytest.mark.deployment

PIPELINE = "babou_video_pipeline"
CAMPAIGN = "babou_personalized_videos"
MAPPED = "personalized_video"
CHUNKED = "babou_campaign"
CHUNKED_ROWS = 24
CHUNK_SIZE = 6  # four chunks: two per worker at concurrency 2
ROWS = 8
POOL_SLOTS = 6  # fewer than ROWS: the pool, counting deferred tasks, caps the videos in flight
# Up to POOL_SLOTS + 3 (the pipeline's prompts) waits at once: with 5 each, neither triggerer can
# take them all, so both hold waits when the deferrals bunch up.
TRIGGERER_CAPACITY = 5
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer-1", "triggerer-2")
BUCKET = "babou-videos"
S3_CONN = "babou_s3"  # not aws_default: the connection is the run's choice
OUTPUT = f"s3://{BUCKET}/scale"
POST_HOLD = 8.0  # seconds Babou holds the answer to the first project POST: the worker dies meanwhile
RUN_TIMEOUT = 480.0
EMULATOR_ARGS = [
    *("--api-key", ALICE, "--seed", "1010"),
    *("--prompt-seconds", "6", "--export-queued-seconds", "0.2", "--export-processing-seconds", "4"),
]
SHORT_TIMEOUTS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "3",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
}


@dataclass
class Scale:
    """The running deployment and what the test kills and checks in it."""

    deployment: Deployment
    emulator: EmulatorControl
    s3: MotoServer
    customers: list[str]
    killed: dict[str, Any] = field(default_factory=dict)

    def view(self, dag_id: str) -> Deployment:
        """The deployment, looking at ``dag_id`` (same processes and DB)."""
        return dataclasses.replace(self.deployment, dag_id=dag_id)


@pytest.fixture(scope="module")
def scale() -> Iterator[Scale]:
    home = Path(tempfile.mkdtemp(prefix="babou-scale-deployment-"))
    bundle = home / "bundle"
    customers = write_recipients(bundle / "data" / "recipients.csv", "s", ROWS)
    for dag_id in (PIPELINE, CAMPAIGN, CHUNKED):
        copy_dags([REPO / "example_dags" / f"{dag_id}.py"], bundle)
    with (
        EmulatorProcess(EMULATOR_ARGS) as emulator_process,
        MotoServer() as s3,
        postgres_cluster("babou_scale") as postgres,
        redis_server(home / "redis") as broker,
    ):
        s3.client().create_bucket(Bucket=BUCKET)
        env = _scale_env(emulator_process, s3, postgres, broker)
        with running_deployment(
            home, CAMPAIGN, postgres, bundle.iterdir(), ("api-server", "scheduler", "dag-processor"), **env
        ) as deployment:
            for name in TRIGGERERS:
                _start_triggerer(deployment, name)
            for name in WORKERS:
                copy_dags(bundle.iterdir(), home / name / "dags")
                deployment.extra_logs.append(home / name / "logs")
                _start_worker(deployment, name)
            deployment.airflow(
                "pools", "set", "babou_api", str(POOL_SLOTS), "Babou videos in flight", "--include-deferred"
            )
            scale = Scale(deployment, EmulatorControl(emulator_process.url), s3, customers)
            for dag_id in (PIPELINE, CAMPAIGN, CHUNKED):
                scale.view(dag_id).wait_until_parsed()
                deployment.airflow("dags", "unpause", dag_id)
            yield scale


def _start_triggerer(deployment: Deployment, name: str) -> None:
    command = ("triggerer", "--capacity", str(TRIGGERER_CAPACITY), "--skip-serve-logs")
    deployment.start(name, *command, env=component_env(deployment.env, name))


def _start_worker(deployment: Deployment, name: str) -> None:
    """A Celery worker on a machine of its own (``<home>/<name>``: AIRFLOW_HOME, DAGs, TMPDIR)."""
    deployment.start(
        name,
        *("celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2"),
        *("--skip-serve-logs", "--without-mingle", "--without-gossip"),
        env=component_env(deployment.env, name, home=deployment.home / name),
    )


def _scale_env(
    emulator: EmulatorProcess, s3: MotoServer, postgres: PostgresCluster, broker: str
) -> dict[str, str]:
    babou = {"conn_type": "babou", "host": emulator.api_url, "password": ALICE}
    return {
        "AIRFLOW_CONN_BABOU_DEFAULT": json.dumps(babou),
        f"AIRFLOW_CONN_{S3_CONN.upper()}": json.dumps(s3.connection()),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.url}",
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        "BABOU_CHUNK_SIZE": str(CHUNK_SIZE),
        **SHORT_TIMEOUTS,
    }


# -- the two losses ---------------------------------------------------------------------------------


def _task_of_project(scale: Scale, name: str) -> tuple[str, str, int]:
    """(dag_id, task_id, map_index) of the task that creates the Babou project called ``name``."""
    if name.startswith("Renewal "):
        return CAMPAIGN, MAPPED, scale.customers.index(name.removeprefix("Renewal "))
    return PIPELINE, "create_project", -1


def _kill_worker_after_post(scale: Scale, run_ids: dict[str, str]) -> None:
    """Once Babou has created the first project (its answer still held back), SIGKILL the worker
    running the task that asked for it."""
    routes = (scale.emulator.stats()["total"] or {}).get("requests_by_route", {})
    if "worker" in scale.killed or not routes.get("POST /api/v1/projects"):
        return
    with httpx.Client(base_url=scale.emulator.api_url, headers={"Authorization": f"Bearer {ALICE}"}) as api:
        projects = api.get("/projects", params={"limit": 100}).json()["projects"]
    for project in reversed(projects):  # oldest first: the held one, unless two POSTs raced
        dag_id, task_id, map_index = _task_of_project(scale, project["name"])
        rows = scale.deployment.query(
            "SELECT hostname, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ? AND state = 'running'",
            dag_id,
            run_ids[dag_id],
            task_id,
            map_index,
        )
        if rows and rows[0][0] in WORKERS:
            scale.deployment.kill(rows[0][0])
            scale.killed["worker"] = (rows[0][0], dag_id, task_id, map_index, int(rows[0][1]))
            return


def _kill_triggerer_holding_waits(scale: Scale) -> None:
    """Once both triggerers hold deferred waits (or one holds most of its capacity), SIGKILL the
    one holding the most."""
    if "triggerer" in scale.killed:
        return
    held = scale.deployment.query(
        "SELECT j.hostname, ti.dag_id, ti.task_id, ti.map_index, ti.try_number FROM task_instance ti "
        "JOIN trigger t ON t.id = ti.trigger_id JOIN job j ON j.id = t.triggerer_id "
        "WHERE ti.state = 'deferred'"
    )
    holders = Counter(str(row[0]) for row in held)
    both = len(holders) == 2 and sum(holders.values()) >= 3
    if not set(holders) <= set(TRIGGERERS) or not (both or max(holders.values(), default=0) >= 4):
        return
    victim = holders.most_common(1)[0][0]
    scale.deployment.kill(victim)
    scale.killed["triggerer"] = (victim, sorted(tuple(row[1:]) for row in held if row[0] == victim))


# -- what must hold afterwards ---------------------------------------------------------------------


def _asset_events(scale: Scale, run_ids: dict[str, str]) -> list[dict[str, Any]]:
    rows = scale.deployment.query(
        "SELECT e.source_dag_id, e.source_task_id, e.source_map_index, e.extra FROM asset_event e "
        "WHERE e.source_run_id IN (?, ?)",
        run_ids[PIPELINE],
        run_ids[CAMPAIGN],
    )
    return [
        {"task": (r[0], r[1], int(r[2])), **(json.loads(r[3]) if isinstance(r[3], str) else r[3])}
        for r in rows
    ]


def _check_object(scale: Scale, event: dict[str, Any]) -> str | None:
    """None when the event's object is in S3, through our connection, with the event's size and
    sha256, and decodes as an MP4; else what is wrong."""
    url = urlsplit(event.get("path", ""))
    conn, _, bucket = url.netloc.rpartition("@")
    if (url.scheme, conn, bucket) != ("s3", S3_CONN, BUCKET):
        return f"{event['task']}: path {event.get('path')!r} is not s3://{S3_CONN}@{BUCKET}/..."
    body = scale.s3.client().get_object(Bucket=bucket, Key=url.path.lstrip("/"))["Body"].read()
    if (len(body), hashlib.sha256(body).hexdigest()) != (event.get("size"), event.get("sha256")):
        return f"{event['task']}: S3 has {len(body)} bytes, the event says {event.get('size')}"
    return unplayable(io.BytesIO(body), f"{event['task']}: {url.path}")


def _problems(scale: Scale, states: dict[str, str], run_ids: dict[str, str]) -> list[str]:
    problems = [f"{dag_id} ended {state}" for dag_id, state in states.items() if state != "success"]
    for what in ("worker", "triggerer"):
        if what not in scale.killed:
            problems.append(f"no {what} was killed: the scenario proved nothing")
    events = _asset_events(scale, run_ids)
    expected_tasks = {(PIPELINE, "download_video", -1)} | {(CAMPAIGN, MAPPED, i) for i in range(ROWS)}
    if sorted(e["task"] for e in events) != sorted(expected_tasks):
        problems.append(f"asset events from {sorted(e['task'] for e in events)}, expected one per video")
    problems += [p for p in (_check_object(scale, e) for e in events) if p]
    keys = sorted(o["Key"] for o in scale.s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", []))
    wanted = sorted(urlsplit(e["path"]).path.lstrip("/") for e in events)
    if keys != wanted:
        problems.append(f"bucket holds {keys}, the asset events name {wanted}")
    counts = scale.emulator.stats(ALICE)["key"] or {}
    expected = {
        "projects_created": 1 + ROWS,
        "chapters_created": 3 + 2 * ROWS,
        "prompts_submitted": 3 + 2 * ROWS,
        "exports_started": 1 + ROWS,
    }
    seen = {k: counts.get(k) for k in expected}
    if seen != expected:
        problems.append(f"Babou counters {seen}, expected {expected}: something was created twice")
    if "worker" in scale.killed:
        name, dag_id, task_id, map_index, try_number = scale.killed["worker"]
        final = [
            t for t in scale.view(dag_id).task_instances(run_ids[dag_id]) if t[:2] == (task_id, map_index)
        ]
        if not final or final[0][2] != "success" or final[0][3] <= try_number:
            problems.append(f"{task_id}[{map_index}] killed with {name} on try {try_number}, then {final}")
    killed_worker = scale.killed.get("worker", ("",))[0]
    for dag_id, run_id in run_ids.items():
        # Tries on the killed worker are lost on purpose; any other, bar the executor race, is ours.
        lost = scale.view(dag_id).unexplained_tries(run_id, lambda t: t.hostname == killed_worker)
        if lost:
            problems.append(f"{dag_id}: tries lost, not to the kill or the executor race: {lost}")
    deployment = scale.deployment
    leaks = key_leaks([*deployment.log_roots, deployment.component_logs], ALICE)
    if leaks:
        problems.append(f"the API key appears in {leaks}")
    return problems


def test_celery_two_triggerers_and_s3_survive_a_lost_worker_and_triggerer(scale: Scale) -> None:
    scale.emulator.inject_fault("delay_after", method="POST", path=r"^/api/v1/projects$", seconds=POST_HOLD)
    conf = json.dumps({"output": OUTPUT, "output_conn_id": S3_CONN})
    stamp = int(time.time())
    run_ids = {dag_id: f"scale-{stamp}" for dag_id in (PIPELINE, CAMPAIGN)}
    started = time.monotonic()
    for dag_id, run_id in run_ids.items():
        scale.deployment.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", conf)

    def probe() -> dict[str, str] | None:
        _kill_worker_after_post(scale, run_ids)
        _kill_triggerer_holding_waits(scale)
        states = {dag_id: scale.view(dag_id).run_state(run_id) for dag_id, run_id in run_ids.items()}
        return None if None in states.values() else {k: str(v) for k, v in states.items()}

    def tries() -> str:
        return "\n".join(scale.view(d).tries_report(r) for d, r in run_ids.items())

    try:
        states = scale.deployment.wait_for("both runs to finish", probe, RUN_TIMEOUT, every=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nkilled: {scale.killed}\n{tries()}") from None
    elapsed = time.monotonic() - started
    problems = _problems(scale, states, run_ids)
    report = "\n".join(
        [f"runs {run_ids}: {states} in {elapsed:.0f}s", f"killed: {scale.killed}", *problems, tries()]
    )
    print(report)
    assert not problems, scale.deployment.failure(report)
    scale.deployment.passed = True


def test_a_chunked_campaign_runs_across_both_celery_workers_on_one_key(scale: Scale) -> None:
    """``babou_campaign`` in chunks, rows read from S3 and videos written there, its chunks run by
    both Celery workers (two processes, one key): every row done once, every MP4 valid."""
    deployment = scale.deployment
    for name in WORKERS:  # the test before killed one worker and one triggerer
        if name not in deployment.procs:
            _start_worker(deployment, name)
    for name in TRIGGERERS:
        if name not in deployment.procs:
            _start_triggerer(deployment, name)
    customers = write_recipients(deployment.home / "campaign.csv", "c", CHUNKED_ROWS)
    s3 = scale.s3.client()
    s3.put_object(
        Bucket=BUCKET, Key="rows/campaign.csv", Body=(deployment.home / "campaign.csv").read_bytes()
    )
    before = scale.emulator.stats(ALICE)["key"] or {}
    run_id = f"chunked-{int(time.time())}"
    conf = {
        "rows": f"s3://{BUCKET}/rows/campaign.csv",
        "output": f"{OUTPUT}/chunked",
        "output_conn_id": S3_CONN,
    }
    deployment.airflow("dags", "trigger", CHUNKED, "--run-id", run_id, "--conf", json.dumps(conf))
    view = scale.view(CHUNKED)
    state = view.wait_for("the chunked campaign to finish", lambda: view.run_state(run_id), RUN_TIMEOUT)
    report = view.tries_report(run_id)
    assert state == "success", view.failure(f"run {state}\n{report}", run_id)

    chunks = [t for t in view.task_instances(run_id) if t[0] == "campaign"]
    assert [t[1] for t in chunks] == list(range(CHUNKED_ROWS // CHUNK_SIZE)), report
    # Each worker writes the logs of what it ran on its own disk: both ran chunks.
    pattern = f"dag_id={CHUNKED}/run_id={run_id}/task_id=campaign/map_index=*/attempt=*.log"
    ran_on = {
        name: sorted(p.parent.name for p in (deployment.home / name / "logs").glob(pattern))
        for name in WORKERS
    }
    assert all(ran_on.values()), (ran_on, report)

    prefix = f"scale/chunked/campaign/{run_id}/"
    objects = {o["Key"]: o for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}
    manifests = {}
    for key in sorted(k for k in objects if k.endswith(".jsonl")):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        assert ALICE not in body, f"the API key is in {key}"
        manifests.update({r["key"]: r for r in map(json.loads, body.splitlines())})
    assert sorted(manifests) == sorted(customers), sorted(manifests)
    assert sorted(k for k in objects if k.endswith(".mp4")) == sorted(f"{prefix}{c}.mp4" for c in customers)
    problems = []
    for customer in customers:
        record = manifests[customer]
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}{customer}.mp4")["Body"].read()
        if record["stage"] != "done" or (len(body), hashlib.sha256(body).hexdigest()) != (
            record["size"],
            record["sha256"],
        ):
            problems.append(f"{customer}: {record}")
        problems += [p for p in [unplayable(io.BytesIO(body), customer)] if p]
    assert not problems, problems

    after = scale.emulator.stats(ALICE)["key"] or {}
    made = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in CREATES}
    rows = CHUNKED_ROWS
    assert made == dict(zip(CREATES, (rows, 2 * rows, 2 * rows, rows), strict=True)), made
    lost = view.unexplained_tries(run_id)
    assert not lost, view.failure(f"tries lost: {lost}\n{report}", run_id)
    leaks = key_leaks([*deployment.log_roots, deployment.component_logs], ALICE)
    assert not leaks, f"the API key appears in {leaks}"
