"""From chapters and prompts to a downloaded MP4 in one task, with the steps the other operators use."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath
from pydantic import BaseModel

from airflow_provider_babou.deferral import try_number
from airflow_provider_babou.exceptions import BabouError, BabouInputError, BabouJobFailedError
from airflow_provider_babou.lineage import BabouLineage, location_dataset
from airflow_provider_babou.links import BabouProjectLink, BabouVideoLink
from airflow_provider_babou.operators._common import BabouWaitingOperator, default_deferrable
from airflow_provider_babou.operators._steps import (
    as_location,
    checked_destination,
    description_with_marker,
    download,
    ensure_chapter,
    ensure_project,
    find_run_project,
    run_marker,
    run_since,
    start_or_attach_export,
    submit_or_attach,
)
from airflow_provider_babou.polling import ExportTarget, PromptTarget, export_state
from airflow_provider_babou.triggers.babou import raise_for_event
from airflow_provider_babou.validation import (
    check_chapter_dicts,
    check_description,
    check_duration,
    check_name,
    check_prompt,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_babou.hooks.babou import BabouHook


class ChapterSpec(BaseModel):
    """One chapter as the DAG author gives it: ``name``, ``prompt`` and an optional ``duration``."""

    name: str
    prompt: str
    duration: int | None = None


class ChapterProgress(BaseModel):
    """A chapter of the video in Babou, and the prompt that builds it."""

    name: str
    chapter_id: str
    prompt_id: str


class VideoProgress(BaseModel):
    """How far the task got: carried in the defer kwargs (as JSON) from stage to stage."""

    deadline: float
    project_id: str | None = None
    chapters: list[ChapterProgress] = []
    resubmitted: bool = False

    def created(self) -> str:
        """Say which Babou objects exist so far (a retry of this task reuses them)."""
        if not self.project_id:
            return "nothing was created in Babou"
        parts = [f"project {self.project_id}"]
        parts += [f"chapter {c.name!r} {c.chapter_id} with prompt {c.prompt_id}" for c in self.chapters]
        return "already in Babou (a retry reuses them): " + ", ".join(parts)


def _annotate(err: BabouError, progress: VideoProgress | None, marker: str | None = None) -> BabouError:
    """Append what exists in Babou to the error's message, in place; return it."""
    if progress is not None:
        note = progress.created()
    elif marker is not None:  # resumed without progress (dag.test() drops defer kwargs)
        note = f"this run's objects in Babou carry the marker {marker} (a retry reuses them)"
    else:
        note = "nothing was created in Babou"
    err.message = f"{err.message} [{note}]"
    return err


class BabouGenerateVideoOperator(BabouWaitingOperator):
    """Go from chapters and prompts to a downloaded MP4 in one task.

    Stages, each idempotent so a retry or a re-run picks up where the last try stopped:

    1. **project**: found by this task instance's run marker in its description (see
       :class:`BabouCreateProjectOperator`, ``reuse="run"``), else created;
    2. **chapters**: the project's chapters are reused by name, missing ones created;
    3. **prompts**: the chapter's latest prompt is reused if it has the same content and is
       processing or completed, else the prompt is submitted; then all prompts are waited for;
    4. **export**: an export in flight is attached to; on a retry where no prompt had to be
       submitted again, a completed export is reused instead of rendering again; else one is started
       and waited for;
    5. **download** to ``destination`` (missing parent directories are created), with Asset events
       as in :class:`BabouDownloadExportOperator`.

    All input is checked before the first request, so bad input creates nothing. A failure after
    something was created names the ids that exist (a retry reuses them). In deferrable mode the
    task defers between stages (on each pending prompt, then on the export) and re-enters through
    ``resume_prompts`` or ``resume_export`` with its :class:`VideoProgress` in the kwargs; without
    them (``dag.test()`` drops defer kwargs) the progress is found again in Babou. ``timeout``
    bounds the whole task.

    Pushes ``project_id`` and ``chapter_ids``/``prompt_ids`` (chapter name -> id) before waiting and
    returns ``{project_id, chapters, export, path, size, sha256, download_url}``. OpenLineage: the
    MP4 out, those ids in the ``babou`` run facet, each chapter's prompt in ``babouPrompts``.

    :param project_name: the project's name, 1-30 characters.
    :param chapters: the chapters in order, each ``{"name", "prompt", "duration" (optional)}``.
    :param destination: where to write the MP4: a file path or an :class:`~airflow.sdk.ObjectStoragePath`.
    :param dest_conn_id: the connection of an object-storage ``destination`` given as a string
        (e.g. ``aws_default`` for ``s3://...``); ignored for a local path.
    :param description: an optional project description (the run marker is appended).
    :param overwrite: replace an existing file at ``destination`` instead of failing.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long the whole task may take, in seconds.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = (
        "project_name",
        "chapters",
        "destination",
        "dest_conn_id",
        "description",
    )
    operator_extra_links = (BabouProjectLink(), BabouVideoLink())

    def __init__(
        self,
        *,
        project_name: str,
        chapters: list[dict[str, Any]],
        destination: str | os.PathLike[str] | ObjectStoragePath,
        dest_conn_id: str | None = None,
        description: str | None = None,
        overwrite: bool = False,
        deferrable: bool = default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout, **kwargs)
        self.project_name = project_name
        self.chapters = chapters
        self.destination = destination
        self.dest_conn_id = dest_conn_id
        self.description = description
        self.overwrite = overwrite

    def _specs(self) -> list[ChapterSpec]:
        specs = []
        for spec in check_chapter_dicts(self.chapters):
            specs.append(
                ChapterSpec(
                    name=check_name("chapter", spec.get("name")),
                    prompt=check_prompt(spec.get("prompt")),
                    duration=check_duration(spec.get("duration")),
                )
            )
        names = [s.name for s in specs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise BabouInputError(
                f"chapter names must be unique, {repeated} repeat",
                hint="chapters are reused by name on retry",
            )
        return specs

    def execute(self, context: Context) -> dict[str, Any]:
        name = check_name("project", self.project_name)
        marker = run_marker(context)
        description = description_with_marker(check_description(self.description), marker)
        specs = self._specs()
        destination = checked_destination(
            self.destination, overwrite=self.overwrite, conn_id=self.dest_conn_id
        )
        progress = VideoProgress(deadline=time.time() + self.timeout)
        with self.session() as hook:
            try:
                project, reused = ensure_project(
                    hook,
                    name=name,
                    description=description,
                    settings=None,
                    reuse="run",
                    marker=marker,
                    since=run_since(context),
                )
                progress.project_id = project.id
                self.log.info("%s project %s", "Reusing" if reused else "Created", project.id)
                self.push(context, project_id=project.id)
                self.persist_project_link(context, hook, project.id)
                BabouVideoLink.persist(context, None)  # set once the video is downloaded
                for spec in specs:
                    chapter, found = ensure_chapter(
                        hook, project.id, name=spec.name, duration=spec.duration, new_project=not reused
                    )
                    prompt_id, _, attached, _ = submit_or_attach(
                        hook, project.id, chapter.id, spec.prompt, force=False, new_chapter=not found
                    )
                    progress.chapters.append(
                        ChapterProgress(name=spec.name, chapter_id=chapter.id, prompt_id=prompt_id)
                    )
                    progress.resubmitted = progress.resubmitted or not attached
                self.push(context, **self._record_lineage(progress, specs, destination))
                return self._wait_prompts(context, hook, progress, destination)
            except BabouError as err:
                raise _annotate(err, progress) from None

    def resume_prompts(
        self, context: Context, event: dict[str, Any] | None = None, progress: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after a prompt trigger fired: check its outcome, wait for the others, then export."""
        return self._resume(context, event, progress, self._wait_prompts)

    def resume_export(
        self, context: Context, event: dict[str, Any] | None = None, progress: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the export trigger fired: check its outcome, then download."""
        return self._resume(context, event, progress, self._wait_export)

    def _resume(
        self, context: Context, event: Any, progress: dict[str, Any] | None, stage: Any
    ) -> dict[str, Any]:
        # Read before the event: a failed or timed-out wait must name what exists in Babou.
        state = VideoProgress.model_validate(progress) if progress else None
        with self.session() as hook:
            try:
                raise_for_event(event)
                # dag.test() resumes with the event only, dropping the defer kwargs; every stage is
                # idempotent, so the progress is rebuilt from Babou with GETs alone.
                state = state or self._rebuild(context, hook)
                destination = as_location(self.destination, self.dest_conn_id)
                self._record_lineage(state, self._specs(), destination)
                result: dict[str, Any] = stage(context, hook, state, destination)
                return result
            except BabouError as err:
                raise _annotate(err, state, run_marker(context)) from None

    def _record_lineage(
        self, progress: VideoProgress, specs: list[ChapterSpec], destination: Any
    ) -> dict[str, dict[str, str]]:
        """Record what the task builds for OpenLineage; return the chapter and prompt ids by name."""
        ids = {
            "chapter_ids": {c.name: c.chapter_id for c in progress.chapters},
            "prompt_ids": {c.name: c.prompt_id for c in progress.chapters},
        }
        prompts = [
            {"chapter_name": s.name, "chapter_id": c.chapter_id, "content": s.prompt}
            for s, c in zip(specs, progress.chapters, strict=True)
        ]
        self.babou_lineage = BabouLineage(
            ids={"project_id": progress.project_id, **ids},
            prompts=prompts,
            outputs=[location_dataset(destination)],
        )
        return ids

    def _rebuild(self, context: Context, hook: BabouHook) -> VideoProgress:
        """Find this task instance's project, chapters and prompts again (GETs only)."""
        marker = run_marker(context)
        name = check_name("project", self.project_name)
        project = find_run_project(hook, marker, name=name, since=run_since(context))
        if project is None:
            raise BabouError(
                f"cannot resume: no project carries this task's marker {marker}", hint="clear the task"
            )
        chapters = {c.name: c.id for c in hook.list_chapters(project.id)}
        progress = VideoProgress(deadline=time.time() + self.timeout, project_id=project.id, resubmitted=True)
        for spec in self._specs():
            chapter_id = chapters.get(spec.name)
            chapter = hook.get_chapter(project.id, chapter_id) if chapter_id else None
            prompt = chapter.rendering_prompt(spec.prompt) if chapter else None
            if chapter_id is None or prompt is None:
                raise BabouError(
                    f"cannot resume: chapter {spec.name!r} is missing in project {project.id}, or its "
                    "latest prompt is not this task's",
                    hint="clear the task to start over",
                )
            progress.chapters.append(
                ChapterProgress(name=spec.name, chapter_id=chapter_id, prompt_id=prompt.id)
            )
        # Unknown whether this try resubmitted a prompt: assume it did, so no stale export is reused.
        return progress

    def _wait_prompts(
        self, context: Context, hook: BabouHook, progress: VideoProgress, destination: Any
    ) -> dict[str, Any]:
        assert progress.project_id is not None
        for entry in progress.chapters:
            target = PromptTarget(progress.project_id, entry.chapter_id, entry.prompt_id)
            state = target.judge(hook.observe(target))
            if state.done and not state.succeeded:
                raise BabouJobFailedError(state.failure(f"{target.describe()} of chapter {entry.name!r}"))
            if not state.done:
                kwargs = {"progress": progress.model_dump(mode="json")}
                self.wait_for(
                    context,
                    hook,
                    target,
                    method_name="resume_prompts",
                    kwargs=kwargs,
                    end_time=progress.deadline,
                )
        reuse = not progress.resubmitted and try_number(context) > 1
        how, expected = start_or_attach_export(hook, progress.project_id, reuse_completed=reuse)
        self.log.info("Export of project %s %s", progress.project_id, how)
        return self._wait_export(context, hook, progress, destination, expected=expected)

    def _wait_export(
        self,
        context: Context,
        hook: BabouHook,
        progress: VideoProgress,
        destination: Any,
        *,
        expected: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        assert progress.project_id is not None
        target = ExportTarget(progress.project_id)
        export = hook.get_export(target.project_id)
        if not export.status.is_terminal:
            kwargs = {"progress": progress.model_dump(mode="json")}
            export = self.wait_for(
                context,
                hook,
                target,
                method_name="resume_export",
                kwargs=kwargs,
                end_time=progress.deadline,
                expected=expected,
            )
        if not export.status.is_success:
            raise BabouJobFailedError(export_state(export).failure(target.describe()))
        result = download(self, context, hook, target.project_id, destination, overwrite=self.overwrite)
        chapters = [c.model_dump(mode="json") for c in progress.chapters]
        return {
            "project_id": target.project_id,
            "chapters": chapters,
            "export": export.model_dump(mode="json"),
            **result,
        }
