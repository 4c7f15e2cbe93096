"""Names that moved, still importable from where users may have imported them."""

from __future__ import annotations

import pytest

from airflow_provider_babou import deferral
from airflow_provider_babou.hooks.babou import BabouHook


def test_the_resume_mixin_is_still_importable_from_compat_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"deferral\.RetryAwareResumeMixin"):
        from airflow_provider_babou._compat import RetryAwareResumeMixin
    assert RetryAwareResumeMixin is deferral.RetryAwareResumeMixin


def test_find_prompt_is_the_old_name_of_find_prompt_by_content() -> None:
    assert BabouHook.find_prompt is BabouHook.find_prompt_by_content
