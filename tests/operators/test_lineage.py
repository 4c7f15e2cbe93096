"""OpenLineage facets of every operator, after real runs against the emulator.

``get_openlineage_facets_on_complete`` is what the OpenLineage listener calls once a task ends;
the run facet's ids must be the ones the task pushed to XCom, the datasets must follow
OpenLineage's naming (``file`` + absolute path, ``babou://host:port`` + object path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.sdk import ObjectStoragePath
from openlineage.client.serde import Serde

import airflow_provider_babou
from airflow_provider_babou.lineage import location_dataset
from airflow_provider_babou.operators.babou import (
    BabouCreateChapterOperator,
    BabouCreateProjectOperator,
    BabouDownloadExportOperator,
    BabouGenerateVideoOperator,
    BabouStartExportOperator,
    BabouSubmitPromptOperator,
    BabouUploadAssetOperator,
)
from tests.helpers import run_python
from tests.operators.conftest import FAST, PNG, Env, FakeTI, deferred, drive, make_context

SCHEMA = json.loads((Path(airflow_provider_babou.__file__).parent / "lineage_facets.json").read_text())


def _facets(op: Any, ti: FakeTI) -> OperatorLineage:
    lineage = op.get_openlineage_facets_on_complete(ti)
    assert isinstance(lineage, OperatorLineage)
    return lineage


def _names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def _babou(env: Env) -> str:
    return f"babou://{urlsplit(env.emulator.url).netloc}"


def _run_facet(lineage: OperatorLineage) -> dict[str, Any]:
    """The ``babou`` run facet as OpenLineage serialises it, checked against the shipped schema."""
    facet = Serde.to_dict(lineage.run_facets["babou"])
    assert facet["_schemaURL"].endswith("lineage_facets.json#/$defs/BabouRunFacet")
    assert facet["_producer"].endswith(f"/tree/v{airflow_provider_babou.__version__}")
    fields = SCHEMA["$defs"]["BabouRunFacet"]["allOf"][1]["properties"]
    assert set(facet) - {"_producer", "_schemaURL"} <= set(fields)
    return {k: v for k, v in facet.items() if not k.startswith("_")}


def test_project_and_chapter(env: Env) -> None:
    ti = FakeTI()
    project_op = BabouCreateProjectOperator(task_id="p", name="Lineage")
    project_id = project_op.execute(make_context(ti))["project_id"]
    lineage = _facets(project_op, ti)
    assert _run_facet(lineage) == {"project_id": ti.xcoms["project_id"]} == {"project_id": project_id}
    assert _names(lineage.outputs) == [(_babou(env), f"projects/{project_id}")]
    assert lineage.inputs == []

    ti = FakeTI()
    chapter_op = BabouCreateChapterOperator(task_id="c", project_id=project_id, name="Intro")
    chapter_op.execute(make_context(ti))
    lineage = _facets(chapter_op, ti)
    assert _run_facet(lineage) == {"project_id": project_id, "chapter_id": ti.xcoms["chapter_id"]}
    assert _names(lineage.outputs) == [
        (_babou(env), f"projects/{project_id}/chapters/{ti.xcoms['chapter_id']}")
    ]


def test_prompt_deferred_carries_its_text_and_ids(env: Env) -> None:
    project_id, chapter_id = env.project_with_prompt("An earlier prompt")
    ti = FakeTI()
    kwargs: dict[str, Any] = {"project_id": project_id, "chapter_id": chapter_id, **FAST}
    kwargs.update(content="A lighthouse at dusk", wait_for_completion=True, deferrable=True)
    context = make_context(ti)
    trigger = deferred(BabouSubmitPromptOperator(task_id="s", **kwargs), context).trigger
    # The task resumes in a new process, on a fresh copy of the operator.
    op = BabouSubmitPromptOperator(task_id="s", **kwargs)
    op.execute_complete(context, drive(trigger))
    lineage = _facets(op, ti)
    ids = {"project_id": project_id, "chapter_id": chapter_id, "prompt_id": ti.xcoms["prompt_id"]}
    assert _run_facet(lineage) == ids
    job = Serde.to_dict(lineage.job_facets["babouPrompts"])
    assert job["prompts"] == [{"chapter_id": chapter_id, "content": "A lighthouse at dusk"}]
    assert job["_schemaURL"].endswith("#/$defs/BabouPromptsJobFacet")
    assert _names(lineage.outputs) == [(_babou(env), f"projects/{project_id}/chapters/{chapter_id}")]


@pytest.mark.parametrize("deferrable", [False, True])
def test_export_reports_project_in_and_video_out(env: Env, deferrable: bool) -> None:
    project_id, _ = env.project_with_prompt()
    ti = FakeTI()
    op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=deferrable, **FAST)
    context = make_context(ti)
    if deferrable:
        trigger = deferred(op, context).trigger
        op = BabouStartExportOperator(task_id="e", project_id=project_id, deferrable=True, **FAST)
        op.execute_complete(context, drive(trigger))
    else:
        op.execute(context)
    lineage = _facets(op, ti)
    assert ti.xcoms["export_id"]
    assert _run_facet(lineage) == {"project_id": project_id, "export_id": ti.xcoms["export_id"]}
    assert _names(lineage.inputs) == [(_babou(env), f"projects/{project_id}")]
    assert _names(lineage.outputs) == [(_babou(env), f"projects/{project_id}/export")]


def test_download_writes_the_mp4_as_a_file_dataset(env: Env, tmp_path: Path) -> None:
    project_id = env.completed_export()
    destination = tmp_path / "out" / "video.mp4"
    ti = FakeTI()
    op = BabouDownloadExportOperator(
        task_id="d", project_id=project_id, destination=ObjectStoragePath(f"file://{destination}")
    )
    op.execute(make_context(ti))
    lineage = _facets(op, ti)
    assert destination.is_file()
    assert _names(lineage.outputs) == [("file", str(destination))]
    assert _names(lineage.inputs) == [(_babou(env), f"projects/{project_id}/export")]
    assert _run_facet(lineage) == {"project_id": project_id}


def test_upload_reads_the_source_file(env: Env, tmp_path: Path) -> None:
    source = tmp_path / "logo.png"
    source.write_bytes(PNG)
    ti = FakeTI()
    kwargs: dict[str, Any] = {"source": str(source), "wait_for_ready": True, "deferrable": True, **FAST}
    context = make_context(ti)
    trigger = deferred(BabouUploadAssetOperator(task_id="a", **kwargs), context).trigger
    op = BabouUploadAssetOperator(task_id="a", **kwargs)  # resumed on a fresh copy
    op.execute_complete(context, drive(trigger))
    lineage = _facets(op, ti)
    asset_id = ti.xcoms["asset_id"]
    assert _names(lineage.inputs) == [("file", str(source))]
    assert _names(lineage.outputs) == [(_babou(env), f"assets/{asset_id}")]
    assert _run_facet(lineage) == {"asset_id": asset_id}


def test_generate_video_reports_every_prompt_and_the_mp4(env: Env, tmp_path: Path) -> None:
    chapters = [{"name": "Intro", "prompt": "A logo reveal"}, {"name": "Outro", "prompt": "A call to action"}]
    ti = FakeTI()
    op = BabouGenerateVideoOperator(
        task_id="g",
        project_name="Lineage video",
        chapters=chapters,
        destination=str(tmp_path / "launch.mp4"),
        deferrable=False,
        **FAST,
    )
    result = op.execute(make_context(ti))
    lineage = _facets(op, ti)
    facet = _run_facet(lineage)
    assert facet == {
        "project_id": ti.xcoms["project_id"],
        "chapter_ids": ti.xcoms["chapter_ids"],
        "prompt_ids": ti.xcoms["prompt_ids"],
    }
    assert set(facet["chapter_ids"]) == {"Intro", "Outro"}
    prompts = Serde.to_dict(lineage.job_facets["babouPrompts"])["prompts"]
    assert [(p["chapter_name"], p["chapter_id"], p["content"]) for p in prompts] == [
        (c["name"], ti.xcoms["chapter_ids"][c["name"]], c["prompt"]) for c in chapters
    ]
    assert _names(lineage.outputs) == [("file", result["path"])]


def test_a_task_that_never_ran_reports_nothing() -> None:
    op = BabouCreateProjectOperator(task_id="p", name="Lineage")
    assert op.get_openlineage_facets_on_complete(FakeTI()) == OperatorLineage()


def test_object_storage_and_relative_paths_follow_openlineage_naming(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    assert location_dataset("videos/a.mp4") == ("file", str(tmp_path / "videos" / "a.mp4"))
    assert location_dataset(ObjectStoragePath("s3://bucket/videos/a.mp4", conn_id="aws_default")) == (
        "s3://bucket",
        "videos/a.mp4",
    )
    with open(__file__, "rb") as handle:
        assert location_dataset(handle) is None  # a file object has no name to report


def test_operators_do_not_import_openlineage() -> None:
    # The provider must work without the OpenLineage provider: nothing imports it before it asks
    # (Airflow's providers manager reads every provider's get_provider_info, which is not ours).
    code = """
import sys
import airflow_provider_babou.operators.babou
ours = ("openlineage.extractors", "compat.openlineage.facet", "_lineage_facets")
print([m for m in sys.modules if m.split(".")[0] == "openlineage" or m.endswith(ours)])
"""
    assert run_python("-c", code).strip() == "[]"
