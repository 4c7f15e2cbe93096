"""One personalised video per row of a CSV: the campaign pattern, with dynamic task mapping.

Each mapped task builds and downloads a whole video (``BabouGenerateVideoOperator`` defers
between its stages, so waiting costs no worker slot). Deferred tasks don't count against
``max_active_tis_per_dag``, and a pool counts them only when it is created with
``--include-deferred``: ``airflow pools set babou_api 4 "Babou videos in flight" --include-deferred``.
Its size then caps how many videos are in flight at once; the per-key request budget of the
connection (``rate_limit``) caps the request rate.

The videos go to a local folder by default (``BABOU_OUTPUT_DIR``); the ``output`` and
``output_conn_id`` params send a run's videos to object storage, e.g. ``--conf '{"output":
"s3://my-bucket/campaign"}'`` (see babou_video_pipeline.py for why a param). Each video's Asset
event carries its ``path``, ``size`` and ``sha256``.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_babou.operators.babou import BabouGenerateVideoOperator

RECIPIENTS_CSV = Path(
    os.environ.get("BABOU_RECIPIENTS_CSV", Path(__file__).parent / "data" / "recipients.csv")
)
OUTPUT_DIR = os.environ.get("BABOU_OUTPUT_DIR", "/tmp/babou-videos")
BABOU_POOL = "babou_api"
PERSONALIZED_VIDEOS = Asset("babou://videos/personalized")

# [START howto_babou_personalized_videos]
with DAG(
    dag_id="babou_personalized_videos",
    doc_md=__doc__,  # the module docstring, shown on the DAG page
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["babou", "example"],
    # Every task retries, read_recipients too: a lost worker kills whatever it was running.
    default_args={"retries": 2},
    params={
        "output": Param(OUTPUT_DIR, type="string", description="a local folder or s3://bucket/prefix"),
        "output_conn_id": Param("aws_default", type="string", description="connection for s3:// output"),
    },
) as dag:

    @task
    def read_recipients(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Turn each CSV row into the keyword arguments of one mapped video task."""
        output = str((params or {}).get("output") or OUTPUT_DIR).rstrip("/")
        with RECIPIENTS_CSV.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            {
                "project_name": f"Renewal {row['customer_id']}"[:30],
                "destination": f"{output}/personalized/{row['customer_id']}.mp4",
                "chapters": [
                    {
                        "name": "greeting",
                        "prompt": f"Greet {row['first_name']} by name with a warm, friendly title card.",
                        "duration": 10,
                    },
                    {
                        "name": "renewal",
                        "prompt": f"Remind {row['first_name']} that the {row['plan']} plan renews on "
                        f"{row['renewal_date']}, showing the date on a calendar animation.",
                    },
                ],
            }
            for row in rows
        ]

    BabouGenerateVideoOperator.partial(
        task_id="personalized_video",
        pool=BABOU_POOL,
        dest_conn_id="{{ params.output_conn_id }}",
        outlets=[PERSONALIZED_VIDEOS],
        overwrite=True,
        deferrable=True,
        poll_interval=1,
        timeout=3600,
    ).expand_kwargs(read_recipients())
# [END howto_babou_personalized_videos]
