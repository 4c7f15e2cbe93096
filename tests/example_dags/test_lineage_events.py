"""The OpenLineage listener, enabled as a user would enable it, emits our facets for a DAG run.

The OpenLineage plugin decides at import whether to register its listener (only when a transport
is configured), so the run happens in a subprocess whose environment configures a file
transport; the test reads the COMPLETE events it wrote.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.hooks.babou import BabouHook
from tests.conftest import REPO
from tests.helpers import run_python

_RUN_DAG = """
import sys
from tests.compat import DagBag, sync_for_dag_test
bag = DagBag(sys.argv[1])
sync_for_dag_test(bag)
run = bag.get_dag(sys.argv[2]).test()
sys.exit(0 if run.state == "success" else 1)
"""


def _run_with_openlineage(dag_id: str, events: Path, output_dir: Path) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "babou-tests",
        "BABOU_OUTPUT_DIR": str(output_dir),
    }
    run_python("-c", _RUN_DAG, str(REPO / "example_dags"), dag_id, cwd=REPO, env=env, timeout=300)
    return [json.loads(line) for line in events.read_text().splitlines() if line.strip()]


def test_pipeline_run_emits_babou_facets(
    airflow_db: None, emulator: EmulatorControl, make_conn: Callable[..., str], tmp_path: Path
) -> None:
    make_conn()
    events = _run_with_openlineage("babou_video_pipeline", tmp_path / "events.jsonl", tmp_path / "videos")

    complete = {
        e["job"]["name"].split(".", 1)[1]: e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"].startswith("babou_video_pipeline.")
    }
    assert set(complete) >= {
        "create_project",
        *(f"create_chapter_{c}" for c in ("intro", "features", "outro")),
        *(f"prompt_{c}" for c in ("intro", "features", "outro")),
        "start_export",
        "download_video",
    }
    babou = f"babou://{urlsplit(emulator.url).netloc}"
    project_id = complete["create_project"]["run"]["facets"]["babou"]["project_id"]
    assert complete["create_project"]["outputs"] == [
        {"namespace": babou, "name": f"projects/{project_id}", "facets": {}}
    ]

    prompt = complete["prompt_intro"]
    ids = prompt["run"]["facets"]["babou"]
    assert ids["project_id"] == project_id
    # The ids are the prompt this task submitted: Babou has it on that chapter.
    with closing(BabouHook()) as hook:
        chapter = hook.get_chapter(project_id, ids["chapter_id"])
    assert chapter.name == "intro"
    assert ids["prompt_id"] in [p.id for p in chapter.prompts]
    texts = [p["content"] for p in prompt["job"]["facets"]["babouPrompts"]["prompts"]]
    assert texts == ["Open on the product logo over a dark gradient; the tagline types itself in white."]

    export = complete["start_export"]
    assert export["run"]["facets"]["babou"]["project_id"] == project_id
    assert [o["name"] for o in export["outputs"]] == [f"projects/{project_id}/export"]

    download = complete["download_video"]
    (video,) = (tmp_path / "videos" / "babou_video_pipeline").glob("*.mp4")
    assert [(i["namespace"], i["name"]) for i in download["inputs"]] == [
        (babou, f"projects/{project_id}/export")
    ]
    assert [(o["namespace"], o["name"]) for o in download["outputs"]] == [("file", str(video))]
    # The emulator saw exactly one run's worth of work: the events describe that run.
    assert emulator.stats()["total"]["exports_started"] == 1
    assert "sk-bab-" not in (tmp_path / "events.jsonl").read_text()
