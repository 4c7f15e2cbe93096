"""A DAG as a user of the provider writes one; ``tests/package/test_pytest_plugin.py`` tests it so."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_babou.operators.babou import BabouGenerateVideoOperator

with DAG(
    dag_id="welcome_video",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"output_dir": "/tmp/welcome-videos"},
) as dag:
    BabouGenerateVideoOperator(
        task_id="render",
        project_name="Welcome",
        chapters=[
            {"name": "hello", "prompt": "A warm hello from the whole team.", "duration": 3},
            {"name": "tour", "prompt": "A quick tour of the dashboard."},
        ],
        destination="{{ params.output_dir }}/welcome.mp4",
        overwrite=True,
        deferrable=True,
        poll_interval=0.2,
    )
