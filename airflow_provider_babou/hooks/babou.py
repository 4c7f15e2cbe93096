"""``BabouHook``: the one piece of the provider that speaks HTTP to Babou, sync and async.

Request building, response parsing, error mapping, retries and reconciliation live once in the
private modules beside this one (every endpoint as a *plan* in :mod:`._plans`; connection in
:mod:`._config`; errors in :mod:`._errors`; retries in :mod:`._retry`; bodies in
:mod:`._responses`; files in :mod:`._transfer`); this module only runs the plans over an
``httpx.Client`` (sync) or an ``httpx.AsyncClient`` (async). See ``docs/design.md`` for the
public contract.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx
import tenacity
from airflow.sdk import BaseHook

from airflow_provider_babou import __version__
from airflow_provider_babou._compat import (
    AirflowNotFoundException,
    aget_connection,
    get_connection,
    mask_secret,
)
from airflow_provider_babou.exceptions import BabouError, BabouInputError
from airflow_provider_babou.hooks import (
    _config,
    _errors,
    _instructions,
    _plans,
    _responses,
    _retry,
    _transfer,
)
from airflow_provider_babou.hooks._config import ClientConfig
from airflow_provider_babou.hooks._instructions import Blocking, Call, Plan, Sleep, Stream
from airflow_provider_babou.hooks._transfer import StreamOutcome
from airflow_provider_babou.models import (
    Asset,
    Chapter,
    DownloadResult,
    Export,
    ExportReceipt,
    Page,
    Project,
    Prompt,
    PromptReceipt,
)
from airflow_provider_babou.polling import PollPolicy

T = TypeVar("T")

_DEFAULT_POLL = PollPolicy()


def _user_agent() -> str:
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        airflow_version = "unknown"
    return f"airflow-provider-babou/{__version__} apache-airflow/{airflow_version} httpx/{httpx.__version__}"


class BabouHook(BaseHook):
    """Talk to the Babou text-to-video API (projects, chapters, prompts, exports, assets).

    Connection (type ``babou``): the password is the API key (when empty, the environment
    variable ``BABOU_API_KEY`` is used; the connection wins when both are set); the host is the
    base URL (default ``https://api.babou.ai/api/v1``), either a full URL or URI-form
    host/port/schema pieces; extras ``timeout``, ``max_retries``, ``max_backoff`` and
    ``dashboard_url_template``. Plain ``http`` is accepted only for loopback hosts.

    Every method has an async twin with an ``a`` prefix and the same arguments. Nothing is
    looked up or opened in ``__init__``; one keep-alive ``httpx.Client`` is created on first
    use, and one ``httpx.AsyncClient`` per running event loop.

    :param babou_conn_id: the Airflow connection id.
    :param timeout: seconds per HTTP request; overrides the connection's ``timeout`` extra.
    :param max_retries: retries after a transient failure; overrides ``max_retries``.
    :param max_backoff: longest wait between two attempts, ``Retry-After`` included.
    :param retry_deadline: longest time, in seconds, spent retrying one request (default 300).
    :param transport: an ``httpx`` transport for the sync client (for tests, e.g.
        ``httpx.MockTransport``).
    :param async_transport: an ``httpx`` async transport for the async clients (for tests).
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
        }
        self._transport = transport
        self._async_transport = async_transport
        self._config_cache: ClientConfig | None = None
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(babou_conn_id={self.babou_conn_id!r})"

    # ------------------------------------------------------------------ configuration

    def _make_config(self, conn: Any) -> ClientConfig:
        if conn.password:
            # Register before anything can fail, so even a malformed key is masked in logs.
            mask_secret(conn.password)
        config = _config.resolve_config(conn, conn_id=self.babou_conn_id, **self._overrides)
        mask_secret(config.api_key)
        return config

    def _not_found(self, exc: Exception) -> BabouInputError:
        return BabouInputError(
            f"Babou connection {self.babou_conn_id!r} is not defined",
            hint="create a connection of type 'babou' (API Key = sk-bab-...), e.g. the env var "
            f"AIRFLOW_CONN_{self.babou_conn_id.upper()}",
        )

    @property
    def config(self) -> ClientConfig:
        """The resolved connection (sync lookup; async code uses :meth:`aconfig`)."""
        if self._config_cache is None:
            try:
                # Through _compat: a missing connection is AirflowNotFoundException on 3.1 too.
                conn = get_connection(self, self.babou_conn_id)
            except AirflowNotFoundException as exc:
                raise self._not_found(exc) from None
            self._config_cache = self._make_config(conn)
        return self._config_cache

    async def aconfig(self) -> ClientConfig:
        """The resolved connection, looked up with ``aget_connection`` (safe in the triggerer)."""
        if self._config_cache is None:
            try:
                # Through _compat: on Airflow 3.1 ``aget_connection`` only works under a
                # supervisor (task runner, triggerer); elsewhere it falls back to a sync lookup
                # in a worker thread.
                conn = await aget_connection(self, self.babou_conn_id)
            except AirflowNotFoundException as exc:
                raise self._not_found(exc) from None
            self._config_cache = self._make_config(conn)
        return self._config_cache

    def _client_kwargs(self, config: ClientConfig) -> dict[str, Any]:
        return {
            "timeout": httpx.Timeout(config.timeout),
            "headers": {"User-Agent": _user_agent()},
            "auth": _config.BearerAuth(config.api_key, config.api_origin),
            "follow_redirects": False,
        }

    def _policy(self, config: ClientConfig) -> _retry.RetryPolicy:
        return _retry.RetryPolicy(config.max_retries, config.max_backoff, config.retry_deadline)

    # ------------------------------------------------------------------ sync transport

    def get_conn(self) -> httpx.Client:
        """Return the hook's keep-alive ``httpx.Client``, creating it on first use."""
        with self._lock:
            if self._client is None or self._client.is_closed:
                config = self.config
                self._client = httpx.Client(transport=self._transport, **self._client_kwargs(config))
            return self._client

    def _url(self, config: ClientConfig, call: Call) -> str:
        return call.url or config.base_url + call.path

    def _send_once(self, client: httpx.Client, config: ClientConfig, call: Call) -> httpx.Response:
        content = call.body.chunks() if call.body is not None else None
        request = client.build_request(
            call.method,
            self._url(config, call),
            params=call.params,
            json=call.json,
            content=content,
            headers=_instructions.request_headers(call),
        )
        try:
            response = client.send(request)
        except httpx.TransportError as exc:
            raise _errors.transport_error(exc, call.method, request.url) from exc
        if response.is_error:
            raise _errors.error_for_response(response, call.method, config.api_key)
        return response

    def _request(self, call: Call) -> httpx.Response:
        """Send one API call, retrying per the policy; the only sync code that sends requests."""
        config = self.config
        client = self.get_conn()
        retrying = tenacity.Retrying(**self._policy(config).tenacity_kwargs(call))
        return retrying(self._send_once, client, config, call)

    def _stream(self, instruction: Stream) -> StreamOutcome:
        config = self.config
        client = self.get_conn()
        state = instruction.state
        request = client.build_request("GET", instruction.url, headers=_transfer.range_headers(state))
        try:
            response = client.send(request, stream=True)
        except httpx.TransportError as exc:
            return StreamOutcome(0, False, _errors.transport_error(exc, "GET", request.url))
        try:
            early = _transfer.begin_stream(response, state)
            if early is not None:
                if early.error is None and not early.complete and early.status != 403:
                    response.read()
                    early.error = _errors.error_for_response(response, "GET", config.api_key)
                return early
            try:
                for chunk in response.iter_raw(_transfer.CHUNK_SIZE):
                    state.write(chunk)
            except httpx.TransportError as exc:
                return StreamOutcome(
                    response.status_code, False, _errors.transport_error(exc, "GET", request.url)
                )
            return _transfer.end_stream(response.status_code, state, "GET", instruction.url)
        finally:
            response.close()

    def _run(self, plan: Plan[T]) -> T:
        """Drive a plan synchronously: send its calls, sleep its sleeps, feed back results."""
        try:
            instruction = next(plan)
            while True:
                try:
                    if isinstance(instruction, Call):
                        result: Any = self._request(instruction)
                    elif isinstance(instruction, Sleep):
                        time.sleep(instruction.seconds)
                        result = None
                    elif isinstance(instruction, Blocking):
                        result = instruction.func()
                    elif isinstance(instruction, Stream):
                        result = self._stream(instruction)
                    else:  # pragma: no cover - a programming error in a plan
                        raise TypeError(f"unknown plan instruction {instruction!r}")
                except BabouError as exc:
                    instruction = plan.throw(exc)
                else:
                    instruction = plan.send(result)
        except StopIteration as stop:
            return stop.value
        finally:
            # Lets a plan abandoned by an unexpected error or a cancellation clean up its files.
            plan.close()

    # ------------------------------------------------------------------ async transport

    async def aget_conn(self) -> httpx.AsyncClient:
        """Return the ``httpx.AsyncClient`` of the running event loop, creating it on first use.

        Clients are keyed by loop because a client's connections belong to the loop that opened
        them: the triggerer has one long-lived loop, tests one loop each.
        """
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None or client.is_closed:
            config = await self.aconfig()
            client = httpx.AsyncClient(transport=self._async_transport, **self._client_kwargs(config))
            self._async_clients[loop] = client
        return client

    async def _asend_once(
        self, client: httpx.AsyncClient, config: ClientConfig, call: Call
    ) -> httpx.Response:
        content = _achunks(call.body) if call.body is not None else None
        request = client.build_request(
            call.method,
            self._url(config, call),
            params=call.params,
            json=call.json,
            content=content,
            headers=_instructions.request_headers(call),
        )
        try:
            response = await client.send(request)
        except httpx.TransportError as exc:
            raise _errors.transport_error(exc, call.method, request.url) from exc
        if response.is_error:
            raise _errors.error_for_response(response, call.method, config.api_key)
        return response

    async def _arequest(self, call: Call) -> httpx.Response:
        """Send one API call, retrying per the policy; the only async code that sends requests."""
        config = await self.aconfig()
        client = await self.aget_conn()
        retrying = tenacity.AsyncRetrying(**self._policy(config).tenacity_kwargs(call))
        return await retrying(self._asend_once, client, config, call)

    async def _astream(self, instruction: Stream) -> StreamOutcome:
        config = await self.aconfig()
        client = await self.aget_conn()
        state = instruction.state
        request = client.build_request("GET", instruction.url, headers=_transfer.range_headers(state))
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            return StreamOutcome(0, False, _errors.transport_error(exc, "GET", request.url))
        try:
            early = _transfer.begin_stream(response, state)
            if early is not None:
                if early.error is None and not early.complete and early.status != 403:
                    await response.aread()
                    early.error = _errors.error_for_response(response, "GET", config.api_key)
                return early
            try:
                async for chunk in response.aiter_raw(_transfer.CHUNK_SIZE):
                    # Disk writes leave the loop free for other triggers/tasks.
                    await asyncio.to_thread(state.write, chunk)
            except httpx.TransportError as exc:
                return StreamOutcome(
                    response.status_code, False, _errors.transport_error(exc, "GET", request.url)
                )
            return _transfer.end_stream(response.status_code, state, "GET", instruction.url)
        finally:
            await response.aclose()

    async def _arun(self, plan: Plan[T]) -> T:
        """Drive a plan asynchronously; the twin of :meth:`_run`."""
        try:
            instruction = next(plan)
            while True:
                try:
                    if isinstance(instruction, Call):
                        result: Any = await self._arequest(instruction)
                    elif isinstance(instruction, Sleep):
                        await asyncio.sleep(instruction.seconds)
                        result = None
                    elif isinstance(instruction, Blocking):
                        result = await asyncio.to_thread(instruction.func)
                    elif isinstance(instruction, Stream):
                        result = await self._astream(instruction)
                    else:  # pragma: no cover - a programming error in a plan
                        raise TypeError(f"unknown plan instruction {instruction!r}")
                except BabouError as exc:
                    instruction = plan.throw(exc)
                else:
                    instruction = plan.send(result)
        except StopIteration as stop:
            return stop.value
        finally:
            # Lets a plan abandoned by an unexpected error or a cancellation clean up its files.
            plan.close()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the sync client (the hook opens a new one if used again)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def aclose(self) -> None:
        """Close the async client of the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def __enter__(self) -> BabouHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> BabouHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ connection helpers

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap authenticated GET (``/projects?limit=1``) and say what is wrong, if anything."""
        try:
            config = self.config
        except BabouError as exc:
            return False, str(exc)
        return self._run(_plans.test_connection_plan(config.base_url))

    async def atest_connection(self) -> tuple[bool, str]:
        """Async :meth:`test_connection`."""
        try:
            config = await self.aconfig()
        except BabouError as exc:
            return False, str(exc)
        return await self._arun(_plans.test_connection_plan(config.base_url))

    def dashboard_url(self, project_id: str) -> str | None:
        """Link to the project in the Babou dashboard, from the connection's template (or ``None``)."""
        template = self.config.dashboard_url_template
        return template.format(project_id=project_id) if template else None

    async def adashboard_url(self, project_id: str) -> str | None:
        """Async :meth:`dashboard_url`."""
        template = (await self.aconfig()).dashboard_url_template
        return template.format(project_id=project_id) if template else None

    # ------------------------------------------------------------------ projects

    def create_project(
        self, *, name: str, description: str | None = None, settings: dict[str, Any] | None = None
    ) -> Project:
        """Create a project; an ambiguous failure raises ``BabouOutcomeUnknownError`` (no retry).

        :param name: 1-30 characters.
        :param description: up to 1000 characters.
        :param settings: reserved by Babou for future use.
        """
        return self._run(_plans.create_project(name, description, settings))

    async def acreate_project(
        self, *, name: str, description: str | None = None, settings: dict[str, Any] | None = None
    ) -> Project:
        """Async :meth:`create_project`."""
        return await self._arun(_plans.create_project(name, description, settings))

    def get_project(self, project_id: str) -> Project:
        """Get a project.

        :param project_id: the project id.
        """
        return self._run(_plans.get_project(project_id))

    async def aget_project(self, project_id: str) -> Project:
        """Async :meth:`get_project`."""
        return await self._arun(_plans.get_project(project_id))

    def list_projects(self, *, limit: int = 20, offset: int = 0) -> Page[Project]:
        """List one page of projects (tolerant of a bare array or a ``data`` list).

        :param limit: page size, 1-100.
        :param offset: projects to skip.
        """
        return self._run(_plans.list_projects(limit, offset))

    async def alist_projects(self, *, limit: int = 20, offset: int = 0) -> Page[Project]:
        """Async :meth:`list_projects`."""
        return await self._arun(_plans.list_projects(limit, offset))

    def iter_projects(self, *, page_size: int = 100) -> Iterator[Project]:
        """Yield every project, page after page.

        :param page_size: projects per request, 1-100.
        """
        offset: int | None = 0
        while offset is not None:
            page = self.list_projects(limit=page_size, offset=offset)
            yield from page.items
            offset = _responses.next_offset(page, offset, page_size)

    async def aiter_projects(self, *, page_size: int = 100) -> AsyncIterator[Project]:
        """Async :meth:`iter_projects`."""
        offset: int | None = 0
        while offset is not None:
            page = await self.alist_projects(limit=page_size, offset=offset)
            for project in page.items:
                yield project
            offset = _responses.next_offset(page, offset, page_size)

    def find_projects(self, *, name: str) -> list[Project]:
        """Return the projects named exactly ``name``, newest first (to reuse one by name).

        :param name: the exact project name.
        """
        return self._run(_plans.find_projects(name))

    async def afind_projects(self, *, name: str) -> list[Project]:
        """Async :meth:`find_projects`."""
        return await self._arun(_plans.find_projects(name))

    # ------------------------------------------------------------------ chapters and prompts

    def create_chapter(self, project_id: str, *, name: str, duration: int | None = None) -> Chapter:
        """Create a chapter; an ambiguous failure raises ``BabouOutcomeUnknownError`` (no retry).

        :param project_id: the project.
        :param name: 1-30 characters.
        :param duration: positive whole seconds, optional.
        """
        return self._run(_plans.create_chapter(project_id, name, duration))

    async def acreate_chapter(self, project_id: str, *, name: str, duration: int | None = None) -> Chapter:
        """Async :meth:`create_chapter`."""
        return await self._arun(_plans.create_chapter(project_id, name, duration))

    def get_chapter(self, project_id: str, chapter_id: str) -> Chapter:
        """Get a chapter with its prompts.

        :param project_id: the project.
        :param chapter_id: the chapter.
        """
        return self._run(_plans.get_chapter(project_id, chapter_id))

    async def aget_chapter(self, project_id: str, chapter_id: str) -> Chapter:
        """Async :meth:`get_chapter`."""
        return await self._arun(_plans.get_chapter(project_id, chapter_id))

    def list_chapters(self, project_id: str) -> list[Chapter]:
        """List a project's chapters (in creation order).

        :param project_id: the project.
        """
        return self._run(_plans.list_chapters(project_id))

    async def alist_chapters(self, project_id: str) -> list[Chapter]:
        """Async :meth:`list_chapters`."""
        return await self._arun(_plans.list_chapters(project_id))

    def submit_prompt(
        self, project_id: str, chapter_id: str, *, content: str, force: bool = False
    ) -> PromptReceipt:
        """Submit a prompt; after an ambiguous failure, reconcile from the chapter (never a duplicate).

        :param project_id: the project.
        :param chapter_id: the chapter.
        :param content: 1-5000 characters describing what to build.
        :param force: replace a prompt already in flight on this chapter.
        """
        return self._run(_plans.submit_prompt(project_id, chapter_id, content, force))

    async def asubmit_prompt(
        self, project_id: str, chapter_id: str, *, content: str, force: bool = False
    ) -> PromptReceipt:
        """Async :meth:`submit_prompt`."""
        return await self._arun(_plans.submit_prompt(project_id, chapter_id, content, force))

    def find_prompt(self, project_id: str, chapter_id: str, *, content: str) -> Prompt | None:
        """Return the latest prompt of the chapter with exactly this content, if any.

        :param project_id: the project.
        :param chapter_id: the chapter.
        :param content: the exact prompt text.
        """
        return self._run(_plans.find_prompt(project_id, chapter_id, content))

    async def afind_prompt(self, project_id: str, chapter_id: str, *, content: str) -> Prompt | None:
        """Async :meth:`find_prompt`."""
        return await self._arun(_plans.find_prompt(project_id, chapter_id, content))

    # ------------------------------------------------------------------ exports

    def start_export(self, project_id: str) -> ExportReceipt:
        """Start rendering the project; 409 while one is in flight; reconciles after an ambiguous failure.

        :param project_id: the project.
        """
        return self._run(_plans.start_export(project_id))

    async def astart_export(self, project_id: str) -> ExportReceipt:
        """Async :meth:`start_export`."""
        return await self._arun(_plans.start_export(project_id))

    def get_export(self, project_id: str) -> Export:
        """Get the project's export status (404 before any export).

        :param project_id: the project.
        """
        return self._run(_plans.get_export(project_id))

    async def aget_export(self, project_id: str) -> Export:
        """Async :meth:`get_export`."""
        return await self._arun(_plans.get_export(project_id))

    def _max_resumes(self) -> int:
        return max(3, self.config.max_retries)

    def download_export(
        self, project_id: str, destination: Any, *, overwrite: bool = False
    ) -> DownloadResult:
        """Download the completed export's MP4, streamed, resumable and atomic.

        The file is written beside the destination under a temporary name, resumed with
        ``Range`` after a dropped connection, checked against the announced length and renamed
        into place; an expired URL is refreshed once from the export status.

        :param project_id: the project.
        :param destination: a local path or an ``ObjectStoragePath`` (remote ones are filled from
            a local temporary file).
        :param overwrite: replace an existing destination instead of raising ``BabouInputError``.
        """
        return self._run(_plans.download_export(project_id, destination, overwrite, self._max_resumes()))

    async def adownload_export(
        self, project_id: str, destination: Any, *, overwrite: bool = False
    ) -> DownloadResult:
        """Async :meth:`download_export`."""
        await self.aconfig()
        return await self._arun(
            _plans.download_export(project_id, destination, overwrite, self._max_resumes())
        )

    # ------------------------------------------------------------------ assets

    def upload_asset(self, source: Any, *, content_type: str | None = None) -> Asset:
        """Upload a media file, streamed (never read whole into memory).

        Babou names every uploaded asset ``uploaded-file``: no filename can be sent.

        :param source: a path, a binary file object (read from its current position) or an
            ``ObjectStoragePath``.
        :param content_type: the MIME type; guessed from the name when omitted.
        """
        return self._run(_plans.upload_asset(source, content_type))

    async def aupload_asset(self, source: Any, *, content_type: str | None = None) -> Asset:
        """Async :meth:`upload_asset`."""
        plan = await asyncio.to_thread(_plans.upload_asset, source, content_type)
        return await self._arun(plan)

    def get_asset(self, asset_id: str) -> Asset:
        """Get an asset.

        :param asset_id: the asset id.
        """
        return self._run(_plans.get_asset(asset_id))

    async def aget_asset(self, asset_id: str) -> Asset:
        """Async :meth:`get_asset`."""
        return await self._arun(_plans.get_asset(asset_id))

    def list_assets(
        self, *, limit: int = 20, offset: int = 0, content_type: str | None = None, state: str | None = None
    ) -> Page[Asset]:
        """List one page of assets.

        :param limit: page size, 1-100.
        :param offset: assets to skip.
        :param content_type: exact MIME type filter.
        :param state: state filter (``uploading``, ``processing``, ``ready``, ``error``/``failed``).
        """
        return self._run(_plans.list_assets(limit, offset, content_type, state))

    async def alist_assets(
        self, *, limit: int = 20, offset: int = 0, content_type: str | None = None, state: str | None = None
    ) -> Page[Asset]:
        """Async :meth:`list_assets`."""
        return await self._arun(_plans.list_assets(limit, offset, content_type, state))

    def iter_assets(
        self, *, content_type: str | None = None, state: str | None = None, page_size: int = 100
    ) -> Iterator[Asset]:
        """Yield every asset matching the filters, page after page.

        :param content_type: exact MIME type filter.
        :param state: state filter.
        :param page_size: assets per request, 1-100.
        """
        offset: int | None = 0
        while offset is not None:
            page = self.list_assets(limit=page_size, offset=offset, content_type=content_type, state=state)
            yield from page.items
            offset = _responses.next_offset(page, offset, page_size)

    async def aiter_assets(
        self, *, content_type: str | None = None, state: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Asset]:
        """Async :meth:`iter_assets`."""
        offset: int | None = 0
        while offset is not None:
            page = await self.alist_assets(
                limit=page_size, offset=offset, content_type=content_type, state=state
            )
            for asset in page.items:
                yield asset
            offset = _responses.next_offset(page, offset, page_size)

    # ------------------------------------------------------------------ blocking waits

    def wait_for_prompt(
        self,
        project_id: str,
        chapter_id: str,
        prompt_id: str,
        *,
        poll: PollPolicy = _DEFAULT_POLL,
        timeout: float = 900,
    ) -> Chapter:
        """Poll the chapter until the prompt completes; return the chapter.

        :param project_id: the project.
        :param chapter_id: the chapter.
        :param prompt_id: the prompt (``PromptReceipt.prompt_id``).
        :param poll: polling cadence.
        :param timeout: seconds before ``BabouWaitTimeoutError``; a failed prompt raises
            ``BabouJobFailedError``.
        """
        return self._run(_plans.wait_for_prompt(project_id, chapter_id, prompt_id, poll, timeout))

    async def await_for_prompt(
        self,
        project_id: str,
        chapter_id: str,
        prompt_id: str,
        *,
        poll: PollPolicy = _DEFAULT_POLL,
        timeout: float = 900,
    ) -> Chapter:
        """Async :meth:`wait_for_prompt`."""
        return await self._arun(_plans.wait_for_prompt(project_id, chapter_id, prompt_id, poll, timeout))

    def wait_for_export(
        self, project_id: str, *, poll: PollPolicy = _DEFAULT_POLL, timeout: float = 1800
    ) -> Export:
        """Poll the export status until it completes; return it (with ``download_url``).

        :param project_id: the project.
        :param poll: polling cadence.
        :param timeout: seconds before ``BabouWaitTimeoutError``; a failed export raises
            ``BabouJobFailedError``.
        """
        return self._run(_plans.wait_for_export(project_id, poll, timeout))

    async def await_for_export(
        self, project_id: str, *, poll: PollPolicy = _DEFAULT_POLL, timeout: float = 1800
    ) -> Export:
        """Async :meth:`wait_for_export`."""
        return await self._arun(_plans.wait_for_export(project_id, poll, timeout))

    def wait_for_asset(
        self, asset_id: str, *, poll: PollPolicy = _DEFAULT_POLL, timeout: float = 600
    ) -> Asset:
        """Poll the asset until it is ready; return it.

        :param asset_id: the asset.
        :param poll: polling cadence.
        :param timeout: seconds before ``BabouWaitTimeoutError``; a failed asset raises
            ``BabouJobFailedError``.
        """
        return self._run(_plans.wait_for_asset(asset_id, poll, timeout))

    async def await_for_asset(
        self, asset_id: str, *, poll: PollPolicy = _DEFAULT_POLL, timeout: float = 600
    ) -> Asset:
        """Async :meth:`wait_for_asset`."""
        return await self._arun(_plans.wait_for_asset(asset_id, poll, timeout))


async def _achunks(body: _transfer.UploadBody) -> AsyncIterator[bytes]:
    """Async twin of :meth:`UploadBody.chunks`: file reads run in a worker thread."""
    stream = await asyncio.to_thread(body.open)
    try:
        remaining = body.size
        while remaining > 0:
            chunk = await asyncio.to_thread(stream.read, min(_transfer.CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        if body.closes:
            await asyncio.to_thread(stream.close)


__all__ = ["BabouHook"]
