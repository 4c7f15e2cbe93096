"""Three chapters of text to one downloaded MP4, every wait deferred to the triggerer.

project -> three chapters -> a prompt per chapter (deferred until built) -> export (deferred
until rendered) -> download. Run it against the local emulator with ``bash .ci/demo``.

The MP4 goes to a local folder by default (``BABOU_OUTPUT_DIR``, else /tmp/babou-videos). A run
can send it to object storage instead, through ``ObjectStoragePath`` and an Airflow connection:
``airflow dags trigger babou_video_pipeline --conf '{"output": "s3://my-bucket/videos",
"output_conn_id": "aws_default"}'``. The destination is a DAG param, not an environment variable,
because workers on other machines must all write where the run says: the run's conf lives in the
metadata DB, while each worker parses this file with its own environment.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, Param

from airflow_provider_babou.operators.babou import (
    BabouCreateChapterOperator,
    BabouCreateProjectOperator,
    BabouDownloadExportOperator,
    BabouStartExportOperator,
    BabouSubmitPromptOperator,
)

OUTPUT_DIR = os.environ.get("BABOU_OUTPUT_DIR", "/tmp/babou-videos")
# Downstream DAGs can be scheduled on this asset (see babou_video_consumer.py).
PRODUCT_VIDEO = Asset("babou://videos/product-launch")

CHAPTERS = {
    "intro": "Open on the product logo over a dark gradient; the tagline types itself in white.",
    "features": "Three feature cards slide in from the right, each with an icon and one short line.",
    "outro": "Close on the call to action 'Try it today' with the website URL, calm music fading.",
}

# [START howto_babou_video_pipeline]
with DAG(
    dag_id="babou_video_pipeline",
    doc_md=__doc__,  # the module docstring, shown on the DAG page
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["babou", "example"],
    default_args={"retries": 2},
    params={
        "output": Param(OUTPUT_DIR, type="string", description="a local folder or s3://bucket/prefix"),
        "output_conn_id": Param("aws_default", type="string", description="connection for s3:// output"),
    },
) as dag:
    create_project = BabouCreateProjectOperator(
        task_id="create_project",
        name="Product launch",
        description="Nightly product video built by Airflow",
    )
    project_id = "{{ ti.xcom_pull(task_ids='create_project', key='project_id') }}"

    start_export = BabouStartExportOperator(
        task_id="start_export",
        project_id=project_id,
        deferrable=True,
        poll_interval=1,
        timeout=1800,
    )

    # Babou plays chapters in creation order, so they are created one after another; the prompts
    # (the slow part) still build in parallel.
    previous = create_project
    for chapter_name, prompt in CHAPTERS.items():
        create_chapter = BabouCreateChapterOperator(
            task_id=f"create_chapter_{chapter_name}",
            project_id=project_id,
            name=chapter_name,
        )
        submit_prompt = BabouSubmitPromptOperator(
            task_id=f"prompt_{chapter_name}",
            project_id=project_id,
            chapter_id=f"{{{{ ti.xcom_pull(task_ids='create_chapter_{chapter_name}', key='chapter_id') }}}}",
            content=prompt,
            wait_for_completion=True,
            deferrable=True,
            poll_interval=1,
            timeout=900,
        )
        previous >> create_chapter >> submit_prompt >> start_export
        previous = create_chapter

    download = BabouDownloadExportOperator(
        task_id="download_video",
        project_id=project_id,
        destination="{{ params.output.rstrip('/') }}/{{ dag.dag_id }}/"
        "{{ run_id | replace(':', '-') | replace('+', '-') }}.mp4",
        dest_conn_id="{{ params.output_conn_id }}",
        overwrite=True,
        outlets=[PRODUCT_VIDEO],
    )
    start_export >> download
# [END howto_babou_video_pipeline]
