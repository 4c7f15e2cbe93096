"""A deferrable sensor run through Airflow itself: ``dag.test()`` serialises the trigger's
kwargs, runs the trigger in-process and resumes the task in ``execute_complete``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from tests.keys import ALICE
from tests.triggers.babou_objects import Babou

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DAG_FILE = """
from datetime import datetime

import httpx
from airflow.sdk import DAG, task

from airflow_provider_babou.sensors.babou import BabouAssetSensor, BabouPromptSensor

IDS = "{{{{ ti.xcom_pull(task_ids='submit')['%s'] }}}}"

with DAG("babou_sensor_test", start_date=datetime(2025, 1, 1), schedule=None):

    @task
    def submit():
        # Submitted inside the run, so the prompt is still processing when the sensor starts.
        headers = {{"Authorization": "Bearer {api_key}"}}
        url = "{api_url}/projects/{project_id}/chapters/{chapter_id}/prompt"
        receipt = httpx.post(url, json={{"content": "Late arrival"}}, headers=headers).json()
        ids = {{"project_id": "{project_id}", "chapter_id": "{chapter_id}"}}
        return {{**ids, "prompt_id": receipt["prompt_id"]}}

    prompt = BabouPromptSensor(
        task_id="prompt",
        project_id=IDS % "project_id",
        chapter_id=IDS % "chapter_id",
        prompt_id=IDS % "prompt_id",
        deferrable=True,
        poll_interval=0.1,
        timeout=30,
    )
    submit() >> prompt
    BabouAssetSensor(task_id="asset", asset_id="{asset_id}", deferrable=True, poll_interval=0.1, timeout=30)
    BabouPromptSensor(
        task_id="late",
        project_id="{project_id}",
        chapter_id="{slow_chapter_id}",
        prompt_id="{slow_prompt_id}",
        deferrable=True,
        poll_interval=0.1,
        timeout=0.5,
    )
"""


def test_deferrable_sensors_in_a_dag_run(
    babou: Babou,
    emulator: EmulatorControl,
    airflow_db: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow import settings

    from tests.compat import DagBag, sync_for_dag_test

    project_id = babou.project()
    chapter_id = babou.chapter(project_id)
    asset_id = babou.asset()
    emulator.configure(prompt_seconds=30)
    slow_chapter_id = babou.chapter(project_id, "slow")
    slow_prompt_id = babou.prompt(project_id, slow_chapter_id)
    emulator.configure(prompt_seconds=1.0)  # long enough for the sensor to defer

    (tmp_path / "babou_sensor_test.py").write_text(
        textwrap.dedent(DAG_FILE).format(
            api_url=emulator.api_url,
            api_key=ALICE,
            asset_id=asset_id,
            project_id=project_id,
            chapter_id=chapter_id,
            slow_chapter_id=slow_chapter_id,
            slow_prompt_id=slow_prompt_id,
        )
    )
    # dag.test() only runs DAGs found in the dags-folder bundle, which reads settings.DAGS_FOLDER.
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    bag = DagBag(str(tmp_path))
    assert bag.import_errors == {}, bag.import_errors
    sync_for_dag_test(bag)  # Airflow 3.1's dag.test() needs the DAG serialised in the DB
    dag = bag.get_dag("babou_sensor_test")
    dag_run = dag.test()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"submit": "success", "asset": "success", "prompt": "success", "late": "failed"}, states
    xcoms = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in dag_run.get_task_instances()}
    assert xcoms["asset"]["id"] == asset_id
    assert xcoms["prompt"]["id"] == chapter_id
    prompt_id = xcoms["submit"]["prompt_id"]
    assert next(p for p in xcoms["prompt"]["prompts"] if p["id"] == prompt_id)["status"] == "completed"
