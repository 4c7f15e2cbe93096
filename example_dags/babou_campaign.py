"""One personalised video per row, thousands of rows a night: the campaign operator, in chunks.

``BabouCampaignOperator`` makes many videos in one task: it writes on the worker through one
request budget, waits for all its rows in one trigger, downloads in parallel and keeps a manifest
(one JSON line per row) beside the videos. The rows are split into chunks of ``chunk_size`` rows,
one mapped task each, so 100,000 rows are 200 tasks: far under Airflow's ``[core] max_map_length``
(1,024), which a task per row would pass at 1,025 rows.

Point it at your own file with ``--conf``: ``{"rows": "s3://bucket/customers.csv", "output":
"s3://bucket/campaign"}`` (a local path or any object-storage URL; ``.csv``, ``.jsonl`` or ``.json``
with the columns ``customer_id``, ``first_name``, ``plan``, ``renewal_date``). A retry or a clear
redoes only the rows that are not done, found from the manifest.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_babou.operators.babou import BabouCampaignOperator, campaign_chunks

RECIPIENTS_CSV = os.environ.get(
    "BABOU_RECIPIENTS_CSV", str(Path(__file__).parent / "data" / "recipients.csv")
)
OUTPUT_DIR = os.environ.get("BABOU_OUTPUT_DIR", "/tmp/babou-videos")
CHUNK_SIZE = int(os.environ.get("BABOU_CHUNK_SIZE", "500"))
CAMPAIGN_VIDEOS = Asset("babou://videos/campaign")

# [START howto_babou_campaign]
with DAG(
    dag_id="babou_campaign",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["babou", "example"],
    default_args={"retries": 2},
    params={
        "rows": Param(RECIPIENTS_CSV, type="string", description="a CSV/JSON Lines path or URL"),
        "output": Param(OUTPUT_DIR, type="string", description="a local folder or s3://bucket/prefix"),
        "output_conn_id": Param("aws_default", type="string", description="connection for s3:// output"),
    },
) as dag:

    @task
    def plan_chunks(params: dict[str, Any] | None = None) -> list[int]:
        """Read the rows once, check every key, and name the chunks (a list of a few numbers)."""
        params = params or {}
        rows, conn_id = params.get("rows") or RECIPIENTS_CSV, params.get("output_conn_id")
        return campaign_chunks(rows, key="customer_id", chunk_size=CHUNK_SIZE, conn_id=conn_id)

    BabouCampaignOperator.partial(
        task_id="campaign",
        rows="{{ params.rows }}",
        key="customer_id",
        project_name="Renewal {customer_id}",
        description="Renewal reminder for {first_name}",
        chapters=[
            {
                "name": "greeting",
                "prompt": "Greet {first_name} by name with a warm, friendly title card.",
                "duration": 10,
            },
            {
                "name": "renewal",
                "prompt": "Remind {first_name} that the {plan} plan renews on {renewal_date}, "
                "showing the date on a calendar animation.",
            },
        ],
        destination="{{ params.output }}/campaign/{{ run_id | replace(':', '_') }}/{customer_id}.mp4",
        manifest="{{ params.output }}/campaign/{{ run_id | replace(':', '_') }}/manifest.jsonl",
        dest_conn_id="{{ params.output_conn_id }}",
        chunk_size=CHUNK_SIZE,
        outlets=[CAMPAIGN_VIDEOS],
        poll_interval=1,
        timeout=6 * 3600,
    ).expand(chunk=plan_chunks())
# [END howto_babou_campaign]
