"""BabouUploadAssetOperator against the emulator: upload, wait blocking or deferred, source checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_babou.exceptions import BabouInputError, BabouJobFailedError
from airflow_provider_babou.operators.babou import BabouUploadAssetOperator
from airflow_provider_babou.triggers.babou import BabouAssetTrigger
from tests.keys import ALICE
from tests.operators.conftest import FAST, PNG, Env, deferred, drive, make_context


@pytest.fixture
def logo(tmp_path: Path) -> Path:
    source = tmp_path / "logo.png"
    source.write_bytes(PNG)
    return source


class TestUploadAsset:
    def test_upload_and_wait_blocking(self, env: Env, logo: Path) -> None:
        context = make_context()
        result = BabouUploadAssetOperator(
            task_id="a", source=str(logo), wait_for_ready=True, deferrable=False, **FAST
        ).execute(context)
        assert result["state"] == "ready"
        assert result["content_type"] == "image/png"
        assert context["ti"].xcoms["asset_id"] == result["asset_id"]

    def test_upload_without_waiting(self, env: Env, logo: Path) -> None:
        result = BabouUploadAssetOperator(task_id="a", source=logo).execute(make_context())
        assert result["asset_id"].startswith("ast_")
        assert env.counts()["assets_uploaded"] == 1

    def test_deferrable_round_trip(self, env: Env, logo: Path) -> None:
        op = BabouUploadAssetOperator(
            task_id="a", source=str(logo), wait_for_ready=True, deferrable=True, **FAST
        )
        context = make_context()
        deferral = deferred(op, context)
        assert isinstance(deferral.trigger, BabouAssetTrigger)
        assert deferral.trigger.asset_id == context["ti"].xcoms["asset_id"]
        result = op.execute_complete(context, drive(deferral.trigger))
        assert result["state"] == "ready"
        assert result["asset_id"] == deferral.trigger.asset_id

    def test_failed_asset_fails_the_task(self, env: Env, logo: Path) -> None:
        env.emulator.fail_next(ALICE, "asset")
        op = BabouUploadAssetOperator(
            task_id="a", source=str(logo), wait_for_ready=True, deferrable=False, **FAST
        )
        with pytest.raises(BabouJobFailedError):
            op.execute(make_context())

    def test_bad_sources_before_any_request(self, env: Env, tmp_path: Path) -> None:
        (tmp_path / "notes.unknownext").write_bytes(b"x")
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(tmp_path / "missing.png")).execute(
                make_context()
            )
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(tmp_path)).execute(make_context())
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(tmp_path / "notes.unknownext")).execute(
                make_context()
            )
        big = tmp_path / "big.mp4"
        with big.open("wb") as handle:
            handle.truncate(100 * 1024 * 1024 + 1)
        with pytest.raises(BabouInputError):
            BabouUploadAssetOperator(task_id="a", source=str(big)).execute(make_context())
        assert env.counts()["requests"] == 0


def test_path_sources_survive_templating_and_upload(env: Env, logo: Path) -> None:
    for value in (logo, ObjectStoragePath(f"file://{logo}"), f"file://{logo}"):
        op = BabouUploadAssetOperator(task_id="a", source=value)
        op.render_template_fields({})
        assert op.source == value
        assert op.execute(make_context())["asset_id"].startswith("ast_")
    assert env.counts()["assets_uploaded"] == 3
