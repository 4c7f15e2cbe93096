"""``babou_campaign`` through a real Airflow deployment: chunks, a partial failure and its retry.

30 rows in chunks of 12 (three mapped ``BabouCampaignOperator`` tasks; LocalExecutor, Postgres) against
the session's emulator, with a few prompts made to fail right after the run is triggered. The chunks holding a
failed row fail naming those rows; the DAG's retry redoes only them; afterwards every row is done in
the manifests, every MP4 decodes, and Babou's counters show each project, chapter and export made
once (the failed prompts, and only those, sent twice).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
from tests.conftest import REPO
from tests.deployment.harness import (
    CREATES,
    Deployment,
    TaskTry,
    key_leaks,
    read_manifests,
    running_deployment,
    unplayable,
    write_recipients,
)
from tests.deployment.services import postgres_cluster
from tests.keys import ALICE

pytestmark = pytest.mark.deployment

DAG_ID = "babou_campaign"
ROWS = 30
CHUNK_SIZE = 12  # three chunks: 12, 12 and 6 rows
FAILING_PROMPTS = 4
RUN_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def deployment(babou_emulator_server: EmulatorProcess) -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="babou-campaign-deployment-"))
    output_dir = home / "videos"
    output_dir.mkdir()
    conn = {"conn_type": "babou", "host": babou_emulator_server.api_url, "password": ALICE}
    with (
        postgres_cluster("babou_campaign") as postgres,
        running_deployment(
            home,
            DAG_ID,
            postgres,
            [REPO / "example_dags" / f"{DAG_ID}.py"],
            AIRFLOW_CONN_BABOU_DEFAULT=json.dumps(conn),
            BABOU_OUTPUT_DIR=str(output_dir),
            BABOU_CHUNK_SIZE=str(CHUNK_SIZE),
        ) as deployment,
    ):
        yield deployment


def _rows_with_a_failed_prompt(emulator: EmulatorControl, manifest: dict[str, dict[str, Any]]) -> set[str]:
    """Babou's own account: the rows whose chapters hold a failed prompt (one GET per chapter)."""
    failed = set()
    with httpx.Client(
        base_url=emulator.api_url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30
    ) as api:
        for key, record in manifest.items():
            for chapter_id in record["chapter_ids"].values():
                chapter = api.get(f"/projects/{record['project_id']}/chapters/{chapter_id}").json()
                if any(p["status"] == "failed" for p in chapter["prompts"]):
                    failed.add(key)
    return failed


def _named_rows(log: Path) -> set[str]:
    """The row keys the campaign's error names in a failed try's log."""
    text = log.read_text(errors="replace")
    found = re.search(r"(\d+) of (\d+) rows failed: (.*)", text)
    assert found, f"no campaign error in {log}:\n{text[-3000:]}"
    return set(re.findall(r"'([^'\s]+)' \(prompt:", found.group(3)))


def test_a_chunked_campaign_survives_failed_prompts_and_retries_only_them(
    deployment: Deployment, emulator: EmulatorControl
) -> None:
    rows_csv = deployment.home / "rows.csv"
    customers = write_recipients(rows_csv, "camp", ROWS)
    output = Path(deployment.env["BABOU_OUTPUT_DIR"])
    deployment.wait_until_parsed()
    deployment.airflow("dags", "unpause", DAG_ID)
    run_id = f"campaign-{int(time.time())}"
    conf = json.dumps({"rows": str(rows_csv), "output": str(output)})
    deployment.airflow("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", conf)
    emulator.fail_next(ALICE, "prompt", count=FAILING_PROMPTS, message="Generation failed: test")

    state = deployment.wait_for("the campaign run to finish", deployment.run_state, RUN_TIMEOUT)

    report = deployment.tries_report(run_id)
    assert state == "success", deployment.failure(f"run {state}\n{report}", run_id)
    chunks = [t for t in deployment.task_instances(run_id) if t[0] == "campaign"]
    assert [t[1] for t in chunks] == [0, 1, 2], report
    folder = output / "campaign" / run_id
    manifest = read_manifests(folder)
    assert sorted(manifest) == customers, sorted(manifest)
    not_done = {k: r["stage"] for k, r in manifest.items() if r["stage"] != "done"}
    assert not not_done, not_done
    bad = [p for p in (unplayable(str(folder / f"{k}.mp4"), k) for k in customers) if p]
    assert not bad, bad

    # The failed tries named exactly the rows Babou failed a prompt of, and only those chunks retried.
    failed = _rows_with_a_failed_prompt(emulator, manifest)
    assert 1 <= len(failed) <= FAILING_PROMPTS, failed
    retried = [(index, tries) for _, index, _, tries in chunks if tries > 1]
    named = set()
    for index, _ in retried:
        named |= _named_rows(deployment.attempt_log(run_id, "campaign", index, 1))
    assert named == failed, deployment.failure(f"named {named}, Babou failed {failed}\n{report}", run_id)
    chunk_of = {key: customers.index(key) // CHUNK_SIZE for key in failed}
    assert {index for index, _ in retried} == set(chunk_of.values()), (retried, chunk_of, report)

    # Each project, chapter and export made once; the failed prompts, and only those, sent twice.
    counts = emulator.stats(ALICE)["key"]
    made = {k: counts[k] for k in CREATES}
    assert made == {
        "projects_created": ROWS,
        "chapters_created": 2 * ROWS,
        "prompts_submitted": 2 * ROWS + FAILING_PROMPTS,
        "exports_started": ROWS,
    }, report
    assert counts["requests_by_route"].get("GET /api/v1/projects", 0) == 0  # no try searched

    def failed_on_purpose(t: TaskTry) -> bool:
        return t.task.startswith("campaign[") and t.try_number == 1 and "BabouCampaignError" in t.cause

    lost = deployment.unexplained_tries(run_id, failed_on_purpose)
    assert not lost, deployment.failure(f"tries lost, not to the failed prompts: {lost}\n{report}", run_id)
    leaks = key_leaks([deployment.logs, deployment.component_logs, folder], ALICE)
    assert not leaks, f"the API key appears in {leaks}"
    deployment.passed = True
