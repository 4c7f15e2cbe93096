"""Error mapping, retries under each emulator fault, and reconciliation after ambiguous POSTs."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from airflow_provider_babou.emulator import EmulatorControl
from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouConflictError,
    BabouJobFailedError,
    BabouNotFoundError,
    BabouOutcomeUnknownError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouValidationError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.hooks.babou import BabouHook
from airflow_provider_babou.polling import PollPolicy
from tests.helpers import FAST_POLL, completed_export, key_stats, route_count
from tests.keys import ALICE, BOB, EXPIRED

PROJECTS = "GET /api/v1/projects/{project_id}"
CREATE = "POST /api/v1/projects"
PROMPT = "POST /api/v1/projects/{project_id}/chapters/{chapter_id}/prompt"
EXPORT = "POST /api/v1/projects/{project_id}/export"
EXPORT_STATUS = "GET /api/v1/projects/{project_id}/export"
CHAPTER = "GET /api/v1/projects/{project_id}/chapters/{chapter_id}"


# --------------------------------------------------------------------------- error classes


def test_not_found_and_other_keys_data(hook: BabouHook, make_conn: Callable[..., str]) -> None:
    project = hook.create_project(name="mine")
    with pytest.raises(BabouNotFoundError) as info:
        hook.get_project("prj_missing")
    err = info.value
    assert (err.http_status, err.code, err.method, err.path) == (
        404,
        "NOT_FOUND",
        "GET",
        "/api/v1/projects/prj_missing",
    )
    make_conn("babou_bob", key=BOB)
    with pytest.raises(BabouNotFoundError):
        BabouHook("babou_bob").get_project(project.id)


@pytest.mark.parametrize(("key", "code"), [(EXPIRED, "API_KEY_EXPIRED"), ("sk-bab-unknown", "UNAUTHORIZED")])
def test_auth_errors(make_conn: Callable[..., str], emulator: EmulatorControl, key: str, code: str) -> None:
    hook = BabouHook(make_conn("babou_other", key=key), retry_deadline=60, max_backoff=0.01)
    with pytest.raises(BabouAuthError) as info:
        hook.list_projects()
    assert info.value.http_status == 401
    assert info.value.code == code
    assert info.value.hint
    assert emulator.stats()["total"]["requests"] == 1  # a 401 is never retried
    ok, message = hook.test_connection()
    assert not ok
    assert ("expired" in message) == (code == "API_KEY_EXPIRED")
    assert key not in message
    assert key not in str(info.value)
    assert key not in repr(info.value)


def test_conflict_and_validation(hook: BabouHook) -> None:
    project = hook.create_project(name="p")
    with pytest.raises(BabouValidationError) as info:
        hook.start_export(project.id)  # no completed chapter yet: Babou answers 400
    assert info.value.http_status == 400
    assert info.value.hint
    chapter = hook.create_chapter(project.id, name="c")
    first = hook.submit_prompt(project.id, chapter.id, content="one")
    with pytest.raises(BabouConflictError) as conflict:
        hook.submit_prompt(project.id, chapter.id, content="two")
    assert conflict.value.http_status == 409
    forced = hook.submit_prompt(project.id, chapter.id, content="three", force=True)
    assert forced.prompt_id != first.prompt_id
    hook.wait_for_prompt(project.id, chapter.id, forced.prompt_id, poll=FAST_POLL, timeout=10)
    hook.start_export(project.id)
    with pytest.raises(BabouConflictError, match="already in progress"):
        hook.start_export(project.id)


def test_job_failures_and_wait_timeout(hook: BabouHook, emulator: EmulatorControl) -> None:
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    bad = hook.submit_prompt(project.id, chapter.id, content="boom [[emulator:fail]]")
    with pytest.raises(BabouJobFailedError, match="failed"):
        hook.wait_for_prompt(project.id, chapter.id, bad.prompt_id, poll=FAST_POLL, timeout=10)
    with pytest.raises(BabouJobFailedError, match="missing"):
        hook.wait_for_prompt(project.id, chapter.id, "int_nope", poll=FAST_POLL, timeout=10)
    emulator.configure(prompt_seconds=30)
    slow = hook.submit_prompt(project.id, chapter.id, content="slow")
    started = time.monotonic()
    with pytest.raises(BabouWaitTimeoutError, match="still 'processing'"):
        hook.wait_for_prompt(
            project.id, chapter.id, slow.prompt_id, poll=PollPolicy(0.1, 1, 0.1), timeout=0.4
        )
    assert time.monotonic() - started < 3


def test_asset_failure(hook: BabouHook, emulator: EmulatorControl, tmp_path) -> None:
    emulator.fail_next(ALICE, "asset", message="corrupt file")
    image = tmp_path / "a.webp"
    image.write_bytes(b"RIFF0000WEBP" + b"0" * 100)
    asset = hook.upload_asset(image)
    with pytest.raises(BabouJobFailedError, match="ended 'error'"):
        hook.wait_for_asset(asset.id, poll=FAST_POLL, timeout=10)


def test_server_errors_exhaust_retries(babou_conn: str, emulator: EmulatorControl) -> None:
    hook = BabouHook(babou_conn, max_retries=2, max_backoff=0.01)
    emulator.inject_fault("502_html", method="GET", path="/api/v1/projects$", count=5)
    with pytest.raises(BabouServerError) as info:
        hook.list_projects()
    err = info.value
    assert err.http_status == 502
    assert err.message.startswith("502 Bad Gateway (non-JSON body: ")
    assert "<" not in err.message
    assert route_count(emulator, "GET /api/v1/projects") == 3  # 1 + max_retries
    emulator.inject_fault("504_empty", method="GET", path="/api/v1/projects$", count=5)
    with pytest.raises(BabouServerError, match=r"504 Gateway Timeout \(empty body\)"):
        hook.list_projects()


def test_server_errors_stop_at_the_retry_deadline(babou_conn: str, emulator: EmulatorControl) -> None:
    hook = BabouHook(babou_conn, retry_deadline=0.5, max_backoff=0.05)  # no count cap
    emulator.inject_fault("503_html", method="GET", path="/api/v1/projects$", count=1000)
    started = time.monotonic()
    with pytest.raises(BabouServerError):
        hook.list_projects()
    assert time.monotonic() - started < 2
    assert route_count(emulator, "GET /api/v1/projects") > 3  # retried by time, not 3 times


def test_rate_limit_error_carries_retry_after(babou_conn: str, emulator: EmulatorControl) -> None:
    hook = BabouHook(babou_conn, max_retries=1, max_backoff=0.01)
    emulator.inject_fault("429", method="GET", path="/api/v1/projects$", count=2)
    with pytest.raises(BabouRateLimitError) as info:
        hook.list_projects()
    assert info.value.http_status == 429
    assert info.value.retry_after is not None


def test_transport_error_and_unreachable(make_conn: Callable[..., str]) -> None:
    make_conn("babou_dead", host="http://127.0.0.1:9/api/v1")
    hook = BabouHook("babou_dead", max_retries=1, max_backoff=0.01)
    with pytest.raises(BabouTransportError) as info:
        hook.get_project("prj_x")
    assert info.value.http_status is None
    assert info.value.method == "GET"
    ok, message = hook.test_connection()
    assert not ok
    assert message.startswith("Cannot reach http://127.0.0.1:9/api/v1: ConnectError")


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "fault", ["500", "502_html", "503_html", "504_empty", "429", "drop_before", "drop_after"]
)
def test_get_retries_each_fault(hook: BabouHook, emulator: EmulatorControl, fault: str) -> None:
    project = hook.create_project(name="p")
    # seconds=0: a 429 says Retry-After: 0 (the emulator's 1 s would only slow the test down)
    emulator.inject_fault(fault, method="GET", path=r"/api/v1/projects/prj_", count=2, seconds=0)
    assert hook.get_project(project.id).id == project.id
    assert route_count(emulator, PROJECTS) == 3
    assert key_stats(emulator)["faults_injected"][fault] == 2


def test_get_retries_read_timeout(hook: BabouHook, emulator: EmulatorControl) -> None:
    hook._overrides["timeout"] = 0.3  # before the first call: the config is resolved once
    project = hook.create_project(name="p")
    emulator.inject_fault("delay_after", method="GET", path=r"/api/v1/projects/prj_", seconds=1.0)
    assert hook.get_project(project.id).id == project.id
    assert route_count(emulator, PROJECTS) == 2


@pytest.mark.parametrize("fault", ["429", "503_html"])
def test_post_retried_when_surely_not_applied(hook: BabouHook, emulator: EmulatorControl, fault: str) -> None:
    emulator.inject_fault(fault, method="POST", path="/api/v1/projects$", count=2, seconds=0)
    hook.create_project(name="p")
    assert route_count(emulator, CREATE) == 3
    assert key_stats(emulator)["projects_created"] == 1


def test_post_retried_after_connect_error(make_conn: Callable[..., str]) -> None:
    # Nothing listens on port 9: every attempt is refused before sending, so all are retried.
    make_conn("babou_dead", host="http://127.0.0.1:9/api/v1")
    hook = BabouHook("babou_dead", max_retries=2, max_backoff=0.01)
    with pytest.raises(BabouTransportError, match="ConnectError"):
        hook.create_project(name="p")


def test_retry_after_is_honoured_and_capped(
    babou_conn: str, emulator: EmulatorControl, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.inject_fault("429", method="GET", path="/api/v1/projects$", count=1)
    started = time.monotonic()
    BabouHook(babou_conn, max_backoff=5).list_projects()
    assert time.monotonic() - started >= 0.9  # the emulator says Retry-After: 1
    emulator.inject_fault("429", method="GET", path="/api/v1/projects$", count=1)
    with caplog.at_level("WARNING"):
        BabouHook(babou_conn, max_backoff=0.05).list_projects()
    # The retry's own sleep is capped by max_backoff (the key's budget still honours the pause).
    assert [r.getMessage() for r in caplog.records if "retry 1 in" in r.getMessage()][-1].endswith("0.05s")


def test_retries_are_logged_without_headers(
    babou_conn: str, emulator: EmulatorControl, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.inject_fault("503_html", method="GET", path="/api/v1/projects$", count=1)
    with caplog.at_level("WARNING"):
        BabouHook(babou_conn, max_backoff=0.01).list_projects()
    retry_lines = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retry_lines
    assert "GET /projects" in retry_lines[0]
    assert "503" in retry_lines[0]
    assert all(ALICE not in r.getMessage() and "Bearer" not in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- ambiguous POSTs


@pytest.mark.parametrize("fault", ["500", "502_html", "504_empty", "drop_after", "drop_before"])
def test_create_project_ambiguous_failure_is_not_retried(
    hook: BabouHook, emulator: EmulatorControl, fault: str
) -> None:
    emulator.inject_fault(fault, method="POST", path="/api/v1/projects$")
    with pytest.raises(BabouOutcomeUnknownError) as info:
        hook.create_project(name="once")
    assert "unknown" in info.value.message
    assert "'once'" in info.value.message
    assert "list the projects" in (info.value.hint or "")
    assert route_count(emulator, CREATE) == 1


def test_create_chapter_and_asset_outcome_unknown(
    hook: BabouHook, emulator: EmulatorControl, tmp_path
) -> None:
    project = hook.create_project(name="p")
    emulator.inject_fault("drop_after", method="POST", path="/chapters$")
    with pytest.raises(BabouOutcomeUnknownError, match="chapter"):
        hook.create_chapter(project.id, name="c")
    image = tmp_path / "a.gif"
    image.write_bytes(b"GIF89a" + b"0" * 100)
    emulator.inject_fault("500", method="POST", path="/api/v1/assets$")
    with pytest.raises(BabouOutcomeUnknownError, match="asset"):
        hook.upload_asset(image)
    assert route_count(emulator, "POST /api/v1/assets") == 1


@pytest.mark.parametrize("fault", ["drop_after", "delay_after", "500", "502_html", "drop_before"])
def test_submit_prompt_reconciles(hook: BabouHook, emulator: EmulatorControl, fault: str) -> None:
    hook._overrides["timeout"] = 0.5  # before the first call: the config is resolved once
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    emulator.inject_fault(fault, method="POST", path="/prompt$", seconds=1.5)
    receipt = hook.submit_prompt(project.id, chapter.id, content="exactly once")
    prompts = hook.get_chapter(project.id, chapter.id).prompts
    assert [p.id for p in prompts] == [receipt.prompt_id]
    assert key_stats(emulator)["prompts_submitted"] == 1
    # The chapter was read to reconcile; the POST was resent only when it had not taken effect.
    assert route_count(emulator, CHAPTER) == 2
    applied = fault in ("drop_after", "delay_after")
    assert route_count(emulator, PROMPT) == (1 if applied else 2)


@pytest.mark.parametrize("fault", ["drop_after", "delay_after", "504_empty", "drop_before"])
def test_start_export_reconciles(hook: BabouHook, emulator: EmulatorControl, fault: str) -> None:
    hook._overrides["timeout"] = 0.5
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    receipt = hook.submit_prompt(project.id, chapter.id, content="x")
    hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=FAST_POLL, timeout=10)
    emulator.configure(export_queued_seconds=2)
    emulator.inject_fault(fault, method="POST", path="/export$", seconds=1.0)
    started = hook.start_export(project.id)
    assert started.status.value in ("queued", "processing")
    assert key_stats(emulator)["exports_started"] == 1
    # One status read before the POST (the snapshot), one to reconcile after the ambiguous failure.
    assert route_count(emulator, EXPORT_STATUS) == 2
    assert route_count(emulator, EXPORT) == (1 if fault in ("drop_after", "delay_after") else 2)


def _lost_export_answer(emulator: EmulatorControl, fault: str = "drop_after") -> None:
    """The next POST /export takes effect (unless ``fault`` fails it first); its answer is lost."""
    emulator.inject_fault(fault, method="POST", path="/export$", after_bytes=0)


def test_a_lost_answer_to_the_first_export_starts_exactly_one(
    hook: BabouHook, emulator: EmulatorControl
) -> None:
    project = hook.create_project(name="p")
    chapter = hook.create_chapter(project.id, name="c")
    receipt = hook.submit_prompt(project.id, chapter.id, content="x")
    hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=FAST_POLL, timeout=10)
    _lost_export_answer(emulator)
    started = hook.start_export(project.id)
    assert "recovered" in (started.message or "")
    assert key_stats(emulator)["exports_started"] == 1
    assert route_count(emulator, EXPORT) == 1
    assert hook.wait_for_export(project.id, poll=FAST_POLL, timeout=10).status.is_success


def test_a_lost_answer_to_a_re_export_starts_exactly_one(hook: BabouHook, emulator: EmulatorControl) -> None:
    """The documented download_url names the project, so the finished export before and ours look
    alike once done; ours is told by being in flight (queued/processing) when the answer is lost."""
    project_id = completed_export(hook)
    before = hook.get_export(project_id)
    assert key_stats(emulator)["exports_started"] == 1
    _lost_export_answer(emulator)
    started = hook.start_export(project_id)
    assert started.status.value in ("queued", "processing")
    assert "recovered" in (started.message or "")
    assert key_stats(emulator)["exports_started"] == 2  # the earlier one and exactly one new one
    assert route_count(emulator, EXPORT) == 2
    after = hook.wait_for_export(project_id, poll=FAST_POLL, timeout=10)
    # What a client sees of the two finished exports is the same, the URL (less its expiry) too.
    assert after.fingerprint() == before.fingerprint()
    assert (after.download_url or "").split("?")[0] == (before.download_url or "").split("?")[0]


def test_a_re_export_resent_after_a_refused_post_starts_exactly_one(
    hook: BabouHook, emulator: EmulatorControl
) -> None:
    """A 503 surely did not take effect: the POST is sent again, once."""
    project_id = completed_export(hook)
    _lost_export_answer(emulator, "503_html")
    assert hook.start_export(project_id).status.value == "queued"
    assert key_stats(emulator)["exports_started"] == 2
    assert route_count(emulator, EXPORT) == 3


@pytest.mark.parametrize("fault", ["drop_after", "500"])
def test_a_re_export_that_may_have_finished_unseen_is_neither_resent_nor_ours(
    hook: BabouHook, emulator: EmulatorControl, fault: str
) -> None:
    """Instant renders: after the lost answer Babou shows a completed export just like the one from
    before, whether the POST ran (drop_after) or not (500). Resending might bill a second render;
    taking the old video for ours might be a false success: the caller is told instead."""
    project_id = completed_export(hook)
    emulator.configure(export_queued_seconds=0, export_processing_seconds=0)
    _lost_export_answer(emulator, fault)
    with pytest.raises(BabouOutcomeUnknownError, match="same completed export as before") as info:
        hook.start_export(project_id)
    assert "dashboard" in (info.value.hint or "")
    assert route_count(emulator, EXPORT) == 2  # never resent
    assert key_stats(emulator)["exports_started"] == (2 if fault == "drop_after" else 1)
