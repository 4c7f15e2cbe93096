"""Operators for every Babou write, plus one operator that goes from chapters to a downloaded MP4.

Every operator is thin: HTTP goes through :class:`~airflow_provider_babou.hooks.babou.BabouHook`,
waiting through the hook's ``wait_for_*`` (blocking) or the triggers (deferrable), and every
outcome of a deferred wait through :func:`~airflow_provider_babou.triggers.babou.raise_for_event`.

Babou has no idempotency keys, so each operator makes its own write retry-safe by asking the API
what already exists before writing (see each class's docstring).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath

from airflow_provider_babou._compat import HAS_RESUMABLE_JOB_MIXIN, ResumableJobMixin, conf
from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouError,
    BabouInputError,
    BabouJobFailedError,
    BabouNotFoundError,
    BabouWaitTimeoutError,
)
from airflow_provider_babou.links import BabouProjectLink, BabouVideoLink
from airflow_provider_babou.models import ExportStatus, Project, PromptStatus
from airflow_provider_babou.operators._common import (
    BabouBaseOperator,
    BabouWaitingOperatorMixin,
    annotate,
    run_marker,
    try_number,
)
from airflow_provider_babou.polling import export_state, prompt_state
from airflow_provider_babou.triggers.babou import (
    BabouAssetTrigger,
    BabouExportTrigger,
    BabouPromptTrigger,
    raise_for_event,
)
from airflow_provider_babou.validation import (
    DESCRIPTION_MAX,
    check_description,
    check_duration,
    check_id,
    check_name,
    check_prompt,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pydantic import JsonValue

    from airflow_provider_babou.hooks.babou import BabouHook

__all__ = [
    "BabouCreateChapterOperator",
    "BabouCreateProjectOperator",
    "BabouDownloadExportOperator",
    "BabouGenerateVideoOperator",
    "BabouStartExportOperator",
    "BabouSubmitPromptOperator",
    "BabouUploadAssetOperator",
]

ProjectReuse = Literal["run", "name", "never"]
ChapterReuse = Literal["name", "never"]
_PROJECT_REUSE = ("run", "name", "never")
_CHAPTER_REUSE = ("name", "never")


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _as_location(value: Any) -> Any:
    """Turn a templated ``scheme://...`` string into an :class:`ObjectStoragePath`; keep anything else."""
    if isinstance(value, str) and "://" in value:
        return ObjectStoragePath(value)
    return value


def _check_destination(destination: Any, *, overwrite: bool) -> Any:
    """Reject a missing or existing destination before anything is created or rendered."""
    destination = _as_location(destination)
    if destination is None or (isinstance(destination, str) and not destination.strip()):
        raise BabouInputError("destination is empty", hint="pass a file path such as /tmp/video.mp4")
    if not isinstance(destination, (str, os.PathLike, ObjectStoragePath)):
        raise BabouInputError(
            f"destination must be a path or an ObjectStoragePath, got {type(destination).__name__}"
        )
    if isinstance(destination, ObjectStoragePath):
        exists, is_dir = destination.exists(), destination.is_dir()
    else:
        exists, is_dir = os.path.exists(destination), os.path.isdir(destination)
    if is_dir:
        raise BabouInputError(f"destination {destination} is a directory", hint="pass a file path")
    if exists and not overwrite:
        raise BabouInputError(
            f"destination {destination} already exists", hint="pass overwrite=True to replace it"
        )
    return destination


def _make_parent(destination: Any) -> None:
    """Create the destination's missing parent directories: per-run paths rarely exist beforehand."""
    if isinstance(destination, ObjectStoragePath):
        destination.parent.mkdir(parents=True, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)


def _description_with_marker(description: str | None, marker: str) -> str:
    """Append the run marker to the description, refusing (not truncating) one that would get too long."""
    if description is None or not description:
        return marker
    full = f"{description} {marker}"
    if len(full) > DESCRIPTION_MAX:
        raise BabouInputError(
            f"project description is {len(description)} characters; with the run marker {marker!r} "
            f"it would exceed Babou's {DESCRIPTION_MAX}",
            hint=f"shorten it to {DESCRIPTION_MAX - len(marker) - 1} characters, "
            "or pass reuse='name' or 'never'",
        )
    return full


def _ensure_project(
    hook: BabouHook,
    *,
    name: str,
    description: str | None,
    settings: dict[str, Any] | None,
    reuse: str,
    marker: str | None,
) -> tuple[Project, bool]:
    """Return the project to use and whether it already existed (``description`` carries ``marker``)."""
    if reuse == "run" and marker:
        for project in hook.iter_projects():
            if project.description and marker in project.description:
                return project, True
    elif reuse == "name":
        found = hook.find_projects(name=name)
        if found:
            return found[0], True
    return hook.create_project(name=name, description=description, settings=settings), False


def _submit_or_attach(
    hook: BabouHook, project_id: str, chapter_id: str, content: str, *, force: bool
) -> tuple[str, PromptStatus, bool]:
    """Attach to a live prompt with this content, or submit it; return ``(prompt_id, status, reused)``.

    A prompt with the same content that is processing or completed is reused (a retry never
    submits twice); a failed one is resubmitted.
    """
    existing = hook.find_prompt(project_id, chapter_id, content=content)
    if existing is not None:
        status = existing.status
        if status is None or status is PromptStatus.UNKNOWN:
            # Babou may omit the nested status: derive it from the chapter, as the docs describe.
            status = hook.get_chapter(project_id, chapter_id).prompt_status(existing.id)
        if status is not PromptStatus.FAILED:
            return existing.id, status, True
    try:
        receipt = hook.submit_prompt(project_id, chapter_id, content=content, force=force)
    except BabouConflictError as err:
        err.hint = (
            f"another prompt is still processing on chapter {chapter_id}; wait for it to finish, "
            "or pass force=True to cancel it and run this one"
        )
        raise
    return receipt.prompt_id, receipt.status, False


def _prompt_result(
    project_id: str, chapter_id: str, prompt_id: str, chapter: dict[str, Any] | None, *, reused: bool
) -> dict[str, Any]:
    """Build the JSON result of a prompt: its ids, status, Babou's ``result`` text and the chapter."""
    prompt: dict[str, Any] = next(
        (p for p in (chapter or {}).get("prompts") or [] if p.get("id") == prompt_id), {}
    )
    return {
        "project_id": project_id,
        "chapter_id": chapter_id,
        "prompt_id": prompt_id,
        "status": prompt.get("status") or "processing",
        "result": prompt.get("result"),
        "reused": reused,
        "chapter": chapter,
    }


def _emit_asset_events(operator: BaseOperator, context: Context, extra: dict[str, Any]) -> None:
    """Attach ``extra`` (project id, size, sha256, path) to the event of each Asset outlet."""
    outlet_events = context.get("outlet_events")
    if outlet_events is None:
        return
    for outlet in operator.outlets:
        if isinstance(outlet, Asset):
            outlet_events[outlet].extra = dict(extra)


class BabouCreateProjectOperator(BabouBaseOperator):
    """Create a Babou project, or reuse the one an earlier try of this task created.

    Project creation is not idempotent in Babou, so ``reuse`` decides what a retry does:

    * ``"run"`` (default): a marker derived from dag id, task id, run id and map index (e.g.
      ``[airflow:ab12cd34ef56]``) is appended to the description, and before creating, the account's
      projects are searched for it. A retried or cleared task instance gets the same project back;
      another run or map index gets its own. The description plus marker must fit in 1000 characters.
    * ``"name"``: reuse the newest project with exactly this name, else create one. Runs share it.
    * ``"never"``: always create; a retry after an ambiguous failure may leave a duplicate.

    When Babou's answer to a create is lost (the hook raises ``BabouOutcomeUnknownError`` rather
    than sending the POST again), the task's retry is safe with ``"run"``: it finds the project
    if it was created. The search pages through every project of the account.

    Pushes ``project_id`` to XCom and returns the project as JSON plus ``project_id`` and ``reused``.

    :param name: the project's name, 1-30 characters.
    :param description: an optional description, at most 1000 characters (with ``reuse="run"``, less
        the 23 characters of the marker).
    :param settings: optional project settings, passed to Babou as they are.
    :param reuse: ``"run"``, ``"name"`` or ``"never"``, as above.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("name", "description", "settings")
    operator_extra_links = (BabouProjectLink(),)

    def __init__(
        self,
        *,
        name: str,
        description: str | None = None,
        settings: dict[str, Any] | None = None,
        reuse: ProjectReuse = "run",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if reuse not in _PROJECT_REUSE:
            raise BabouInputError(f"reuse must be one of {_PROJECT_REUSE}, got {reuse!r}")
        self.name = name
        self.description = description
        self.settings = settings
        self.reuse = reuse

    def execute(self, context: Context) -> dict[str, Any]:
        name = check_name("project", self.name)
        description = check_description(self.description)
        if self.settings is not None and not isinstance(self.settings, dict):
            raise BabouInputError(f"settings must be a dict, got {type(self.settings).__name__}")
        marker = run_marker(context) if self.reuse == "run" else None
        if marker:
            description = _description_with_marker(description, marker)
        with self.session() as hook:
            project, reused = _ensure_project(
                hook,
                name=name,
                description=description,
                settings=self.settings,
                reuse=self.reuse,
                marker=marker,
            )
            self.log.info("%s Babou project %s (%s)", "Reusing" if reused else "Created", project.id, name)
            self.push(context, project_id=project.id)
            self.persist_project_link(context, hook, project.id)
        return {**project.model_dump(mode="json"), "project_id": project.id, "reused": reused}


class BabouCreateChapterOperator(BabouBaseOperator):
    """Create a chapter in a project, or reuse the project's chapter of that name.

    * ``reuse="name"`` (default): if the project already has a chapter with exactly this name (for
      example from an earlier try of this task), it is returned instead of creating a second one.
      Its duration is left as it is.
    * ``reuse="never"``: always create.

    Pushes ``project_id`` and ``chapter_id``; returns the chapter as JSON plus the ids and ``reused``.

    :param project_id: the project to add the chapter to.
    :param name: the chapter's name, 1-30 characters.
    :param duration: optional target duration, a positive whole number of seconds.
    :param reuse: ``"name"`` or ``"never"``, as above.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id", "name")
    operator_extra_links = (BabouProjectLink(),)

    def __init__(
        self,
        *,
        project_id: str,
        name: str,
        duration: int | None = None,
        reuse: ChapterReuse = "name",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if reuse not in _CHAPTER_REUSE:
            raise BabouInputError(f"reuse must be one of {_CHAPTER_REUSE}, got {reuse!r}")
        self.project_id = project_id
        self.name = name
        self.duration = duration
        self.reuse = reuse

    def execute(self, context: Context) -> dict[str, Any]:
        project_id = check_id("project", self.project_id)
        name = check_name("chapter", self.name)
        duration = check_duration(self.duration)
        with self.session() as hook:
            chapter = None
            if self.reuse == "name":
                chapter = next((c for c in hook.list_chapters(project_id) if c.name == name), None)
            reused = chapter is not None
            if chapter is None:
                chapter = hook.create_chapter(project_id, name=name, duration=duration)
            self.log.info(
                "%s chapter %s (%s) in project %s",
                "Reusing" if reused else "Created",
                chapter.id,
                name,
                project_id,
            )
            self.push(context, project_id=project_id, chapter_id=chapter.id)
            self.persist_project_link(context, hook, project_id)
        return {
            **chapter.model_dump(mode="json"),
            "project_id": project_id,
            "chapter_id": chapter.id,
            "reused": reused,
        }


class BabouSubmitPromptOperator(BabouWaitingOperatorMixin, BabouBaseOperator):
    """Submit a prompt to a chapter, optionally waiting for it to be built (30-90 s).

    Retry-safe: before submitting, the chapter is searched for the latest prompt with exactly this
    content. If it is processing or completed, the task attaches to it instead of submitting
    again; if it failed, the prompt is submitted anew. A 409 (another prompt in flight on the
    chapter) fails with a hint to pass ``force=True``, which makes Babou cancel that prompt.

    Pushes ``project_id``, ``chapter_id`` and ``prompt_id`` (before deferring) and returns them
    with ``status``, Babou's ``result`` text, ``reused`` and, once waited, the ``chapter``.

    :param project_id: the project holding the chapter.
    :param chapter_id: the chapter to submit to.
    :param content: the prompt, 1-5000 characters.
    :param force: cancel a prompt in flight on this chapter (Babou's ``force``).
    :param wait_for_completion: wait until the prompt completed; a failed prompt fails the task.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id", "chapter_id", "content")
    template_fields_renderers = {"content": "md"}
    operator_extra_links = (BabouProjectLink(),)

    def __init__(
        self,
        *,
        project_id: str,
        chapter_id: str,
        content: str,
        force: bool = False,
        wait_for_completion: bool = False,
        deferrable: bool = _default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 900,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_wait_args(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout)
        self.project_id = project_id
        self.chapter_id = chapter_id
        self.content = content
        self.force = force
        self.wait_for_completion = wait_for_completion

    def execute(self, context: Context) -> dict[str, Any]:
        project_id = check_id("project", self.project_id)
        chapter_id = check_id("chapter", self.chapter_id)
        content = check_prompt(self.content)
        with self.session() as hook:
            prompt_id, status, reused = _submit_or_attach(
                hook, project_id, chapter_id, content, force=self.force
            )
            self.log.info(
                "%s prompt %s on chapter %s (%s)",
                "Attached to" if reused else "Submitted",
                prompt_id,
                chapter_id,
                status.value,
            )
            self.push(context, project_id=project_id, chapter_id=chapter_id, prompt_id=prompt_id)
            self.persist_project_link(context, hook, project_id)
            if not self.wait_for_completion:
                return {
                    **_prompt_result(project_id, chapter_id, prompt_id, None, reused=reused),
                    "status": status.value,
                }
            # A fresh (or attached) prompt is processing: wait without a first GET.
            if not status.is_terminal and self.deferrable:
                self.record_deferring_try(context)
                self.defer(
                    trigger=BabouPromptTrigger(
                        project_id=project_id,
                        chapter_id=chapter_id,
                        prompt_id=prompt_id,
                        **self.trigger_kwargs(),
                    ),
                    method_name="execute_complete",
                    kwargs={"reused": reused},
                    timeout=None,
                )
            if not status.is_terminal:
                chapter = hook.wait_for_prompt(
                    project_id, chapter_id, prompt_id, poll=self.poll_policy(), timeout=self.timeout
                )
            else:
                chapter = hook.get_chapter(project_id, chapter_id)
                state = prompt_state(chapter, prompt_id)
                if not state.succeeded:
                    raise BabouJobFailedError(
                        state.failure(f"prompt {prompt_id} (chapter {chapter_id}, project {project_id})")
                    )
            return _prompt_result(
                project_id, chapter_id, prompt_id, chapter.model_dump(mode="json"), reused=reused
            )

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, reused: bool = False
    ) -> dict[str, Any]:
        """Resume after the prompt trigger fired: return the prompt's result, or raise its failure."""
        chapter = raise_for_event(event)
        assert event is not None  # raise_for_event rejected a missing event
        return _prompt_result(
            event["project_id"], event["chapter_id"], event["prompt_id"], chapter, reused=reused
        )


class BabouStartExportOperator(ResumableJobMixin, BabouWaitingOperatorMixin, BabouBaseOperator):
    """Start rendering a project into one video, and by default wait for it (minutes).

    Retry-safe, in this order:

    * an export already in flight (the project's ``active_export_id``, or a 409 on start) is
      attached to, never started twice;
    * on Airflow 3.3+ the task uses :class:`~airflow.sdk.ResumableJobMixin`: the export it started
      is recorded in the task state store, and a retry reconnects to it while it runs, returns it
      if it completed (no second render), or starts a new one if it failed;
    * on older Airflow, or when the context has no task state store, a retry (``try_number > 1``)
      whose project's latest export completed returns that export instead of rendering again.

    A failed export fails the task with Babou's ``error`` text. Pushes ``project_id`` (and
    ``export_id`` when Babou reports one) before waiting; returns the export as JSON with
    ``project_id``; stores the "Babou video" link once the export completed.

    :param project_id: the project to export.
    :param wait_for_completion: wait until the export completed (or failed).
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param durable: (Airflow 3.3+) record the export in the task state store to resume it on retry.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id",)
    operator_extra_links = (BabouProjectLink(), BabouVideoLink())
    #: Task-state-store key of the started export; renaming it would break in-flight retries.
    external_id_key = "babou_export"

    def __init__(
        self,
        *,
        project_id: str,
        wait_for_completion: bool = True,
        deferrable: bool = _default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 1800,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_wait_args(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout)
        self.project_id = project_id
        self.wait_for_completion = wait_for_completion

    def execute(self, context: Context) -> Any:
        project_id = check_id("project", self.project_id)
        with self.session() as hook:
            self.push(context, project_id=project_id)
            self.persist_project_link(context, hook, project_id)
            BabouVideoLink.persist(context, None)  # set once the export completes
            if HAS_RESUMABLE_JOB_MIXIN and context.get("task_state_store") is not None:
                return self.execute_resumable(context)
            return self._execute_by_try_number(context, project_id)

    def _execute_by_try_number(self, context: Context, project_id: str) -> Any:
        """Resume without a task state store: on a retry, a completed export is reused."""
        if self.durable and try_number(context) > 1:
            previous: JsonValue = {"project_id": project_id, "export_id": None}
            if self.is_job_succeeded(self.get_job_status(previous, context)):
                self.log.info(
                    "Try %d: reusing the completed export of project %s", try_number(context), project_id
                )
                return self.get_job_result(previous, context)
        return self.poll_until_complete(self.submit_job(context), context)

    # -- ResumableJobMixin -------------------------------------------------------------------

    def submit_job(self, context: Context) -> JsonValue:
        """Start the export, or attach to the one in flight; return ``{project_id, export_id}``."""
        hook = self.hook
        project_id = self.project_id
        project = hook.get_project(project_id)
        if project.active_export_id:
            self.log.info(
                "Attaching to export %s already in flight on project %s", project.active_export_id, project_id
            )
            export_id: str | None = project.active_export_id
        else:
            try:
                receipt = hook.start_export(project_id)
                self.log.info("Started export of project %s (%s)", project_id, receipt.status.value)
            except BabouConflictError:
                self.log.info("An export of project %s started meanwhile; attaching to it", project_id)
            export_id = hook.get_project(project_id).active_export_id
        return {"project_id": project_id, "export_id": export_id}

    def get_job_status(self, external_id: JsonValue, context: Context) -> str:
        """Return the project's export status, ``"stale"`` for another project, ``"missing"`` for none."""
        if not isinstance(external_id, dict) or external_id.get("project_id") != self.project_id:
            return "stale"
        try:
            return self.hook.get_export(self.project_id).status.value
        except BabouNotFoundError:
            return "missing"

    def is_job_active(self, status: str) -> bool:
        """Queued, processing or a state word Babou added later: still worth waiting for."""
        return status not in ("stale", "missing") and not ExportStatus(status).is_terminal

    def is_job_succeeded(self, status: str) -> bool:
        """Only ``completed`` is a reusable export."""
        return status not in ("stale", "missing") and ExportStatus(status).is_success

    def poll_until_complete(self, external_id: JsonValue, context: Context) -> Any:
        """Wait for the export (defer, or block) and return its result; without waiting, return its state."""
        self._push_export_id(context, external_id)
        hook = self.hook
        export = hook.get_export(self.project_id)
        if not self.wait_for_completion:
            return self._result(context, export.model_dump(mode="json"))
        if not export.status.is_terminal:
            if self.deferrable:
                self.record_deferring_try(context)
                self.defer(
                    trigger=BabouExportTrigger(project_id=self.project_id, **self.trigger_kwargs()),
                    method_name="execute_complete",
                    timeout=None,
                )
            export = hook.wait_for_export(self.project_id, poll=self.poll_policy(), timeout=self.timeout)
        state = export_state(export)
        if not state.succeeded:
            raise BabouJobFailedError(state.failure(f"export of project {self.project_id}"))
        return self._result(context, export.model_dump(mode="json"))

    def get_job_result(self, external_id: JsonValue, context: Context) -> Any:
        """Return the completed export (the path taken when a retry finds it already done)."""
        self._push_export_id(context, external_id)
        return self._result(context, self.hook.get_export(self.project_id).model_dump(mode="json"))

    # -- results -----------------------------------------------------------------------------

    def _push_export_id(self, context: Context, external_id: JsonValue) -> None:
        # Pushed on every try (Airflow clears XCom before a retry), also when reconnecting.
        if isinstance(external_id, dict):
            self.push(context, export_id=external_id.get("export_id"))

    def _result(self, context: Context, export: dict[str, Any]) -> dict[str, Any]:
        BabouVideoLink.persist(context, export.get("download_url"))
        return {**export, "project_id": self.project_id}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the export trigger fired: return the export, or raise its failure."""
        export = raise_for_event(event)
        return self._result(context, export)


class BabouUploadAssetOperator(BabouWaitingOperatorMixin, BabouBaseOperator):
    """Upload a media file (image, clip, audio) as a Babou asset, optionally waiting until it is ready.

    The file is streamed, not read into memory. The hook checks it before any request: it must
    exist, not be a directory, be at most 100 MiB and have a supported content type (given, or
    guessed from the name). Babou cannot recognise a file it already has, so uploads are not
    deduplicated: a retry after an upload whose outcome is unknown may store the file twice.

    Pushes ``asset_id`` (before waiting) and returns the asset as JSON plus ``asset_id``.

    :param source: a local path or an :class:`~airflow.sdk.ObjectStoragePath` (``s3://...`` strings
        are turned into one).
    :param content_type: the MIME type, e.g. ``image/png``; guessed from the name when omitted.
    :param wait_for_ready: wait until Babou processed the asset; an asset in ``error`` fails the task.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("source", "content_type")

    def __init__(
        self,
        *,
        source: str | os.PathLike[str] | ObjectStoragePath,
        content_type: str | None = None,
        wait_for_ready: bool = False,
        deferrable: bool = _default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_wait_args(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout)
        self.source = source
        self.content_type = content_type
        self.wait_for_ready = wait_for_ready

    def execute(self, context: Context) -> dict[str, Any]:
        with self.session() as hook:
            asset = hook.upload_asset(_as_location(self.source), content_type=self.content_type or None)
            self.log.info("Uploaded asset %s (%s, %s)", asset.id, asset.content_type, asset.state.value)
            self.push(context, asset_id=asset.id)
            if self.wait_for_ready and not asset.state.is_terminal:
                if self.deferrable:
                    self.record_deferring_try(context)
                    self.defer(
                        trigger=BabouAssetTrigger(asset_id=asset.id, **self.trigger_kwargs()),
                        method_name="execute_complete",
                        timeout=None,
                    )
                asset = hook.wait_for_asset(asset.id, poll=self.poll_policy(), timeout=self.timeout)
            if self.wait_for_ready and not asset.state.is_success:
                raise BabouJobFailedError(f"asset {asset.id} ended {asset.state.value!r}")
        return {**asset.model_dump(mode="json"), "asset_id": asset.id}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the asset trigger fired: return the ready asset, or raise its failure."""
        asset = raise_for_event(event)
        return {**asset, "asset_id": asset.get("id")}


class BabouDownloadExportOperator(BabouBaseOperator):
    """Download a project's completed export (the MP4) to a local path or object storage.

    Missing parent directories are created. The hook writes to a temporary file beside the
    destination, resumes interrupted transfers and renames atomically, so a retry never leaves a
    half-written video at ``destination``. Each
    :class:`~airflow.sdk.Asset` in ``outlets`` gets an event whose extra carries ``project_id``,
    ``size``, ``sha256`` and ``path``.

    Returns ``{path, size, sha256, project_id, download_url}``.

    :param project_id: the exported project.
    :param destination: a file path or an :class:`~airflow.sdk.ObjectStoragePath` (``s3://...``
        strings are turned into one).
    :param overwrite: replace an existing file at ``destination`` instead of failing.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id", "destination")
    operator_extra_links = (BabouProjectLink(), BabouVideoLink())

    def __init__(
        self,
        *,
        project_id: str,
        destination: str | os.PathLike[str] | ObjectStoragePath,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.destination = destination
        self.overwrite = overwrite

    def execute(self, context: Context) -> dict[str, Any]:
        project_id = check_id("project", self.project_id)
        destination = _check_destination(self.destination, overwrite=self.overwrite)
        with self.session() as hook:
            self.push(context, project_id=project_id)
            self.persist_project_link(context, hook, project_id)
            return _download(self, context, hook, project_id, destination, overwrite=self.overwrite)


def _download(
    operator: BaseOperator,
    context: Context,
    hook: BabouHook,
    project_id: str,
    destination: Any,
    *,
    overwrite: bool,
) -> dict[str, Any]:
    """Download the export, store the video link, emit the outlet Asset events; return the JSON result."""
    export = hook.get_export(project_id)
    if not export.status.is_success:
        raise BabouError(
            f"the export of project {project_id} is {export.status.value!r}, not completed"
            + (f": {export.error}" if export.error else ""),
            hint="run BabouStartExportOperator (wait_for_completion=True) before downloading",
        )
    _make_parent(destination)
    downloaded = hook.download_export(project_id, destination, overwrite=overwrite)
    BabouVideoLink.persist(context, export.download_url)
    result = {**downloaded.model_dump(mode="json"), "download_url": export.download_url}
    _emit_asset_events(
        operator,
        context,
        {
            "project_id": project_id,
            "size": downloaded.size,
            "sha256": downloaded.sha256,
            "path": downloaded.path,
        },
    )
    operator.log.info(
        "Downloaded %s (%d bytes, sha256 %s)", downloaded.path, downloaded.size, downloaded.sha256
    )
    return result


class BabouGenerateVideoOperator(BabouWaitingOperatorMixin, BabouBaseOperator):
    """Go from chapters and prompts to a downloaded MP4 in one task.

    Stages, each idempotent so a retry or a re-run picks up where the last try stopped:

    1. **project**: found by this task instance's run marker in its description (see
       :class:`BabouCreateProjectOperator`, ``reuse="run"``), else created;
    2. **chapters**: the project's chapters are reused by name, missing ones created;
    3. **prompts**: a prompt with the same content that is processing or completed is reused, a
       failed or missing one submitted; then all prompts are waited for;
    4. **export**: an export in flight is attached to; on a retry where no prompt had to be
       submitted again, a completed export is reused instead of rendering again; else one is started
       and waited for;
    5. **download** to ``destination`` (missing parent directories are created), with Asset events
       as in :class:`BabouDownloadExportOperator`.

    All input is checked before the first request, so bad input creates nothing. A failure after
    something was created names the ids that exist (a retry reuses them). In deferrable mode the
    task defers between stages (on each pending prompt, then on the export) and re-enters through
    ``resume_prompts`` or ``resume_export`` with the progress in its kwargs; without them (``dag.test()``
    drops defer kwargs) the progress is found again in Babou. ``timeout`` bounds the whole task.

    Pushes ``project_id`` and ``chapter_ids``/``prompt_ids`` (chapter name -> id) before waiting and
    returns ``{project_id, chapters, export, path, size, sha256, download_url}``.

    :param project_name: the project's name, 1-30 characters.
    :param chapters: the chapters in order, each ``{"name", "prompt", "duration" (optional)}``.
    :param destination: where to write the MP4: a file path or an :class:`~airflow.sdk.ObjectStoragePath`.
    :param description: an optional project description (the run marker is appended).
    :param overwrite: replace an existing file at ``destination`` instead of failing.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long the whole task may take, in seconds.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_name", "chapters", "destination", "description")
    operator_extra_links = (BabouProjectLink(), BabouVideoLink())

    def __init__(
        self,
        *,
        project_name: str,
        chapters: list[dict[str, Any]],
        destination: str | os.PathLike[str] | ObjectStoragePath,
        description: str | None = None,
        overwrite: bool = False,
        deferrable: bool = _default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_wait_args(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout)
        self.project_name = project_name
        self.chapters = chapters
        self.destination = destination
        self.description = description
        self.overwrite = overwrite

    # -- input -------------------------------------------------------------------------------

    def _checked_chapters(self) -> list[dict[str, Any]]:
        chapters = self.chapters
        if not isinstance(chapters, list) or not chapters:
            raise BabouInputError(
                f"chapters must be a non-empty list of dicts, got {type(chapters).__name__}",
                hint='e.g. [{"name": "Intro", "prompt": "..."}]; a Jinja template needs '
                "render_template_as_native_obj=True on the DAG",
            )
        checked: list[dict[str, Any]] = []
        for index, spec in enumerate(chapters):
            if not isinstance(spec, dict):
                raise BabouInputError(f"chapters[{index}] must be a dict, got {type(spec).__name__}")
            unknown = set(spec) - {"name", "prompt", "duration"}
            if unknown:
                raise BabouInputError(
                    f"chapters[{index}] has unknown keys {sorted(unknown)}",
                    hint="use name, prompt and duration",
                )
            checked.append(
                {
                    "name": check_name("chapter", spec.get("name")),
                    "prompt": check_prompt(spec.get("prompt")),
                    "duration": check_duration(spec.get("duration")),
                }
            )
        names = [c["name"] for c in checked]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BabouInputError(
                f"chapter names must be unique, {duplicates} repeat",
                hint="chapters are reused by name on retry",
            )
        return checked

    # -- stages ------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        name = check_name("project", self.project_name)
        marker = run_marker(context)
        description = _description_with_marker(check_description(self.description), marker)
        specs = self._checked_chapters()
        destination = _check_destination(self.destination, overwrite=self.overwrite)
        deadline = time.time() + self.timeout
        state: dict[str, Any] = {
            "project_id": None,
            "chapters": [],
            "resubmitted": False,
            "deadline": deadline,
        }
        with self.session() as hook:
            try:
                project, reused = _ensure_project(
                    hook, name=name, description=description, settings=None, reuse="run", marker=marker
                )
                state["project_id"] = project.id
                self.log.info("%s project %s", "Reusing" if reused else "Created", project.id)
                self.push(context, project_id=project.id)
                self.persist_project_link(context, hook, project.id)
                BabouVideoLink.persist(context, None)  # set once the video is downloaded

                existing = {c.name: c for c in hook.list_chapters(project.id)} if reused else {}
                for spec in specs:
                    chapter = existing.get(spec["name"]) or hook.create_chapter(
                        project.id, name=spec["name"], duration=spec["duration"]
                    )
                    state["chapters"].append(
                        {"name": spec["name"], "chapter_id": chapter.id, "prompt_id": None}
                    )
                for entry, spec in zip(state["chapters"], specs, strict=True):
                    prompt_id, _, prompt_reused = _submit_or_attach(
                        hook, project.id, entry["chapter_id"], spec["prompt"], force=False
                    )
                    entry["prompt_id"] = prompt_id
                    state["resubmitted"] = state["resubmitted"] or not prompt_reused
                self.push(
                    context,
                    chapter_ids={c["name"]: c["chapter_id"] for c in state["chapters"]},
                    prompt_ids={c["name"]: c["prompt_id"] for c in state["chapters"]},
                )
                return self._wait_prompts(context, hook, state, destination)
            except BabouError as err:
                raise annotate(err, self._created(state)) from None

    def resume_prompts(
        self, context: Context, event: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after a prompt trigger fired: check its outcome, wait for the others, then export."""
        return self._resume(context, event, state, self._wait_prompts)

    def resume_export(
        self, context: Context, event: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the export trigger fired: check its outcome, then download."""
        return self._resume(context, event, state, self._wait_export)

    def _resume(
        self, context: Context, event: Any, state: dict[str, Any] | None, stage: Any
    ) -> dict[str, Any]:
        destination = _as_location(self.destination)
        with self.session() as hook:
            try:
                raise_for_event(event)
                if not isinstance(state, dict):
                    # ``dag.test()`` resumes with the event only, dropping the defer kwargs; every
                    # stage is idempotent, so the state is rebuilt from Babou with GETs alone.
                    state = self._rebuild_state(context, hook)
                result: dict[str, Any] = stage(context, hook, state, destination)
                return result
            except BabouError as err:
                raise annotate(err, self._created(state or {})) from None

    def _rebuild_state(self, context: Context, hook: BabouHook) -> dict[str, Any]:
        """Find this task instance's project, chapters and prompts again (GETs only)."""
        marker = run_marker(context)
        project = next((p for p in hook.iter_projects() if marker in (p.description or "")), None)
        if project is None:
            raise BabouError(
                f"cannot resume: no project carries this task's marker {marker}",
                hint="clear the task to start over",
            )
        chapters = {c.name: c.id for c in hook.list_chapters(project.id)}
        entries = []
        for spec in self._checked_chapters():
            chapter_id = chapters.get(spec["name"])
            prompt = hook.find_prompt(project.id, chapter_id, content=spec["prompt"]) if chapter_id else None
            if chapter_id is None or prompt is None:
                raise BabouError(
                    f"cannot resume: chapter {spec['name']!r} or its prompt is missing "
                    f"in project {project.id}",
                    hint="clear the task to start over",
                )
            entries.append({"name": spec["name"], "chapter_id": chapter_id, "prompt_id": prompt.id})
        # Unknown whether this try resubmitted a prompt: assume it did, so no stale export is reused.
        return {
            "project_id": project.id,
            "chapters": entries,
            "resubmitted": True,
            "deadline": time.time() + self.timeout,
        }

    def _remaining(self, state: dict[str, Any], pending: str) -> float:
        remaining = float(state["deadline"]) - time.time()
        if remaining <= 0:
            raise BabouWaitTimeoutError(f"timed out after {self.timeout} s with {pending} still pending")
        return remaining

    def _defer(self, context: Context, trigger: Any, method_name: str, state: dict[str, Any]) -> None:
        # The stage is the method name, so resuming works even when the kwargs are lost.
        self.record_deferring_try(context)
        self.defer(trigger=trigger, method_name=method_name, kwargs={"state": state}, timeout=None)

    def _wait_prompts(
        self, context: Context, hook: BabouHook, state: dict[str, Any], destination: Any
    ) -> dict[str, Any]:
        project_id = state["project_id"]
        for entry in state["chapters"]:
            chapter_id, prompt_id = entry["chapter_id"], entry["prompt_id"]
            observed = prompt_state(hook.get_chapter(project_id, chapter_id), prompt_id)
            if observed.done and not observed.succeeded:
                raise BabouJobFailedError(
                    observed.failure(f"prompt {prompt_id} of chapter {entry['name']!r} ({chapter_id})")
                )
            if observed.done:
                continue
            pending = f"prompt {prompt_id} of chapter {entry['name']!r} ({chapter_id})"
            remaining = self._remaining(state, pending)
            if self.deferrable:
                trigger = BabouPromptTrigger(
                    project_id=project_id,
                    chapter_id=chapter_id,
                    prompt_id=prompt_id,
                    **self.trigger_kwargs(float(state["deadline"])),
                )
                self._defer(context, trigger, "resume_prompts", state)
            hook.wait_for_prompt(
                project_id, chapter_id, prompt_id, poll=self.poll_policy(), timeout=remaining
            )
        return self._start_export(context, hook, state, destination)

    def _start_export(
        self, context: Context, hook: BabouHook, state: dict[str, Any], destination: Any
    ) -> dict[str, Any]:
        project_id = state["project_id"]
        if hook.get_project(project_id).active_export_id:
            self.log.info("Attaching to the export in flight on project %s", project_id)
            return self._wait_export(context, hook, state, destination)
        if not state["resubmitted"] and try_number(context) > 1:
            try:
                if hook.get_export(project_id).status.is_success:
                    self.log.info("Reusing the export an earlier try completed on project %s", project_id)
                    return self._wait_export(context, hook, state, destination)
            except BabouNotFoundError:
                pass
        try:
            hook.start_export(project_id)
        except BabouConflictError:
            self.log.info("An export of project %s started meanwhile; attaching to it", project_id)
        return self._wait_export(context, hook, state, destination)

    def _wait_export(
        self, context: Context, hook: BabouHook, state: dict[str, Any], destination: Any
    ) -> dict[str, Any]:
        project_id = state["project_id"]
        export = hook.get_export(project_id)
        if not export.status.is_terminal:
            remaining = self._remaining(state, f"the export of project {project_id}")
            if self.deferrable:
                trigger = BabouExportTrigger(
                    project_id=project_id, **self.trigger_kwargs(float(state["deadline"]))
                )
                self._defer(context, trigger, "resume_export", state)
            export = hook.wait_for_export(project_id, poll=self.poll_policy(), timeout=remaining)
        if not export.status.is_success:
            raise BabouJobFailedError(export_state(export).failure(f"export of project {project_id}"))
        result = _download(self, context, hook, project_id, destination, overwrite=self.overwrite)
        return {
            "project_id": project_id,
            "chapters": state["chapters"],
            "export": export.model_dump(mode="json"),
            **result,
        }

    @staticmethod
    def _created(state: dict[str, Any]) -> str:
        """Say which Babou objects exist so far (a retry of this task reuses them)."""
        if not state.get("project_id"):
            return "nothing was created in Babou"
        parts = [f"project {state['project_id']}"]
        for entry in state.get("chapters", []):
            text = f"chapter {entry['name']!r} {entry['chapter_id']}"
            if entry.get("prompt_id"):
                text += f" with prompt {entry['prompt_id']}"
            parts.append(text)
        return "already in Babou (a retry reuses them): " + ", ".join(parts)
