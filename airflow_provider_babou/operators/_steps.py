"""The steps operators share, written once with one set of reuse rules.

Babou has no idempotency keys, so each step asks what already exists before writing:

* a project is found by this task instance's run marker (or by name), else created;
* a chapter is found by name, else created;
* a prompt with the same content that is processing or completed is attached to, else submitted;
* an export in flight is attached to, else started.

After an ambiguous create (the answer lost), the same check runs again within the try and the
create is re-sent only when nothing is there.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath

from airflow_provider_babou.exceptions import (
    BabouConflictError,
    BabouError,
    BabouInputError,
    BabouOutcomeUnknownError,
)
from airflow_provider_babou.links import BabouVideoLink
from airflow_provider_babou.models import Chapter, Project, PromptStatus, aware
from airflow_provider_babou.polling import expected_window
from airflow_provider_babou.storage import S3_SCHEMES, check_destination
from airflow_provider_babou.validation import DESCRIPTION_MAX

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.sdk import Context

    from airflow_provider_babou.hooks.babou import BabouHook

log = logging.getLogger(__name__)


def run_marker(context: Context, *, row: str | None = None) -> str:
    """Return the marker naming this task instance's run, e.g. ``[airflow:ab12cd34ef56]``.

    Derived from dag id, task id, run id and map index: every try of a task instance (retries and
    clears) gets the same marker, and different runs never share one. A campaign's ``row`` key
    replaces the map index: a row keeps its marker whichever chunk of the campaign holds it.
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    last = ("row", row) if row is not None else (str(-1 if map_index is None else map_index),)
    raw = "\x1f".join((str(ti.dag_id), str(ti.task_id), str(ti.run_id), *last))
    return f"[airflow:{hashlib.sha256(raw.encode()).hexdigest()[:12]}]"


def description_with_marker(description: str | None, marker: str) -> str:
    """Append the run marker, refusing (not truncating) a description that would get too long."""
    if not description:
        return marker
    full = f"{description} {marker}"
    if len(full) > DESCRIPTION_MAX:
        raise BabouInputError(
            f"project description is {len(description)} characters; with the run marker {marker!r} "
            f"it would exceed Babou's {DESCRIPTION_MAX}",
            hint=f"shorten it to {DESCRIPTION_MAX - len(marker) - 1} characters, or pass reuse='name'",
        )
    return full


def carries_marker(project: Project, marker: str, *, name: str | None = None) -> bool:
    """Whether ``project`` is the one of the run ``marker`` names: the marker is the last token of its
    description (as :func:`description_with_marker` puts it), and its name is ``name`` when given.

    A marker elsewhere in the text was copied there (another project's description), so not ours.
    """
    text = project.description or ""
    ends = text == marker or text.endswith(f" {marker}")
    return ends and (name is None or project.name == name)


#: Seconds of clock difference allowed between this machine and Babou when comparing ``created_at``.
CLOCK_SKEW = 600.0


def run_since(context: Context) -> float:
    """The dag run's ``run_after`` as UNIX time (0 when unknown): no try of the run came before it,
    and a clear keeps it, so what the run made in Babou is no older. A search for the run's marker
    stops there (:func:`marked_projects`): its cost is what was made since, not the account's
    history. (Even a first try searches: ``dag.test()`` re-runs a run with try 1 again.)"""
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return run_after.timestamp() if isinstance(run_after, datetime) else 0.0


def marked_projects(
    hook: BabouHook, markers: Collection[str], *, since: float, name: str | None = None
) -> dict[str, Project]:
    """The projects carrying any of ``markers`` (see :func:`carries_marker`), by marker, from one scan.

    The scan reads projects newest first (as Babou lists them) and stops at the first one created
    more than :data:`CLOCK_SKEW` before ``since``, so it costs what was made since, whatever the
    account holds; a listing that turns out not to be newest first is read to its end.
    """
    wanted, found = set(markers), {}
    floor = datetime.fromtimestamp(since - CLOCK_SKEW, timezone.utc) if since > 0 else None
    previous: datetime | None = None
    for project in hook.iter_projects():
        token = (project.description or "").rpartition(" ")[2]
        if token in wanted and token not in found and carries_marker(project, token, name=name):
            found[token] = project
            if len(found) == len(wanted):
                break
        if floor is None or project.created_at is None:
            continue
        created = aware(project.created_at, datetime.max)
        if previous is not None and created > previous:
            log.warning("Babou lists projects oldest first here: searching every page for the run marker")
            floor = None
        elif created < floor:
            break
        previous = created
    return found


def find_run_project(
    hook: BabouHook, marker: str, *, name: str | None = None, since: float = 0.0
) -> Project | None:
    """The project this run's ``marker`` names, made at or after ``since`` (UNIX time; 0: any time)."""
    return marked_projects(hook, [marker], since=since, name=name).get(marker)


def _create_or_find(
    hook: BabouHook,
    create: Callable[[], Any],
    find: Callable[[], Any] | None,
    what: str,
    *,
    look_first: bool = True,
) -> tuple[Any, bool]:
    """Return ``(found, True)`` or ``(created, False)``; an ambiguous create is checked, then re-sent,
    within one ``retry_deadline`` for the whole step (its requests' own retries included).

    :param look_first: look before the first create too (a retry); else only after a lost answer.
    """
    error: BabouOutcomeUnknownError | None = None
    with hook.retry_window():  # one retry deadline for the loop and every request in it
        for _ in hook.attempts():
            found = find() if find is not None and (look_first or error is not None) else None
            if found is not None:
                return found, error is None  # found after our own lost answer: we created it
            try:
                return create(), False
            except BabouOutcomeUnknownError as exc:
                if find is None:
                    raise
                error = exc
                log.warning(
                    "Creating %s: the answer was lost (%s); checking whether it exists", what, exc.message
                )
    assert error is not None
    raise error


def ensure_project(
    hook: BabouHook,
    *,
    name: str,
    description: str | None,
    settings: Any,
    reuse: str,
    marker: str | None,
    since: float | None = 0.0,
) -> tuple[Project, bool]:
    """Return the project to use and whether it already existed (``description`` carries ``marker``).

    :param since: with ``reuse="run"``, when an earlier try may have made the project
        (:func:`run_since`); ``None``: nothing to reconcile (a campaign's manifest says so), so no
        search unless an answer is lost.
    """
    find: Callable[[], Project | None] | None = None
    look_first = True
    if reuse == "run" and marker:
        marked, start = marker, time.time()
        look_first = since is not None
        find = lambda: find_run_project(hook, marked, name=name, since=start if since is None else since)  # noqa: E731
    elif reuse == "name":
        find = lambda: next(iter(hook.find_projects(name=name)), None)  # noqa: E731
    return _create_or_find(
        hook,
        lambda: hook.create_project(name=name, description=description, settings=settings),
        find,
        f"project {name!r}",
        look_first=look_first,
    )


def ensure_chapter(
    hook: BabouHook,
    project_id: str,
    *,
    name: str,
    duration: int | None,
    reuse: str = "name",
    new_project: bool = False,
) -> tuple[Chapter, bool]:
    """Return the project's chapter named ``name`` (``reuse="name"``), else create it.

    :param new_project: the project was just made by this try: nothing to find unless an answer is lost.
    """
    find = None
    if reuse == "name":
        find = lambda: next((c for c in hook.list_chapters(project_id) if c.name == name), None)  # noqa: E731
    return _create_or_find(
        hook,
        lambda: hook.create_chapter(project_id, name=name, duration=duration),
        find,
        f"chapter {name!r}",
        look_first=not new_project,
    )


def submit_or_attach(
    hook: BabouHook, project_id: str, chapter_id: str, content: str, *, force: bool, new_chapter: bool = False
) -> tuple[str, PromptStatus, bool, tuple[float, float] | None]:
    """Attach to the chapter's latest prompt if it has this content, or submit; return
    ``(prompt_id, status, reused, expected)``, ``expected`` when Babou estimates the prompt done
    (:func:`~.polling.expected_window` of the receipt; ``None`` when attached).

    Only the latest prompt is what an export renders, so only it is reused, and only while
    processing or completed (a retry never submits twice). An older prompt with this content, or a
    failed one, is submitted anew (a 409 if another prompt is in flight). A chapter this try just
    made has no prompt to attach to (``new_chapter``): submitted at once.
    """
    if not new_chapter:
        chapter = hook.get_chapter(project_id, chapter_id)
        latest = chapter.rendering_prompt(content)
        status = chapter.prompt_status(latest.id) if latest is not None else PromptStatus.UNKNOWN
        if latest is not None and status in (PromptStatus.PROCESSING, PromptStatus.COMPLETED):
            return latest.id, status, True, None
    started = time.time()
    try:
        receipt = hook.submit_prompt(project_id, chapter_id, content=content, force=force)
    except BabouConflictError as err:
        err.hint = (
            f"another prompt is still processing on chapter {chapter_id}; wait for it to finish, "
            "or pass force=True to cancel it and run this one"
        )
        raise
    return receipt.prompt_id, receipt.status, False, expected_window(receipt.estimated_time, started)


def start_or_attach_export(
    hook: BabouHook, project_id: str, *, reuse_completed: bool, first: bool = False
) -> tuple[str, tuple[float, float] | None]:
    """Make sure an export is in flight or done; say which (``attached``, ``reused`` or
    ``started``) and, once started, when Babou expects it done (:func:`~.polling.expected_window`).

    :param reuse_completed: take a completed export as this task's (a retry that changed nothing).
    :param first: the caller knows no export was ever asked for (see :meth:`BabouHook.start_export`).
    """
    if not first:
        if hook.get_project(project_id).active_export_id:
            return "attached", None
        if reuse_completed:
            export = hook.find_export(project_id)
            if export is not None and export.status.is_success:
                return "reused", None
    started = time.time()
    try:
        receipt = hook.start_export(project_id, first=first)
    except BabouConflictError:
        return "attached", None  # started meanwhile, e.g. by an earlier try whose answer was lost
    return "started", expected_window(receipt.estimated_time, started)


#: The default connection of a scheme whose Airflow file system, given none, would fall back on
#: something else (S3: boto's own credential chain, not ``aws_default`` as Airflow's hooks do).
DEFAULT_CONN_IDS = {scheme: "aws_default" for scheme in S3_SCHEMES}


def as_location(value: Any, conn_id: str | None = None) -> Any:
    """Turn a templated ``scheme://...`` string into an :class:`ObjectStoragePath`; keep anything else.

    :param conn_id: the connection of that storage; without it, the URL's own
        (``s3://conn_id@bucket/key``) or the scheme's default connection (``aws_default``).
    """
    if isinstance(value, str) and "://" in value:
        url = urlsplit(value)
        if not conn_id and "@" not in url.netloc:  # no connection named: the scheme's default one
            conn_id = DEFAULT_CONN_IDS.get(url.scheme)
        # Airflow 3.1 takes an explicit conn_id=None over the URL's own: pass it only when set.
        value = ObjectStoragePath(value, conn_id=conn_id) if conn_id else ObjectStoragePath(value)
    return value  # a ready-made ObjectStoragePath is the user's, storage options and all


def checked_destination(destination: Any, *, overwrite: bool, conn_id: str | None = None) -> Any:
    """Check a destination before any remote work: its missing parent directories are created and a
    probe file is written and removed beside it; an S3 bucket must exist (none is ever created)."""
    destination = as_location(destination, conn_id)
    check_destination(destination, overwrite=overwrite, create_parents=True)
    return destination


def download(
    operator: BaseOperator,
    context: Context,
    hook: BabouHook,
    project_id: str,
    destination: Any,
    *,
    overwrite: bool,
) -> dict[str, Any]:
    """Download the export, store the video link, emit the outlet Asset events; return the JSON result.

    The hook checks the export (completed) and the destination, once, before the first byte.
    """
    try:
        downloaded = hook.download_export(project_id, destination, overwrite=overwrite)
    except OSError as exc:  # the disk filled up, or permissions changed since the check
        raise BabouError(f"cannot write the video of project {project_id} to {destination}: {exc}") from exc
    BabouVideoLink.persist(context, downloaded.download_url)
    extra: dict[str, Any] = {
        "project_id": project_id,
        "size": downloaded.size,
        "sha256": downloaded.sha256,
        "path": downloaded.path,
    }
    outlet_events = context.get("outlet_events")
    if outlet_events is not None:
        for outlet in operator.outlets:
            if isinstance(outlet, Asset):
                outlet_events[outlet].extra = dict(extra)
    operator.log.info(
        "Downloaded %s (%d bytes, sha256 %s)", downloaded.path, downloaded.size, downloaded.sha256
    )
    return downloaded.model_dump(mode="json")
