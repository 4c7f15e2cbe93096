"""What every Babou operator shares: the connection, templating, the deferrable default, the import path."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.operators import _common
from airflow_provider_babou.operators.babou import (
    BabouCampaignOperator,
    BabouCreateChapterOperator,
    BabouCreateProjectOperator,
    BabouDownloadExportOperator,
    BabouGenerateVideoOperator,
    BabouStartExportOperator,
    BabouSubmitPromptOperator,
    BabouUploadAssetOperator,
)
from tests.operators.conftest import Env, make_context


def test_missing_connection_and_bad_key(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    op = BabouCreateProjectOperator(task_id="p", name="x", babou_conn_id="babou_nowhere")
    with pytest.raises(BabouInputError):
        op.execute(make_context())
    monkeypatch.setenv(
        "AIRFLOW_CONN_BABOU_BADKEY", '{"conn_type": "babou", "host": "http://x", "password": "nope"}'
    )
    with pytest.raises(BabouInputError, match="sk-bab-"):
        BabouCreateProjectOperator(task_id="p", name="x", babou_conn_id="babou_badkey").execute(
            make_context()
        )
    assert env.counts()["requests"] == 0


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (BabouCreateProjectOperator, {"name", "description", "settings"}),
        (BabouCreateChapterOperator, {"project_id", "name"}),
        (BabouSubmitPromptOperator, {"project_id", "chapter_id", "content"}),
        (BabouStartExportOperator, {"project_id"}),
        (BabouUploadAssetOperator, {"source", "content_type"}),
        (BabouDownloadExportOperator, {"project_id", "destination", "dest_conn_id"}),
        (
            BabouGenerateVideoOperator,
            {"project_name", "chapters", "destination", "dest_conn_id", "description"},
        ),
    ],
)
def test_template_fields(cls: Any, fields: set[str]) -> None:
    assert set(cls.template_fields) == fields


def test_templates_render_ids_and_text(env: Env) -> None:
    op = BabouSubmitPromptOperator(
        task_id="s",
        project_id="{{ params.p }}",
        chapter_id="{{ params.c }}",
        content="Hello {{ params.who }}",
    )
    op.render_template_fields({"params": {"p": "prj_1", "c": "chp_2", "who": "world"}})
    assert (op.project_id, op.chapter_id, op.content) == ("prj_1", "chp_2", "Hello world")


def test_deferrable_default_follows_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # Moved from operators/babou.py (_default_deferrable) to operators/_common.py (default_deferrable).
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert _common.default_deferrable() is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")
    assert _common.default_deferrable() is False


def test_stable_import_path_names_every_operator() -> None:
    from airflow_provider_babou.operators import babou

    operators = [
        cls.__name__
        for cls in (
            BabouCampaignOperator,
            BabouCreateChapterOperator,
            BabouCreateProjectOperator,
            BabouDownloadExportOperator,
            BabouGenerateVideoOperator,
            BabouStartExportOperator,
            BabouSubmitPromptOperator,
            BabouUploadAssetOperator,
        )
    ]
    assert sorted(babou.__all__) == sorted([*operators, "campaign_chunks"])
    for name in babou.__all__:
        assert name == "campaign_chunks" or issubclass(getattr(babou, name), _common.BabouBaseOperator)
