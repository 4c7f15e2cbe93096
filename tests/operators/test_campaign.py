"""BabouCampaignOperator against the emulator: rows checked first, every video made once, the
manifest, partial failure and a retry that redoes only what is not done, bounded searches."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_babou import deferral
from airflow_provider_babou._compat import TaskDeferred
from airflow_provider_babou.campaign.manifest import Manifest
from airflow_provider_babou.exceptions import BabouCampaignError, BabouInputError
from airflow_provider_babou.operators.babou import BabouCampaignOperator, campaign_chunks
from tests.keys import ALICE
from tests.operators.conftest import Env, FakeTI, drive, make_context

CHAPTERS = [
    {"name": "greeting", "prompt": "Greet {first_name} warmly.", "duration": 5},
    {"name": "renewal", "prompt": "Remind {first_name} that {plan} renews soon."},
]


def rows(n: int) -> list[dict[str, Any]]:
    return [{"customer_id": f"c-{i:04d}", "first_name": f"Name{i}", "plan": "Pro"} for i in range(n)]


def campaign(tmp_path: Path, source: Any, **kwargs: Any) -> BabouCampaignOperator:
    args: dict[str, Any] = {
        "task_id": "campaign",
        "rows": source,
        "key": "customer_id",
        "project_name": "Renewal {customer_id}",
        "description": "For {first_name}",
        "chapters": CHAPTERS,
        "destination": str(tmp_path / "videos" / "{customer_id}.mp4"),
        "manifest": str(tmp_path / "videos" / "manifest.jsonl"),
        "poll_interval": 0.05,
        "batch_window": 0.5,
        "min_deferral": 0,
        "timeout": 60,
        **kwargs,
    }
    return BabouCampaignOperator(**args)


def run(
    op: BabouCampaignOperator, context: Any, resume: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    """Run a campaign as Airflow does (execute, then each resume after its trigger's event);
    return its result and how many times it deferred. ``resume`` keeps the last resume's
    ``(method, kwargs)``; given one already, the run starts with it (Airflow 3.1's retries)."""
    resume = {} if resume is None else resume
    if "last" in resume:
        call = lambda: op.resume_execution(*resume["last"], context)  # noqa: E731
    else:
        call = lambda: op.execute(context)  # noqa: E731
    deferrals = 0
    while True:
        try:
            return call(), deferrals
        except TaskDeferred as deferral:
            deferrals += 1
            event = drive(deferral.trigger)
            resume["last"] = (deferral.method_name, {**(deferral.kwargs or {}), "event": event})
            call = lambda r=resume["last"]: op.resume_execution(*r, context)  # noqa: E731


def manifest_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    lines = (tmp_path / "videos" / "manifest.jsonl").read_text().splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def routes(env: Env) -> dict[str, int]:
    return env.counts().get("requests_by_route", {})


@pytest.fixture
def quick(env: Env) -> Env:
    env.emulator.configure(prompt_seconds=0.2, export_queued_seconds=0.1, export_processing_seconds=0.2)
    return env


def test_every_row_gets_one_video_and_a_manifest_line(quick: Env, tmp_path: Path) -> None:
    result, deferrals = run(campaign(tmp_path, rows(6)), make_context())

    manifest = str(tmp_path / "videos" / "manifest.jsonl")
    assert result == {"rows": 6, "done": 6, "failed": 0, "manifest": manifest}
    lines = manifest_rows(tmp_path)
    assert sorted(lines) == [f"c-{i:04d}" for i in range(6)]
    for key, line in lines.items():
        assert line["stage"] == "done"
        assert line["size"] > 0
        assert len(line["sha256"]) == 64
        assert Path(line["path"]) == tmp_path / "videos" / f"{key}.mp4"
        assert Path(line["path"]).read_bytes()[4:8] == b"ftyp"
    counts = quick.counts()
    assert (counts["projects_created"], counts["chapters_created"]) == (6, 12)
    assert (counts["prompts_submitted"], counts["exports_started"]) == (12, 6)
    by_route = routes(quick)
    # A first try has nothing to reconcile: no listing, no read before a write.
    assert not any(r.startswith("GET /api/v1/projects") and r.endswith("/projects") for r in by_route)
    assert sum(n for r, n in by_route.items() if r.startswith("POST ")) == 6 * 6
    # Deferrals do not grow with rows: prompts, then exports (a batch each, here).
    assert 1 <= deferrals <= 4


def test_bad_rows_are_all_named_before_any_request(quick: Env, tmp_path: Path) -> None:
    bad = [
        *rows(2),
        {"customer_id": "c-0001", "first_name": "Twin", "plan": "Pro"},  # repeated key
        {"customer_id": "", "first_name": "Nobody", "plan": "Pro"},  # empty key
        {"first_name": "Keyless", "plan": "Pro"},  # no key
    ]
    with pytest.raises(BabouInputError) as info:
        campaign(tmp_path, bad).execute(make_context())
    text = str(info.value)
    assert "3 of 5 rows are invalid" in text
    assert "row 3" in text
    assert "repeats row 2" in text
    assert "row 4" in text
    assert "row 5" in text

    worse = [*rows(2), {"customer_id": "c-x", "first_name": "A" * 40, "plan": "../.."}]
    op = campaign(tmp_path, worse, project_name="{first_name}", destination=str(tmp_path / "{plan}.mp4"))
    with pytest.raises(BabouInputError) as info:
        op.execute(make_context())
    text = str(info.value)
    assert "row 3 ('c-x'): project name is 40 characters" in text
    assert "30" in text
    assert "row 2 ('c-0001'): destination" in text
    assert "is also row 1's" in text
    missing = campaign(tmp_path, rows(1), project_name="{surname}")
    with pytest.raises(BabouInputError, match="no column 'surname'"):
        missing.execute(make_context())
    assert quick.counts()["requests"] == 0


def test_rows_come_from_csv_and_json_lines_files(quick: Env, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["customer_id", "first_name", "plan"])
        writer.writeheader()
        writer.writerows(rows(3))
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows(5)))
    assert campaign_chunks(str(source), key="customer_id", chunk_size=2) == [0, 1]
    assert campaign_chunks(str(jsonl), key="customer_id", chunk_size=2) == [0, 1, 2]

    result, _ = run(campaign(tmp_path, str(jsonl), chunk=2, chunk_size=2), make_context())

    assert result["rows"] == 1
    assert result["done"] == 1
    assert result["manifest"].endswith("manifest-00002.jsonl")
    assert (tmp_path / "videos" / "c-0004.mp4").exists()


def test_failed_rows_fail_the_task_and_a_retry_redoes_only_them(
    quick: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deferral, "RESUME_SURVIVES_RETRY", True)  # Airflow 3.1's retries, on any Airflow
    quick.emulator.fail_next(ALICE, "prompt", count=3, message="Generation failed: GPU on fire")
    resume: dict[str, Any] = {}
    first_try = FakeTI(try_number=1, map_index=0)  # a mapped chunk
    with pytest.raises(BabouCampaignError) as info:
        run(campaign(tmp_path, rows(10)), make_context(first_try), resume)
    failed = {k for k, r in manifest_rows(tmp_path).items() if r["stage"] == "failed"}
    assert 2 <= len(failed) <= 3  # three prompts failed: one row may hold two of them
    text = str(info.value)
    assert f"{len(failed)} of 10 rows failed" in text
    assert "GPU on fire" in text
    assert all(repr(key) in text for key in failed)
    before = quick.counts()
    assert before["exports_started"] == 10 - len(failed)

    # The retry begins as Airflow 3.1 begins it: resuming the failed try's last deferral.
    assert "last" in resume  # the first try failed after a resume
    retry = FakeTI(try_number=2, map_index=0, xcoms=dict(first_try.xcoms))  # kept by the deferral
    result, _ = run(campaign(tmp_path, rows(10)), make_context(retry), resume)

    assert result["done"] == 10
    assert result["failed"] == 0
    after = quick.counts()
    assert after["projects_created"] == before["projects_created"] == 10
    assert after["chapters_created"] == before["chapters_created"] == 20
    assert after["prompts_submitted"] - before["prompts_submitted"] == 3  # the failed prompts only
    assert after["exports_started"] - before["exports_started"] == len(failed)
    assert all(r["stage"] == "done" for r in manifest_rows(tmp_path).values())


def test_a_clear_reuses_every_done_row(quick: Env, tmp_path: Path) -> None:
    run(campaign(tmp_path, rows(4)), make_context())
    before = quick.counts()

    result, deferrals = run(campaign(tmp_path, rows(4)), make_context(FakeTI(try_number=3)))

    assert result["done"] == 4
    assert deferrals == 0
    after = quick.counts()
    assert after["requests"] == before["requests"]  # nothing to do, nothing asked


def test_a_retry_searches_only_what_was_made_since_the_campaign_began(quick: Env, tmp_path: Path) -> None:
    # An account with a long history, and a first try cut off right after it sent its creates.
    quick.emulator.seed(ALICE, 3000, age_seconds=30 * 86400)
    op = campaign(tmp_path, rows(4))
    original = op._prepare

    def cut_off(context: Any, *, new_try: bool) -> Any:
        plans, manifest = original(context, new_try=new_try)
        from airflow_provider_babou.campaign.work import CampaignWork

        three = {k: v for k, v in plans.items() if k != "c-0003"}
        sent = Manifest(manifest.location, [r for r in manifest.rows.values() if r.key in three])
        CampaignWork(op.hook, three, sent, concurrency=2, dest_conn_id=None).run()  # three rows made ...
        for rec in manifest.rows.values():  # ... and the fourth about to be: the manifest knows no id
            rec.stage, rec.project_id, rec.chapter_ids, rec.prompt_ids = "pending", None, {}, {}
            rec.started_at = time.time()
        manifest.write()
        raise RuntimeError("worker lost")

    op._prepare = cut_off  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        op.execute(make_context())
    assert routes(quick).get("GET /api/v1/projects", 0) == 0  # the first try never listed
    before = quick.counts()

    result, _ = run(campaign(tmp_path, rows(4)), make_context(FakeTI(try_number=2)))

    assert result["done"] == 4
    after = quick.counts()
    for made, more in (("projects_created", 1), ("chapters_created", 2), ("prompts_submitted", 2)):
        assert after[made] - before[made] == more, made  # three found again, the fourth made once
    # One scan for all four, newest first, stopped at the first project older than the campaign
    # (the fourth is not there): one page of 100, not the account's 30 pages.
    assert routes(quick).get("GET /api/v1/projects", 0) == 1


def test_blocking_mode_runs_the_same_trigger_in_the_task(quick: Env, tmp_path: Path) -> None:
    result = campaign(tmp_path, rows(3), deferrable=False).execute(make_context())
    assert result["done"] == 3
    assert quick.counts()["exports_started"] == 3


def test_a_manifest_of_another_run_is_refused_before_any_request(quick: Env, tmp_path: Path) -> None:
    run(campaign(tmp_path, rows(2)), make_context())
    before = quick.counts()["requests"]
    other_run = make_context(FakeTI(run_id="scheduled__2026-01-02T00:00:00+00:00"))
    with pytest.raises(BabouInputError, match="another run or campaign"):
        campaign(tmp_path, rows(2)).execute(other_run)
    assert quick.counts()["requests"] == before


def test_rows_and_videos_and_manifest_in_object_storage(
    quick: Env, tmp_path: Path, s3_server: Any, s3_bucket: str
) -> None:
    s3 = s3_server.client()
    body = "".join(json.dumps(r) + "\n" for r in rows(3))
    s3.put_object(Bucket=s3_bucket, Key="in/rows.jsonl", Body=body.encode())
    op = campaign(
        tmp_path,
        f"s3://{s3_bucket}/in/rows.jsonl",
        destination=f"s3://{s3_bucket}/out/{{customer_id}}.mp4",
        manifest=f"s3://{s3_bucket}/out/manifest.jsonl",
        dest_conn_id="babou_s3",
    )

    result, _ = run(op, make_context())

    assert result["done"] == 3
    assert result["manifest"].endswith(f"{s3_bucket}/out/manifest.jsonl")
    lines = s3.get_object(Bucket=s3_bucket, Key="out/manifest.jsonl")["Body"].read().decode().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == ["done"] * 3
    video = s3.get_object(Bucket=s3_bucket, Key="out/c-0001.mp4")["Body"].read()
    assert video[4:8] == b"ftyp"
