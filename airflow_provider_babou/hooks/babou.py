"""``BabouHook``: every request goes through :meth:`BabouHook._request`, the triggerer's waits
through :meth:`BabouHook.aobserve` (:mod:`._async`). The modules beside it: ``docs/design.md``."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx
import tenacity
from airflow.sdk import BaseHook

from airflow_provider_babou import budget as _budget
from airflow_provider_babou import connection, endpoints, polling
from airflow_provider_babou._compat import aget_connection, get_connection
from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouError,
    BabouNotFoundError,
    BabouOutcomeUnknownError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
)
from airflow_provider_babou.hooks import _deadline, _download
from airflow_provider_babou.hooks._http import (
    asset_filters,
    client_kwargs,
    error_for_response,
    parse_model,
    parse_page,
    record_answer,
    transport_error,
)
from airflow_provider_babou.hooks._retry import RetryTiming, is_ambiguous, is_retryable
from airflow_provider_babou.models import (
    Asset,
    BabouModel,
    Chapter,
    DownloadResult,
    Export,
    ExportReceipt,
    Page,
    Project,
    Prompt,
    PromptReceipt,
    aware,
)
from airflow_provider_babou.polling import (
    AssetTarget,
    ExportTarget,
    PollPolicy,
    PromptTarget,
    WaitClock,
    WaitState,
    WaitTarget,
)
from airflow_provider_babou.storage import UploadBody, upload_body
from airflow_provider_babou.validation import (
    check_description,
    check_duration,
    check_id,
    check_name,
    check_page,
    check_prompt,
    check_settings,
)

if TYPE_CHECKING:
    from airflow_provider_babou.hooks._async import SharedClient

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BabouModel)

# A prompt created "since the call began" is ours: server timestamps have whole seconds, so allow skew.
RECONCILE_SKEW = timedelta(seconds=2)
#: A list that has not ended after this many pages is a server that ignores ``offset``.
MAX_PAGES = 10_000
_DEFAULT_POLL = PollPolicy()


class BabouHook(RetryTiming, BaseHook):
    """Talk to the Babou text-to-video API (projects, chapters, prompts, exports, assets).

    The connection (type ``babou``, ``docs/connection.md``) is looked up on first use, never in
    ``__init__``; ``timeout``, ``max_retries``, ``max_backoff``, ``retry_deadline`` and ``rate_limit``
    (requests per second on this key from this host) override its extras of those names.
    ``deadline``: the absolute UNIX time no request or retry may
    pass (an operator's own). ``transport``/``async_transport``: ``httpx`` transports for tests.
    """

    conn_name_attr = "babou_conn_id"
    default_conn_name = "babou_default"
    conn_type = "babou"
    hook_name = "Babou"

    def __init__(
        self,
        babou_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_backoff: float | None = None,
        retry_deadline: float | None = None,
        rate_limit: float | None = None,
        deadline: float | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.babou_conn_id = babou_conn_id
        self._overrides: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": max_retries,
            "max_backoff": max_backoff,
            "retry_deadline": retry_deadline,
            "rate_limit": rate_limit,
        }
        self.deadline = deadline
        self._transport = transport
        self._async_transport = async_transport
        self._config: connection.ClientConfig | None = None
        self._client: httpx.Client | None = None
        self._shared: SharedClient | None = None
        # Re-entrant: get_conn resolves the config under it. Threads share a hook (a campaign's
        # pool), and Airflow 3.1's task SDK hangs on two connection lookups at once.
        self._lock = threading.RLock()
        self._window = threading.local()  # the retry window of the call running in this thread

    def __repr__(self) -> str:
        return f"{type(self).__name__}(babou_conn_id={self.babou_conn_id!r})"

    # ------------------------------------------------------------------ connection and client

    @property
    def config(self) -> connection.ClientConfig:
        """The resolved connection (sync lookup; async code uses :meth:`aconfig`)."""
        with self._lock:
            if self._config is None:
                self._config = connection.resolve(self, get_connection)
            return self._config

    async def aconfig(self) -> connection.ClientConfig:
        """The resolved connection, looked up with ``aget_connection`` (safe in the triggerer)."""
        if self._config is None:
            _async = _aio()
            key = (self.babou_conn_id, *self._overrides.values())
            self._config = await _async.shared_config(key, lambda: connection.aresolve(self, aget_connection))
        return self._config

    def get_conn(self) -> httpx.Client:
        """Return the hook's keep-alive ``httpx.Client``, creating it on first use."""
        with self._lock:
            if self._client is None or self._client.is_closed:
                # httpx's own transports (proxies from the environment honoured), each pool bounded.
                kwargs = client_kwargs(self.config)
                if self._transport is not None:
                    kwargs["transport"] = self._transport
                self._client = _deadline.bound(httpx.Client(**kwargs))
            return self._client

    def close(self) -> None:
        """Close the sync client (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Leave the triggerer's shared client (closed when its last wait leaves) and the sync one."""
        shared, self._shared = self._shared, None
        if shared is not None:
            await _aio().release(shared)
        self.close()

    def dashboard_url(self, project_id: str) -> str | None:
        """The project's page in the Babou dashboard (``dashboard_url_template``), if configured."""
        template = self.config.dashboard_url_template
        return template.format(project_id=project_id) if template else None

    # ------------------------------------------------------------------ the one request method

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        body: UploadBody | None = None,
        retry: bool = True,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one API request (the only sync code that does); retries as ``docs/design.md`` says."""
        config, client = self.config, self.get_conn()
        budget = _budget.budget_for(_budget.budget_key(config.base_url, config.api_key), config.rate_limit)
        url = config.base_url + path
        headers = {"Content-Type": "application/json"} if json is not None else {}
        if body is not None:
            headers.update({"Content-Type": body.content_type, "Content-Length": str(body.size)})

        limit = config.timeout if timeout is None else timeout
        per_read: Any = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        with self.retry_window() as give_up:  # a key paused by a 429 is not waited past it

            def attempt() -> httpx.Response:
                start = time.monotonic()
                stop = start + self._left()  # the hook's deadline: the token wait counts against it
                try:  # a call without retries (a wait's poll) spends its own time on the token
                    budget.wait_sync(min(give_up if retry else start + limit, stop))
                except TimeoutError as exc:  # typed, and final: nothing was sent
                    raise BabouRateLimitError(f"not sent: {exc}", method=method, path=path) from None
                content = body.chunks() if body is not None else None
                # The whole exchange is bounded, not each read (an upload only by the hook's deadline).
                own = limit if body is None else math.inf
                end = min(stop, (time.monotonic() if retry else start) + own)
                try:
                    with _deadline.bounded(end):
                        response = client.request(
                            method,
                            url,
                            params=params,
                            json=json,
                            content=content,
                            headers=headers,
                            timeout=per_read,
                        )
                except httpx.TransportError as exc:
                    raise transport_error(exc, method, url, config.api_key) from exc
                record_answer(budget, response, config.max_backoff)
                if response.is_error:
                    raise error_for_response(response, method, config.api_key, longest=config.max_backoff)
                return response

            if not retry:
                return attempt()
            return tenacity.Retrying(
                retry=tenacity.retry_if_exception(
                    lambda exc: is_retryable(method, exc, restartable=body is None or body.restartable)
                ),
                wait=lambda state: self._backoff(state.attempt_number, _error(state)),
                stop=self._stop,
                before_sleep=lambda state: log.warning(
                    "Babou %s %s failed (%s); retry %d in %.2fs",
                    method,
                    path,
                    _error(state),
                    state.attempt_number,
                    state.upcoming_sleep,
                ),
                reraise=True,
            )(attempt)

    def _get(self, model: type[M], path: str, **kwargs: Any) -> M:
        return parse_model(model, self._request("GET", path, **kwargs), self.config.api_key)

    def _create(self, model: type[M], path: str, what: str, check: str, **kwargs: Any) -> M:
        """POST a non-idempotent create; an ambiguous failure is :class:`BabouOutcomeUnknownError`."""
        try:
            return parse_model(model, self._request("POST", path, **kwargs), self.config.api_key)
        except BabouError as exc:
            if not is_ambiguous(exc):
                raise
            raise BabouOutcomeUnknownError.of_create(what, check, exc, path) from exc

    def _reconciled_post(
        self, model: type[M], path: str, recover: Callable[[], M | None], what: str, **kw: Any
    ) -> M:
        """POST; after an ambiguous failure (or a 409 to a resend) ``recover`` rebuilds the receipt from
        what Babou shows, or says ``None`` (not taken effect: sent again, within the retry window)."""
        errors: list[str] = []
        with self.retry_window():
            for attempt in self.attempts():
                try:
                    return parse_model(model, self._request("POST", path, **kw), self.config.api_key)
                except BabouConflictError:  # to a resend: maybe our earlier POST, in flight
                    if attempt == 1 or (found := recover()) is None:
                        raise
                    return found
                except BabouError as exc:
                    if not is_ambiguous(exc):
                        raise
                    errors.append(exc.message)
                    log.warning(
                        "Babou POST %s outcome unknown (%s); checking what Babou shows", path, exc.message
                    )
                if (found := recover()) is not None:
                    return found
        raise BabouOutcomeUnknownError(
            f"{what} failed ambiguously {len(errors)} times and Babou shows no sign of it "
            f"(last: {errors[-1] if errors else 'no attempt'})",
            method="POST",
            path=path,
            hint="check in the Babou dashboard before trying again",
        )

    def _pages(
        self, path: str, key: str, model: type[M], params: dict[str, Any], page_size: int
    ) -> Iterator[M]:
        """Every item of a paginated list; a server that ignores ``offset`` is caught, not followed."""
        seen: set[tuple[str, ...]] = set()
        offset = 0
        for number in itertools.count():
            response = self._request("GET", path, params={**params, "limit": page_size, "offset": offset})
            page: Page[M] = parse_page(model, response, key, self.config.api_key)
            ids = tuple(str(getattr(item, "id", "")) for item in page.items)
            if (ids and ids in seen) or number >= MAX_PAGES:
                raise BabouServerError(
                    f"{path} returned the same page twice or did not end after {number} pages",
                    hint="the server seems to ignore 'offset'; report it to Babou",
                    method="GET",
                    path=path,
                )
            seen.add(ids)
            yield from page.items
            offset += len(page.items)
            total = page.pagination.total if page.pagination else None
            if not page.items or (offset >= total if total is not None else len(ids) < page_size):
                return

    # ------------------------------------------------------------------ projects and chapters

    def create_project(
        self, *, name: str, description: str | None = None, settings: dict[str, Any] | None = None
    ) -> Project:
        """Create a project; an ambiguous failure raises ``BabouOutcomeUnknownError`` (no resend)."""
        body: dict[str, Any] = {"name": check_name("project", name)}
        if check_description(description) is not None:
            body["description"] = description
        if check_settings(settings) is not None:
            body["settings"] = settings
        return self._create(Project, endpoints.PROJECTS, f"project {name!r}", "list the projects", json=body)

    def get_project(self, project_id: str) -> Project:
        """Get a project."""
        return self._get(Project, endpoints.PROJECT.format(project_id=check_id("project", project_id)))

    def list_projects(self, *, limit: int = 20, offset: int = 0) -> Page[Project]:
        """List one page of projects (tolerant of a bare array or a ``data`` list)."""
        check_page(limit, offset)
        response = self._request("GET", endpoints.PROJECTS, params={"limit": limit, "offset": offset})
        return parse_page(Project, response, "projects", self.config.api_key)

    def iter_projects(self, *, page_size: int = 100) -> Iterator[Project]:
        """Yield every project, page after page."""
        check_page(page_size, 0)
        return self._pages(endpoints.PROJECTS, "projects", Project, {}, page_size)

    def find_projects(self, *, name: str) -> list[Project]:
        """Return the projects named exactly ``name``, newest first."""
        found = [p for p in self.iter_projects() if p.name == name]
        return sorted(found, key=lambda p: aware(p.created_at, datetime.min), reverse=True)

    def create_chapter(self, project_id: str, *, name: str, duration: int | None = None) -> Chapter:
        """Create a chapter; an ambiguous failure raises ``BabouOutcomeUnknownError`` (no resend)."""
        pid = check_id("project", project_id)
        body: dict[str, Any] = {"name": check_name("chapter", name)}
        if check_duration(duration) is not None:
            body["duration"] = duration
        path = endpoints.CHAPTERS.format(project_id=pid)
        return self._create(Chapter, path, f"chapter {name!r}", f"list the chapters of {pid}", json=body)

    def get_chapter(self, project_id: str, chapter_id: str) -> Chapter:
        """Get a chapter with its prompts."""
        return self._get(
            Chapter,
            endpoints.CHAPTER.format(
                project_id=check_id("project", project_id), chapter_id=check_id("chapter", chapter_id)
            ),
        )

    def list_chapters(self, project_id: str) -> list[Chapter]:
        """List a project's chapters, in creation order."""
        response = self._request("GET", endpoints.CHAPTERS.format(project_id=check_id("project", project_id)))
        return parse_page(Chapter, response, "chapters", self.config.api_key).items

    # ------------------------------------------------------------------ prompts and exports

    def submit_prompt(
        self, project_id: str, chapter_id: str, *, content: str, force: bool = False
    ) -> PromptReceipt:
        """Submit a prompt; after an ambiguous failure, reconcile from the chapter (never a duplicate)."""
        pid, cid = check_id("project", project_id), check_id("chapter", chapter_id)
        check_prompt(content)
        since = datetime.now(timezone.utc).replace(microsecond=0) - RECONCILE_SKEW

        def recover() -> PromptReceipt | None:
            chapter = self.get_chapter(pid, cid)
            prompt = chapter.rendering_prompt(content, since)  # ours only while it is the latest
            if prompt is None:
                return None
            status, note = chapter.prompt_status(prompt.id), "recovered after an ambiguous failure"
            return PromptReceipt(prompt_id=prompt.id, status=status, message=note)

        path = endpoints.PROMPT.format(project_id=pid, chapter_id=cid)
        json = {"content": content, "force": bool(force)}
        return self._reconciled_post(PromptReceipt, path, recover, "submitting the prompt", json=json)

    def find_prompt_by_content(self, project_id: str, chapter_id: str, *, content: str) -> Prompt | None:
        """Return the latest prompt of the chapter with exactly this content, if any (by id:
        ``get_chapter(...).find_prompt(prompt_id)``)."""
        return self.get_chapter(project_id, chapter_id).latest_prompt(content)

    find_prompt = find_prompt_by_content  # its first name, kept: it finds by content, not by id

    def get_export(self, project_id: str) -> Export:
        """Get the project's export status (404 before any export)."""
        return self.observe(ExportTarget(project_id))

    def find_export(self, project_id: str) -> Export | None:
        """Get the project's export status, or ``None`` before any export."""
        try:
            return self.get_export(project_id)
        except BabouNotFoundError:
            return None

    def start_export(self, project_id: str, *, first: bool = False) -> ExportReceipt:
        """Start rendering; after a lost answer, reconcile as ``docs/design.md`` says (never a duplicate).

        :param first: the caller made the project and never asked for an export: no status read first.
        """
        with self.retry_window():  # the snapshot, the POST and every check share one
            return self._start_export(check_id("project", project_id), first)

    def _start_export(self, pid: str, first: bool) -> ExportReceipt:
        note, before = "recovered after an ambiguous failure", None if first else self.find_export(pid)

        def recover() -> ExportReceipt | None:
            now = self.find_export(pid)
            if now is None:
                return None  # still no export: the POST did not take effect
            if before is None or not before.status.is_terminal or now.fingerprint() != before.fingerprint():
                return ExportReceipt(status=now.status, message=note)
            if self.get_project(pid).active_export_id:
                return ExportReceipt(message=note)  # queued, behind the finished one still shown
            raise BabouOutcomeUnknownError(  # the download_url names the project: no export tells
                f"starting the export of {pid} failed ambiguously and Babou shows the same "
                f"{now.status.value} export as before: whether a new one ran cannot be told",
                hint="check the project's export in the Babou dashboard before starting one again",
            )

        path = endpoints.EXPORT.format(project_id=pid)
        return self._reconciled_post(ExportReceipt, path, recover, "starting the export")

    # ------------------------------------------------------------------ assets

    def upload_asset(self, source: Any, *, content_type: str | None = None) -> Asset:
        """Upload a path, a binary file object (from its current position) or an ``ObjectStoragePath``,
        streamed; ``content_type`` is guessed from the name when omitted. Babou names it ``uploaded-file``."""
        body = upload_body(source, content_type)
        return self._create(Asset, endpoints.ASSETS, "an asset", "list the newest assets", body=body)

    def get_asset(self, asset_id: str) -> Asset:
        """Get an asset."""
        return self.observe(AssetTarget(asset_id))

    def list_assets(
        self, *, limit: int = 20, offset: int = 0, content_type: str | None = None, state: str | None = None
    ) -> Page[Asset]:
        """List one page of assets (``contentType`` and ``state`` filters as the docs name them)."""
        check_page(limit, offset)
        params = {"limit": limit, "offset": offset, **asset_filters(content_type, state)}
        return parse_page(
            Asset, self._request("GET", endpoints.ASSETS, params=params), "assets", self.config.api_key
        )

    def iter_assets(
        self, *, content_type: str | None = None, state: str | None = None, page_size: int = 100
    ) -> Iterator[Asset]:
        """Yield every asset matching the filters, page after page."""
        check_page(page_size, 0)
        return self._pages(endpoints.ASSETS, "assets", Asset, asset_filters(content_type, state), page_size)

    # ------------------------------------------------------------------ download

    def download_export(
        self,
        project_id: str,
        destination: Any,
        *,
        overwrite: bool = False,
        min_speed: float = _download.MIN_SPEED,
        speed_window: float = _download.SPEED_WINDOW,
        export: Export | None = None,
    ) -> DownloadResult:
        """Download the export's MP4 (:func:`._download.download`; bounds and resumes: ``docs/design.md``);
        ``export``: its completed status, when just read (no GET)."""
        pid, bounds = check_id("project", project_id), {"min_speed": min_speed, "speed_window": speed_window}
        return _download.download(self, pid, destination, overwrite=overwrite, export=export, **bounds)

    # ------------------------------------------------------------------ waits

    def observe(self, target: WaitTarget, *, retry: bool = True, timeout: float | None = None) -> Any:
        """Make a wait's one GET and parse it (the chapter, the export or the asset)."""
        return parse_model(
            target.model, self._request("GET", target.path, retry=retry, timeout=timeout), self.config.api_key
        )

    def look(self, target: WaitTarget, clock: WaitClock) -> tuple[Any, WaitState]:
        """One wait step (:func:`.polling.look`): observe without retries (the wait is one) and judge."""
        observe = lambda timeout: self.observe(target, retry=False, timeout=timeout)  # noqa: E731
        return polling.look(observe, target, clock, self.config.timeout)

    def wait(
        self,
        target: WaitTarget,
        *,
        poll: PollPolicy = _DEFAULT_POLL,
        timeout: float,
        max_failures: int = polling.DEFAULT_MAX_FAILURES,
        expected: tuple[float, float] | None = None,
    ) -> Any:
        """Poll ``target`` until done (:func:`~airflow_provider_babou.polling.wait`); return the object."""
        end_time = time.time() + polling.check_seconds("timeout", timeout)
        clock = WaitClock(end_time, poll, max_failures, expected=expected)
        observe = lambda seconds: self.observe(target, retry=False, timeout=seconds)  # noqa: E731
        return polling.wait(observe, target, clock, self.config.timeout)

    def wait_for_prompt(
        self,
        project_id: str,
        chapter_id: str,
        prompt_id: str,
        *,
        poll: PollPolicy = _DEFAULT_POLL,
        timeout: float = 900,
    ) -> Chapter:
        """Poll the chapter until the prompt completes; return the chapter."""
        target = PromptTarget(project_id, chapter_id, prompt_id)
        return cast(Chapter, self.wait(target, poll=poll, timeout=timeout))

    def wait_for_export(
        self, project_id: str, *, poll: PollPolicy = _DEFAULT_POLL, timeout: float = 1800
    ) -> Export:
        """Poll the export status until it completes; return it (with ``download_url``)."""
        return cast(Export, self.wait(ExportTarget(project_id), poll=poll, timeout=timeout))

    def wait_for_asset(
        self, asset_id: str, *, poll: PollPolicy = _DEFAULT_POLL, timeout: float = 600
    ) -> Asset:
        """Poll the asset until it is ready; return it."""
        return cast(Asset, self.wait(AssetTarget(asset_id), poll=poll, timeout=timeout))

    async def aobserve(
        self, target: WaitTarget, *, due: float, timeout: float, limit: float | None = None
    ) -> Any:
        """The triggerer's one GET for a wait, over the client and budget every wait on the key shares:
        ``due`` (monotonic) orders the waiters, ``timeout`` bounds the GET, ``limit`` (default ``timeout``)
        the whole call, the wait for a token included."""
        _async = _aio()
        if self._shared is None:
            self._shared = await _async.acquire(await self.aconfig(), self._async_transport)
        return await _async.get(self._shared, target, due=due, timeout=timeout, limit=limit)

    def test_connection(self) -> tuple[bool, str]:
        """One authenticated GET (no retries); the message names no connection id (the UI tests a
        copy of the connection saved under a random id)."""
        try:
            self._config = connection.resolve(self, get_connection, name_conn=False)
            self._request("GET", endpoints.PROJECTS, params={"limit": 1}, retry=False)
        except BabouTransportError as exc:
            return False, f"Cannot reach {self.config.base_url}: {exc.sentence()}"
        except BabouError as exc:
            return False, exc.sentence() if exc.http_status is None else f"Babou answered: {exc.sentence()}"
        return True, f"Connected to Babou at {self.config.base_url}"


def _aio() -> ModuleType:
    """:mod:`._async`, imported on first use: aiohttp is the triggerer's alone, and importing it costs
    every DAG parse and task start about 0.1 CPU-s."""
    from airflow_provider_babou.hooks import _async

    return _async


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


__all__ = ["BabouHook"]
