"""Runs whenever a finished Babou video lands: scheduled on the Asset the pipeline emits.

The download task attaches ``project_id``, ``path``, ``size`` and ``sha256`` to the asset event,
so this DAG knows which file to publish without asking Babou again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, task

# The same URI as the producer's outlet in babou_video_pipeline.py.
PRODUCT_VIDEO = Asset("babou://videos/product-launch")

# [START howto_babou_asset_consumer]
with DAG(
    dag_id="babou_video_consumer",
    doc_md=__doc__,  # the module docstring, shown on the DAG page
    schedule=[PRODUCT_VIDEO],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["babou", "example"],
) as dag:

    @task(inlets=[PRODUCT_VIDEO])
    def publish(*, inlet_events: Any = None) -> dict[str, Any]:
        """Pick up the newest video's metadata from the asset event (publish it somewhere real)."""
        events = inlet_events[PRODUCT_VIDEO] if inlet_events is not None else []
        if not events:
            raise ValueError("no babou://videos/product-launch event yet: run babou_video_pipeline first")
        extra = dict(events[-1].extra)
        print(f"Publishing {extra['path']} ({extra['size']} bytes, sha256 {extra['sha256']})")
        return extra

    publish()
# [END howto_babou_asset_consumer]
