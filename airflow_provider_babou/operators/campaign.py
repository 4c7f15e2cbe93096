"""Many personalised videos in one task: the campaign operator."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from airflow_provider_babou.campaign.manifest import WAITING, Manifest, RowRecord, describe_counts
from airflow_provider_babou.campaign.rows import Template, chunk, chunk_count, keys_of, load_rows, plan_rows
from airflow_provider_babou.campaign.work import CampaignWork
from airflow_provider_babou.exceptions import BabouCampaignError, BabouError, BabouInputError
from airflow_provider_babou.operators._common import BabouBaseOperator
from airflow_provider_babou.operators._steps import as_location, run_marker
from airflow_provider_babou.polling import PollPolicy, check_seconds
from airflow_provider_babou.storage import check_destination
from airflow_provider_babou.triggers.babou import DEFAULT_MIN_DEFERRAL, raise_for_event
from airflow_provider_babou.triggers.campaign import DEFAULT_BATCH_WINDOW, BabouCampaignTrigger
from airflow_provider_babou.validation import check_chapter_dicts

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_babou.campaign.rows import RowPlan
    from airflow_provider_babou.hooks.babou import BabouHook

#: Failed rows named in the task's error at most (the manifest has them all).
NAMED_FAILURES = 20


def campaign_chunks(rows: Any, *, key: str, chunk_size: int = 500, conn_id: str | None = None) -> list[int]:
    """The chunk numbers of a campaign split into tasks of ``chunk_size`` rows: map
    :class:`BabouCampaignOperator`'s ``chunk`` over them (``.expand(chunk=...)``). Reads the rows
    and checks every key first, so a bad key fails here, before any chunk starts; ``conn_id``: the
    connection of an object-storage URL."""
    size = _chunk_size(chunk_size)
    return list(range(chunk_count(len(keys_of(load_rows(rows, conn_id), key)), size)))


def _chunk_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BabouInputError(f"chunk_size must be a whole number >= 1, got {value!r}")
    return value


class BabouCampaignOperator(BabouBaseOperator):
    """Make one video per row, many rows in one task: writes on the worker, waits in the triggerer.

    Each row is one project, found again by its run marker (the row's key in it), with
    ``chapters`` filled from the row's columns (``{column}`` placeholders). The task:

    1. reads and checks every row before any request (keys present and unique, each video within
       Babou's limits, each destination writable); one error names every bad row;
    2. on the worker, creates the rows' projects, chapters and prompts, ``concurrency`` rows at a
       time through the key's one request budget;
    3. defers on one :class:`~..triggers.campaign.BabouCampaignTrigger` for all its rows' waits,
       resuming in batches (``batch_window``) to start exports of rows whose prompts are done and to
       download finished videos (``concurrency`` at a time, streamed), until no row is waiting;
    4. writes ``manifest`` (JSON Lines, one line per row key: stage, ids, path, size, sha256, error)
       throughout, and returns counts and its location only.

    A failed row (prompt or export failed in Babou, timeout, an error) does not stop the others; the
    task fails when more than ``max_failed_rows`` rows failed, naming them. A retry or a clear reads
    the manifest and redoes only the rows that are not done: failed prompts are sent again, done
    rows are never rendered again, and no project or chapter is made twice.

    :param rows: a list of dicts (e.g. an upstream task's XCom), or a path or object-storage URL of
        a ``.csv``, ``.jsonl`` or ``.json`` file.
    :param key: the column naming each row (unique, non-empty); it names the row's project marker.
    :param project_name: the project name template (1-30 characters once filled).
    :param chapters: ``[{"name", "prompt", "duration" (optional)}]``, names and prompts templates.
    :param destination: each row's MP4, a path or URL template, e.g. ``/videos/{customer_id}.mp4``.
    :param manifest: the manifest's path or URL; a chunk writes ``<stem>-<chunk>.jsonl`` beside it.
    :param description: an optional project description template (the row's marker is appended).
    :param dest_conn_id: the connection of object-storage ``destination`` and ``manifest`` strings.
    :param overwrite: replace existing videos, and start over from a manifest of another run.
    :param max_failed_rows: failed rows the task tolerates and still succeeds.
    :param chunk: this task's chunk number (see :func:`campaign_chunks`); ``None``: every row.
    :param chunk_size: rows per chunk.
    :param concurrency: rows worked on at once on the worker (writes and downloads).
    :param deferrable: wait in the triggerer (the default); ``False`` runs the same trigger in the task.
    :param poll_interval: first delay between two polls of a row, in seconds.
    :param batch_window: seconds from a row's wait ending to the task resuming for it (at most).
    :param min_deferral: seconds after a deferral before the task may resume (Airflow's executor race).
    :param timeout: seconds the whole campaign may take; rows still waiting then fail.
    """

    template_fields: Sequence[str] = (
        "rows",
        "project_name",
        "description",
        "chapters",
        "destination",
        "manifest",
        "dest_conn_id",
    )
    ui_color = "#e9d5ff"

    def __init__(
        self,
        *,
        rows: Any,
        key: str,
        project_name: str,
        chapters: list[dict[str, Any]],
        destination: str,
        manifest: Any,
        description: str | None = None,
        dest_conn_id: str | None = None,
        overwrite: bool = False,
        max_failed_rows: int = 0,
        chunk: int | None = None,
        chunk_size: int = 500,
        concurrency: int = 8,
        deferrable: bool = True,
        poll_interval: float = 2.0,
        batch_window: float = DEFAULT_BATCH_WINDOW,
        min_deferral: float = DEFAULT_MIN_DEFERRAL,
        timeout: float = 6 * 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rows, self.key, self.project_name, self.chapters = rows, key, project_name, chapters
        self.destination, self.manifest, self.description = destination, manifest, description
        self.dest_conn_id, self.overwrite, self.deferrable = dest_conn_id, overwrite, deferrable
        if isinstance(max_failed_rows, bool) or not isinstance(max_failed_rows, int) or max_failed_rows < 0:
            raise BabouInputError(f"max_failed_rows must be a whole number >= 0, got {max_failed_rows!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
            raise BabouInputError(f"concurrency must be a whole number from 1 to 64, got {concurrency!r}")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0):
            raise BabouInputError(f"chunk must be a whole number >= 0, got {chunk!r}")
        self.max_failed_rows, self.concurrency = max_failed_rows, concurrency
        self.chunk, self.chunk_size = chunk, _chunk_size(chunk_size)
        self.policy = PollPolicy(check_seconds("poll_interval", poll_interval), 1.5, max(30.0, poll_interval))
        self.batch_window = check_seconds("batch_window", batch_window, allow_zero=True)
        self.min_deferral = check_seconds("min_deferral", min_deferral, allow_zero=True)
        self.timeout = check_seconds("timeout", timeout)

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> dict[str, Any]:
        plans, manifest = self._prepare(context, new_try=True)
        now = time.time()
        return self._run(context, plans, manifest, deadline=now + self.timeout, started=now)

    def resume(self, context: Context, event: Any = None, **_: Any) -> dict[str, Any]:
        """Resume after the campaign trigger fired: record its outcomes, then go on."""
        raise_for_event(event)  # the trigger broke (an error event) or no event came
        carry = event.get("carry") or {}
        plans, manifest = self._prepare(context, new_try=False)
        with self.session() as hook:
            self._apply(hook, manifest, event.get("outcomes") or {})
        return self._run(context, plans, manifest, deadline=carry["deadline"], started=carry["started"])

    # ------------------------------------------------------------------ stages

    def _prepare(self, context: Context, *, new_try: bool) -> tuple[dict[str, RowPlan], Manifest]:
        """Read and check every row, and the manifest of earlier tries (before any request)."""
        if not isinstance(self.key, str) or not self.key:
            raise BabouInputError(f"key must name a column, got {self.key!r}")
        rows = load_rows(self.rows, self.dest_conn_id)
        keys = keys_of(rows, self.key)
        template = Template(
            self.project_name, self.description, check_chapter_dicts(self.chapters), self.destination
        )
        plans = {
            p.key: p
            for p in plan_rows(
                chunk(rows, self.chunk, self.chunk_size), chunk(keys, self.chunk, self.chunk_size), template
            )
        }
        location = as_location(self._manifest_name(), self.dest_conn_id)
        earlier = Manifest.read(location)
        markers = {k: run_marker(context, row=k) for k in plans}
        if earlier is not None and not self.overwrite:
            strangers = [r.key for r in earlier.rows.values() if markers.get(r.key) != r.marker]
            if strangers:
                raise BabouInputError(
                    f"the manifest {location} holds rows of another run or campaign (e.g. {strangers[0]!r})",
                    hint="give each run its own manifest (e.g. under {{ ds }}), or pass overwrite=True",
                )
        known = earlier.rows if earlier is not None and not self.overwrite else {}
        manifest = Manifest(location, [known.get(k) or RowRecord(key=k, marker=markers[k]) for k in plans])
        if new_try:
            for rec in manifest.rows.values():
                _retry_row(rec)
            self._check_destinations(plans, manifest)
            manifest.write()  # the manifest is writable, before any request
        return plans, manifest

    def _manifest_name(self) -> Any:
        if self.chunk is None:
            return self.manifest
        text = str(self.manifest)
        stem, dot, suffix = text.rpartition(".")
        if not dot or "/" in suffix:
            stem, suffix = text, ""
        return f"{stem}-{self.chunk:05d}{'.' + suffix if suffix else ''}"

    def _check_destinations(self, plans: dict[str, RowPlan], manifest: Manifest) -> None:
        """Every row's destination is writable; a row's own earlier video may be replaced."""
        for rec in manifest.rows.values():
            if rec.stage == "done":
                continue
            ours = rec.export_requested  # the video there may be this row's own, from a cut-off try
            check_destination(
                as_location(plans[rec.key].destination, self.dest_conn_id),
                overwrite=self.overwrite or ours,
                create_parents=True,
            )

    def _run(
        self,
        context: Context,
        plans: dict[str, RowPlan],
        manifest: Manifest,
        *,
        deadline: float,
        started: float,
    ) -> dict[str, Any]:
        with self.session() as hook:
            while True:
                CampaignWork(
                    hook,
                    plans,
                    manifest,
                    concurrency=self.concurrency,
                    dest_conn_id=self.dest_conn_id,
                    logger=self.log,
                ).run()
                self.log.info("Campaign: %s", describe_counts(manifest.counts()))
                waits = [
                    ["prompts" if r.stage == "prompting" else "export", str(r.project_id)]
                    for r in manifest.at(*WAITING)
                ]
                if not waits:
                    return self._finish(context, manifest, started)
                trigger = BabouCampaignTrigger(
                    self.babou_conn_id,
                    waits,
                    deadline,
                    batch_window=self.batch_window,
                    poll_interval=self.policy.interval,
                    poll_backoff=self.policy.backoff,
                    max_poll_interval=self.policy.max_interval,
                    not_before=time.time() + self.min_deferral if self.deferrable else None,
                    carry={"deadline": deadline, "started": started},
                )
                if self.deferrable:
                    self.record_deferring_try(context)
                    self.defer(trigger=trigger, method_name="resume", timeout=None)
                event = asyncio.run(_first_event(trigger))  # blocking: the same trigger, in this task
                raise_for_event(event)
                self._apply(hook, manifest, event["outcomes"])

    def _apply(self, hook: BabouHook, manifest: Manifest, outcomes: dict[str, Any]) -> None:
        """Move each row whose wait ended on: done waiting, or failed with Babou's reason."""
        by_project = {r.project_id: r for r in manifest.at(*WAITING)}
        for name, (status, message, download_url) in outcomes.items():
            kind, _, project_id = name.partition(":")
            rec = by_project.get(project_id)
            if rec is None:
                continue
            if status == "success":
                rec.stage, rec.download_url = (
                    ("prompted", None) if kind == "prompts" else ("exported", download_url)
                )
            elif kind == "prompts" and status == "failed":
                rec.fail("prompt", _prompt_failure(hook, rec) or message)
            else:
                rec.fail("prompt" if kind == "prompts" else "export", message or status)
        manifest.write()

    def _finish(self, context: Context, manifest: Manifest, started: float) -> dict[str, Any]:
        failed = manifest.at("failed")
        counts = manifest.counts()
        result: dict[str, Any] = {
            "rows": len(manifest.rows),
            "done": counts.get("done", 0),
            "failed": len(failed),
            "manifest": str(manifest),
        }
        self.log.info(
            "Campaign finished in %.0f s: %s; manifest %s",
            time.time() - started,
            describe_counts(counts),
            manifest,
        )
        # One Asset event per campaign, not per video: a thousand events would each be a row in
        # Airflow's database and could schedule a downstream run each; the manifest lists the videos.
        outlet_events = context.get("outlet_events")
        if outlet_events is not None:
            for outlet in self.outlets:
                if isinstance(outlet, Asset):
                    outlet_events[outlet].extra = {**result}
        if len(failed) > self.max_failed_rows:
            named = "; ".join(f"{r.key!r} ({r.failed_at}: {r.error})" for r in failed[:NAMED_FAILURES])
            more = f"; and {len(failed) - NAMED_FAILURES} more" if len(failed) > NAMED_FAILURES else ""
            raise BabouCampaignError(
                f"{len(failed)} of {len(manifest.rows)} rows failed: {named}{more}",
                hint=f"the manifest {manifest} has every row; a retry redoes only the rows not done",
            )
        return result


def _retry_row(rec: RowRecord) -> None:
    """A new try takes a failed row up again where it failed; a done row whose file is gone is
    downloaded again."""
    if rec.stage == "failed":
        rec.stage = {"export": "prompted", "download": "exported"}.get(rec.failed_at or "", "pending")
        if rec.stage == "pending" and rec.project_id is None:
            rec.chapter_ids, rec.prompt_ids = {}, {}
    elif rec.stage == "done" and rec.path and "://" not in rec.path and not os.path.exists(rec.path):
        rec.stage, rec.download_url = "exported", None


def _prompt_failure(hook: BabouHook, rec: RowRecord) -> str | None:
    """Babou's reason for the row's failed prompt, from its chapters (one GET each, failures only)."""
    assert rec.project_id is not None
    reasons = []
    try:
        for name, chapter_id in rec.chapter_ids.items():
            chapter = hook.get_chapter(rec.project_id, chapter_id)
            latest = chapter.prompts[-1] if chapter.prompts else None
            if latest is not None and chapter.prompt_status(latest.id).is_failure:
                reasons.append(f"chapter {name!r}: {latest.result or 'Babou gave no reason'}")
    except BabouError:
        return None
    return "; ".join(reasons) or None


async def _first_event(trigger: BabouCampaignTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise BabouError("the campaign trigger ended without an event")
