"""The worker's side of a campaign: every row's writes and download, many at once, through one budget.

A pass takes each row as far as the worker can without waiting: ``pending`` rows get their
project, chapters and prompts (-> ``prompting``), ``prompted`` rows their export (-> ``exporting``),
``exported`` rows their download (-> ``done``). Rows run in a thread pool on the task's one hook:
its keep-alive client and the key's request budget are shared, so the pool goes as fast as the key
allows and no faster. Each write follows the reuse rules of :mod:`~..operators._steps`.

Before a pass sends anything, the manifest records which rows are about to be created or exported,
so a try cut off at any point leaves the next one able to tell what may exist: only those rows are
searched for (one bounded scan for all of them), and a first export skips its status check only
when no earlier try can have asked for one.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from airflow_provider_babou.campaign.manifest import Checkpoints, Manifest, RowRecord
from airflow_provider_babou.exceptions import BabouAuthError, BabouError
from airflow_provider_babou.models import Export, ExportStatus
from airflow_provider_babou.operators._steps import (
    as_location,
    description_with_marker,
    ensure_chapter,
    ensure_project,
    marked_projects,
    start_or_attach_export,
    submit_or_attach,
)

if TYPE_CHECKING:
    from airflow_provider_babou.campaign.rows import RowPlan
    from airflow_provider_babou.hooks.babou import BabouHook

log = logging.getLogger(__name__)

#: What a pass does at each stage, and the stage's name in a failure.
_FAILS_AT = {"pending": "prompt", "prompted": "export", "exported": "download"}


class CampaignWork:
    """One pass of worker steps over a campaign's rows.

    :param concurrency: rows worked on at once (threads); the key's budget paces their requests.
    """

    def __init__(
        self,
        hook: BabouHook,
        plans: dict[str, RowPlan],
        manifest: Manifest,
        *,
        concurrency: int,
        dest_conn_id: str | None,
        logger: Any = log,
    ) -> None:
        self.hook, self.plans, self.manifest = hook, plans, manifest
        self.concurrency, self.dest_conn_id, self.log = concurrency, dest_conn_id, logger

    def run(self) -> None:
        """Take every row as far as it goes without waiting; failures stay in their rows."""
        todo = self.manifest.at("pending", "prompted", "exported")
        if not todo:
            return
        found = self._search(todo)
        now, first_exports = time.time(), set()
        for rec in todo:
            if rec.stage == "pending" and rec.project_id is None and rec.key not in found:
                rec.started_at = rec.started_at or now
            if rec.stage == "prompted" and not rec.export_requested:
                first_exports.add(rec.key)
                rec.export_requested = True
        self.manifest.write()  # before any write: the next try knows what may exist
        checkpoints = Checkpoints(self.manifest, self.log)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="babou-campaign") as pool:
            futures = [pool.submit(self._advance, rec, found, rec.key in first_exports) for rec in todo]
            try:
                for future in as_completed(futures):
                    future.result()
                    checkpoints.tick()
            finally:
                for future in futures:
                    future.cancel()
                self.manifest.write()

    def _search(self, todo: list[RowRecord]) -> dict[str, Any]:
        """Rows whose project an earlier try may have made unseen, found in one bounded scan."""
        unsure = [r for r in todo if r.stage == "pending" and r.project_id is None and r.started_at]
        if not unsure:
            return {}
        since = min(r.started_at or 0.0 for r in unsure)
        by_marker = marked_projects(self.hook, [r.marker for r in unsure], since=since)
        self.log.info("Found %d of %d projects an earlier try may have made", len(by_marker), len(unsure))
        return {r.key: by_marker[r.marker] for r in unsure if r.marker in by_marker}

    def _advance(self, row: RowRecord, found: dict[str, Any], first_export: bool) -> None:
        # On a copy, put back whole when the step ends: the manifest is written meanwhile from
        # the pool's caller, and must never see a record half-changed by another thread.
        rec, stage = row.model_copy(deep=True), row.stage
        try:
            if stage == "pending":
                self._prompts(rec, self.plans[rec.key], found.get(rec.key))
            elif stage == "prompted":
                assert rec.project_id is not None
                start_or_attach_export(self.hook, rec.project_id, reuse_completed=False, first=first_export)
                rec.stage = "exporting"
            elif stage == "exported":
                self._download(rec, self.plans[rec.key])
        except BabouAuthError:
            raise  # every row would fail the same way: stop the campaign
        except BabouError as err:
            rec.fail(_FAILS_AT[stage], str(err))
            self.log.warning("Row %r failed at %s: %s", rec.key, _FAILS_AT[stage], err)
        self.manifest.rows[rec.key] = rec  # an existing key: the dict's size never changes

    def _prompts(self, rec: RowRecord, plan: RowPlan, found: Any) -> None:
        """Project, chapters and prompts of one row; a row made by this pass is never searched."""
        hook, new = self.hook, False
        if rec.project_id is None:
            project = found
            if project is None:
                description = description_with_marker(plan.description, rec.marker)
                project, reused = ensure_project(
                    hook,
                    name=plan.name,
                    description=description,
                    settings=None,
                    reuse="run",
                    marker=rec.marker,
                    since=None,
                )
                new = not reused
            rec.project_id = project.id
        for chapter in plan.chapters:
            chapter_id = rec.chapter_ids.get(chapter.name)
            made = False
            if chapter_id is None:
                made_chapter, existed = ensure_chapter(
                    hook, rec.project_id, name=chapter.name, duration=chapter.duration, new_project=new
                )
                chapter_id, made = made_chapter.id, not existed
                rec.chapter_ids[chapter.name] = chapter_id
            prompt_id, _, _, _ = submit_or_attach(
                hook, rec.project_id, chapter_id, chapter.prompt, force=False, new_chapter=made
            )
            rec.prompt_ids[chapter.name] = prompt_id
        rec.stage, rec.failed_at, rec.error = "prompting", None, None

    def _download(self, rec: RowRecord, plan: RowPlan) -> None:
        assert rec.project_id is not None
        export = None
        if rec.download_url:  # the trigger just read it: no GET before the first byte
            export = Export(status=ExportStatus.COMPLETED, download_url=rec.download_url)
        destination = as_location(plan.destination, self.dest_conn_id)
        # The campaign checked this destination before its first request; a file there now is
        # this row's own video from a try cut off before the manifest said so.
        result = self.hook.download_export(rec.project_id, destination, overwrite=True, export=export)
        rec.path, rec.size, rec.sha256 = result.path, result.size, result.sha256
        rec.stage, rec.failed_at, rec.error = "done", None, None
