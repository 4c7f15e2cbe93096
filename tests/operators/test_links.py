"""Tests of the "Babou project" and "Babou video" extra links."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from airflow.sdk import BaseOperatorLink

from airflow_provider_babou.get_provider_info import get_provider_info
from airflow_provider_babou.links import BabouProjectLink, BabouVideoLink

LINKS = [BabouProjectLink, BabouVideoLink]


def test_names_and_keys() -> None:
    assert BabouProjectLink().name == "Babou project"
    assert BabouVideoLink().name == "Babou video"
    assert BabouProjectLink().xcom_key == "babou_project_url"
    assert BabouVideoLink().xcom_key == "babou_video_url"
    for link in LINKS:
        assert issubclass(link, BaseOperatorLink)


def test_listed_in_provider_info() -> None:
    listed = get_provider_info()["extra-links"]
    for link in LINKS:
        assert f"{link.__module__}.{link.__name__}" in listed


@pytest.mark.parametrize("link", LINKS)
def test_persist_pushes_the_url(link: type[Any]) -> None:
    ti = mock.Mock()
    link.persist({"ti": ti}, "https://app.babou.ai/projects/prj_1")
    ti.xcom_push.assert_called_once_with(key=link().xcom_key, value="https://app.babou.ai/projects/prj_1")


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("url", [None, ""])
def test_persist_stores_an_empty_link_without_a_url(link: type[Any], url: str | None) -> None:
    # Stored anyway: the worker reads every link when a task ends, and a missing XCom logs an error.
    ti = mock.Mock()
    link.persist({"ti": ti}, url)
    ti.xcom_push.assert_called_once_with(key=link().xcom_key, value="")


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize(("stored", "expected"), [("https://x/y.mp4", "https://x/y.mp4"), (None, "")])
def test_get_link_reads_the_stored_url(link: type[Any], stored: str | None, expected: str) -> None:
    from airflow.sdk.execution_time.xcom import XCom

    ti_key = mock.Mock()
    with mock.patch.object(XCom, "get_value", return_value=stored) as get_value:
        assert link().get_link(mock.Mock(), ti_key=ti_key) == expected
    get_value.assert_called_once_with(ti_key=ti_key, key=link().xcom_key)
