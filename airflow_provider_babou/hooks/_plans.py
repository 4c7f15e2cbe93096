"""Every endpoint as a *plan*, written once for the sync and the async driver.

A plan is a generator that yields instructions (:mod:`~airflow_provider_babou.hooks._instructions`)
and receives their results; the hook runs it with ``httpx.Client`` and ``time.sleep`` or with
``httpx.AsyncClient`` and ``asyncio.sleep``. Only those drivers differ, so sync and async
behaviour, including reconciliation after an ambiguous POST, the blocking waits and the resumable
download, cannot drift apart. Arguments are checked here, before the first request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import httpx

from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouConflictError,
    BabouDownloadExpiredError,
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouNotFoundError,
    BabouOutcomeUnknownError,
    BabouTransportError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.hooks._errors import RETRYABLE_STATUSES, is_ambiguous
from airflow_provider_babou.hooks._instructions import Blocking, Call, Plan, Sleep, Stream
from airflow_provider_babou.hooks._responses import next_offset, parse_model, parse_page
from airflow_provider_babou.hooks._transfer import (
    DownloadState,
    StreamOutcome,
    finish_download,
    prepare_destination,
    temp_beside,
    upload_body,
)
from airflow_provider_babou.models import (
    Asset,
    BabouModel,
    Chapter,
    DownloadResult,
    Export,
    ExportReceipt,
    ExportStatus,
    Page,
    Project,
    Prompt,
    PromptReceipt,
    PromptStatus,
)
from airflow_provider_babou.polling import PollPolicy, WaitState, asset_state, export_state, prompt_state
from airflow_provider_babou.validation import (
    check_description,
    check_duration,
    check_id,
    check_name,
    check_prompt,
)

log = logging.getLogger("airflow_provider_babou.hooks.babou")

# Seconds of clock skew tolerated when matching a prompt created "since the call began":
# the API's timestamps have whole seconds and come from the server's clock.
RECONCILE_SKEW = timedelta(seconds=2)

M = TypeVar("M", bound=BabouModel)


# --------------------------------------------------------------------------- input checks


def path_id(kind: str, value: Any) -> str:
    """Check a ``kind`` id (:func:`~airflow_provider_babou.validation.check_id`) before it goes
    into a URL path, where a ``%`` would also start an escape: ids never contain one."""
    check_id(kind, value)
    if "%" in value:
        raise BabouInputError(
            f"{kind} id {value!r} contains '%'",
            hint=f"pass the bare {kind} id, not a URL-encoded one",
        )
    return value


def _limit(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise BabouInputError(f"limit must be an integer from 1 to 100, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise BabouInputError(f"offset must be a non-negative integer, got {offset!r}")


# --------------------------------------------------------------------------- plans


def _get(path: str, params: dict[str, Any] | None = None, retry: str = "auto") -> Call:
    return Call("GET", path, params=params, retry=retry)


def _post(path: str, body: Any = None) -> Call:
    if body is None:
        # Start Export has no body and no Content-Type per the docs.
        return Call("POST", path)
    return Call("POST", path, json=body, headers={"Content-Type": "application/json"})


def get_model(model: type[M], path: str) -> Plan[M]:
    """GET ``path`` and parse it as ``model``."""
    response = yield _get(path)
    return parse_model(model, response, "GET")


def create_plan(model: type[M], call: Call, what: str, check: str) -> Plan[M]:
    """POST a non-idempotent create; an ambiguous failure becomes :class:`BabouOutcomeUnknownError`."""
    try:
        response = yield call
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        raise BabouOutcomeUnknownError(
            f"the outcome of creating {what} is unknown: {exc.message}; it may or may not exist now",
            http_status=exc.http_status,
            code=exc.code,
            hint=f"{check} before trying again, so as not to create a duplicate",
            method=call.method,
            path=call.path,
        ) from exc
    return parse_model(model, response, "POST")


def create_project(name: str, description: str | None, settings: dict[str, Any] | None) -> Plan[Project]:
    """Plan of ``POST /projects``."""
    body: dict[str, Any] = {"name": check_name("project", name)}
    if description is not None:
        body["description"] = check_description(description)
    if settings is not None:
        body["settings"] = settings
    return create_plan(
        Project, _post("/projects", body), f"project {name!r}", f"list projects named {name!r}"
    )


def get_project(project_id: str) -> Plan[Project]:
    """Plan of ``GET /projects/{id}``."""
    return get_model(Project, f"/projects/{path_id('project', project_id)}")


def list_projects(limit: int, offset: int) -> Plan[Page[Project]]:
    """Plan of ``GET /projects``."""
    _limit(limit, offset)
    response = yield _get("/projects", {"limit": limit, "offset": offset})
    return parse_page(Project, response, "GET", "projects")


def create_chapter(project_id: str, name: str, duration: int | None) -> Plan[Chapter]:
    """Plan of ``POST /projects/{id}/chapters``."""
    pid = path_id("project", project_id)
    body: dict[str, Any] = {"name": check_name("chapter", name)}
    if check_duration(duration) is not None:
        body["duration"] = duration
    return create_plan(
        Chapter,
        _post(f"/projects/{pid}/chapters", body),
        f"chapter {name!r} in project {pid}",
        f"list the chapters of project {pid}",
    )


def list_chapters(project_id: str) -> Plan[list[Chapter]]:
    """Plan of ``GET /projects/{id}/chapters``."""
    response = yield _get(f"/projects/{path_id('project', project_id)}/chapters")
    return parse_page(Chapter, response, "GET", "chapters").items


def get_chapter(project_id: str, chapter_id: str) -> Plan[Chapter]:
    """Plan of ``GET /projects/{id}/chapters/{id}``."""
    return get_model(
        Chapter, f"/projects/{path_id('project', project_id)}/chapters/{path_id('chapter', chapter_id)}"
    )


def latest_prompt(chapter: Chapter, content: str, since: datetime | None = None) -> Prompt | None:
    """The newest prompt of ``chapter`` with exactly ``content`` (created at/after ``since``)."""
    found = None
    for prompt in chapter.prompts:
        if prompt.content != content:
            continue
        if since is not None and prompt.created_at is not None:
            created = prompt.created_at
            if created.tzinfo is None:
                created = created.replace(tzinfo=timezone.utc)
            if created < since:
                continue
        found = prompt
    return found


def find_prompt(project_id: str, chapter_id: str, content: str) -> Plan[Prompt | None]:
    """Plan of :meth:`BabouHook.find_prompt`."""
    chapter = yield from get_chapter(project_id, chapter_id)
    return latest_prompt(chapter, content)


def _recovered_prompt(prompt: Prompt) -> PromptReceipt:
    status = prompt.status if prompt.status not in (None, PromptStatus.UNKNOWN) else PromptStatus.PROCESSING
    return PromptReceipt(
        prompt_id=prompt.id,
        status=status,
        message="Prompt submission recovered from the chapter after an ambiguous failure",
    )


def reconciled_post(
    model: type[M],
    call: Call,
    recover: Callable[[], Plan[M | None]],
    *,
    checking: str,
    what: str,
    hint: str,
) -> Plan[M]:
    """POST ``call``; after an ambiguous failure, ask ``recover`` whether it took effect.

    ``recover`` is a plan returning the receipt rebuilt from what the server now shows, or
    ``None`` when the POST surely did not take effect: then it is sent once more, and a 409 to
    that resend means ours landed after all, so ``recover`` is asked again. Two ambiguous
    failures raise :class:`BabouOutcomeUnknownError`.
    """
    try:
        response = yield call
        return parse_model(model, response, "POST")
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        log.warning("Babou POST %s outcome unknown (%s); checking the %s", call.path, exc.message, checking)
        first_error = exc
    recovered = yield from recover()
    if recovered is not None:
        return recovered
    try:
        response = yield call
        return parse_model(model, response, "POST")
    except BabouConflictError:
        recovered = yield from recover()
        if recovered is not None:
            return recovered
        raise
    except BabouError as exc:
        if not is_ambiguous(exc):
            raise
        raise BabouOutcomeUnknownError(
            f"{what} failed twice ambiguously ({first_error.message}; {exc.message})",
            method="POST",
            path=call.path,
            hint=hint,
        ) from exc


def submit_prompt(project_id: str, chapter_id: str, content: str, force: bool) -> Plan[PromptReceipt]:
    """Plan of ``POST .../prompt`` with reconciliation after an ambiguous failure.

    If the POST may have taken effect, the chapter is read: a prompt with exactly this content,
    created since the call began, is ours. If there is none the POST surely failed, and it is
    sent once more; a 409 to that resend means ours landed after all, so the chapter is read again.
    """
    pid, cid = path_id("project", project_id), path_id("chapter", chapter_id)
    check_prompt(content)
    call = _post(f"/projects/{pid}/chapters/{cid}/prompt", {"content": content, "force": bool(force)})
    # Server timestamps have whole seconds: floor our start and allow a little clock skew.
    since = datetime.now(timezone.utc).replace(microsecond=0) - RECONCILE_SKEW

    def recover() -> Plan[PromptReceipt | None]:
        chapter = yield from get_chapter(pid, cid)
        prompt = latest_prompt(chapter, content, since)
        return _recovered_prompt(prompt) if prompt is not None else None

    return (
        yield from reconciled_post(
            PromptReceipt,
            call,
            recover,
            checking="chapter",
            what="submitting the prompt",
            hint=f"call find_prompt() on chapter {cid} before submitting again",
        )
    )


def get_export(project_id: str) -> Plan[Export]:
    """Plan of ``GET /projects/{id}/export``."""
    return get_model(Export, f"/projects/{path_id('project', project_id)}/export")


def start_export(project_id: str) -> Plan[ExportReceipt]:
    """Plan of ``POST /projects/{id}/export`` with reconciliation from the export status.

    After an ambiguous failure, an export ``queued``/``processing`` is taken as ours (only one can
    be in flight per project); 404 or a finished earlier export means ours did not start, so the
    POST is sent once more.
    """
    pid = path_id("project", project_id)
    return (
        yield from reconciled_post(
            ExportReceipt,
            _post(f"/projects/{pid}/export"),
            lambda: _export_in_flight(pid),
            checking="export",
            what="starting the export",
            hint=f"call get_export({pid!r}) before starting another export",
        )
    )


def _export_in_flight(project_id: str) -> Plan[ExportReceipt | None]:
    try:
        export = yield from get_export(project_id)
    except BabouNotFoundError:
        return None
    if export.status in (ExportStatus.QUEUED, ExportStatus.PROCESSING):
        return ExportReceipt(
            status=export.status,
            message="Export start recovered from the export status after an ambiguous failure",
        )
    return None


def upload_asset(source: Any, content_type: str | None) -> Plan[Asset]:
    """Plan of ``POST /assets``: the raw file streamed with its exact type and length."""
    body, ctype = upload_body(source, content_type)
    call = Call("POST", "/assets", body=body, headers={"Content-Type": ctype})
    return create_plan(Asset, call, "an asset", "list assets (newest first) and compare sizes")


def get_asset(asset_id: str) -> Plan[Asset]:
    """Plan of ``GET /assets/{id}``."""
    return get_model(Asset, f"/assets/{path_id('asset', asset_id)}")


def list_assets(limit: int, offset: int, content_type: str | None, state: str | None) -> Plan[Page[Asset]]:
    """Plan of ``GET /assets`` (note the camelCase ``contentType`` query parameter)."""
    _limit(limit, offset)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if content_type is not None:
        params["contentType"] = content_type
    if state is not None:
        params["state"] = getattr(state, "value", state)
    response = yield _get("/assets", params)
    return parse_page(Asset, response, "GET", "assets")


def find_projects(name: str, page_size: int = 100) -> Plan[list[Project]]:
    """Plan of :meth:`BabouHook.find_projects`: every page, filtered by exact name, newest first."""
    found: list[Project] = []
    offset: int | None = 0
    while offset is not None:
        page = yield from list_projects(page_size, offset)
        found.extend(p for p in page.items if p.name == name)
        offset = next_offset(page, offset, page_size)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found, key=lambda p: _aware(p.created_at) or epoch, reverse=True)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def wait_plan(
    fetch: Callable[[], Plan[Any]],
    judge: Callable[[Any], WaitState],
    *,
    what: str,
    poll: PollPolicy,
    timeout: float,
) -> Plan[Any]:
    """Poll ``fetch`` until ``judge`` says done; raise on failure or past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delays = poll.delays()
    while True:
        obj = yield from fetch()
        state = judge(obj)
        if state.done:
            if state.succeeded:
                return obj
            raise BabouJobFailedError(state.failure(what), code=state.state.upper())
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BabouWaitTimeoutError(
                f"{what} is still {state.state} after {timeout:g} s",
                hint="wait longer, or check it in the Babou dashboard",
            )
        yield Sleep(min(next(delays), remaining))


def wait_for_prompt(
    project_id: str, chapter_id: str, prompt_id: str, poll: PollPolicy, timeout: float
) -> Plan[Chapter]:
    """Plan of :meth:`BabouHook.wait_for_prompt`: poll the chapter until the prompt is done."""
    return wait_plan(
        lambda: get_chapter(project_id, chapter_id),
        lambda chapter: prompt_state(chapter, prompt_id),
        what=f"prompt {prompt_id} of chapter {chapter_id}",
        poll=poll,
        timeout=timeout,
    )


def wait_for_export(project_id: str, poll: PollPolicy, timeout: float) -> Plan[Export]:
    """Plan of :meth:`BabouHook.wait_for_export`: poll the export status until it is done."""
    return wait_plan(
        lambda: get_export(project_id),
        export_state,
        what=f"export of project {project_id}",
        poll=poll,
        timeout=timeout,
    )


def wait_for_asset(asset_id: str, poll: PollPolicy, timeout: float) -> Plan[Asset]:
    """Plan of :meth:`BabouHook.wait_for_asset`: poll the asset until it is done."""
    return wait_plan(
        lambda: get_asset(asset_id),
        asset_state,
        what=f"asset {asset_id}",
        poll=poll,
        timeout=timeout,
    )


def test_connection_plan(base_url: str) -> Plan[tuple[bool, str]]:
    """One cheap authenticated GET, turned into a (success, explanation) pair."""
    try:
        yield _get("/projects", {"limit": 1}, retry="never")
    except BabouAuthError as exc:
        reason = {
            "INVALID_API_KEY_FORMAT": "Babou says the API key format is invalid",
            "API_KEY_EXPIRED": "the API key has expired",
        }.get(exc.code or "", "Babou rejected the API key (unknown or revoked)")
        return False, f"{reason}: {exc.hint}"
    except BabouTransportError as exc:
        return False, f"cannot reach {base_url}: {exc.message} ({exc.hint})"
    except BabouError as exc:
        return False, f"{base_url} answered with an error: {exc}"
    return True, f"Connected to Babou at {base_url}"


# --------------------------------------------------------------------------- downloads


def download_export(
    project_id: str, destination: Any, overwrite: bool, max_resumes: int
) -> Plan[DownloadResult]:
    """Plan of :meth:`BabouHook.download_export`.

    Streams into a temporary file beside the destination, resumes with ``Range`` after a drop
    (up to ``max_resumes`` times), refetches the export status once when the URL has expired
    (403), verifies the length and renames atomically.
    """
    pid = path_id("project", project_id)
    local, remote = prepare_destination(destination, overwrite)
    export = yield from get_export(pid)
    if export.status is not ExportStatus.COMPLETED or not export.download_url:
        raise BabouInputError(
            f"the export of project {pid} is {export.status.value}, not completed: nothing to download",
            hint="wait_for_export() first",
        )
    url = export.download_url
    state = DownloadState(temp_beside(local))
    yield Blocking(state.open)
    refreshed = False
    resumes = 0
    try:
        while True:
            outcome: StreamOutcome = yield Stream(url, state)
            if outcome.complete:
                break
            if outcome.status == 403 and not refreshed:
                refreshed = True
                log.warning("Babou download URL of project %s expired; fetching a fresh one", pid)
                export = yield from get_export(pid)
                if export.download_url:
                    url = export.download_url
                continue
            if outcome.status == 403:
                raise BabouDownloadExpiredError(
                    "the export's download URL has expired (403), even after fetching a fresh one",
                    http_status=403,
                    method="GET",
                    path=httpx.URL(url).path,
                    hint=f"fetch the export status again (get_export({pid!r})) for a new download_url",
                )
            error = outcome.error
            transient = isinstance(error, BabouTransportError) or (
                error is not None and error.http_status in RETRYABLE_STATUSES
            )
            if transient and resumes < max_resumes:
                assert error is not None
                resumes += 1
                log.warning(
                    "Babou download of project %s interrupted at %d bytes (%s); resuming (%d/%d)",
                    pid,
                    state.offset,
                    error.message,
                    resumes,
                    max_resumes,
                )
                yield Sleep(min(0.5 * resumes, 5.0))
                continue
            assert error is not None
            raise error
        yield Blocking(lambda: finish_download(state, local, remote))
    except GeneratorExit:
        # The driver gave up on the plan (a non-Babou error or cancellation): clean up in place.
        state.discard()
        raise
    except BaseException:
        yield Blocking(state.discard)
        raise
    return DownloadResult(
        path=str(destination), size=state.offset, sha256=state.sha256.hexdigest(), project_id=pid
    )
