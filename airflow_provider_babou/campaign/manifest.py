"""A campaign's manifest: one JSON line per row key, beside the videos, rewritten as rows progress.

It is the campaign's memory across deferrals, retries and clears (XCom is cleared with a retry; the
manifest is not): each row's stage, its Babou ids, where its video went, and why it failed. A retry
reads it and redoes only what is not done; the ids it holds spare every search in Babou.

Written whole each time (a local file through a temporary file and an atomic rename; an object
store's object by one PUT), so a reader never sees half a manifest.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.storage import is_remote

#: A row's stages, in order. ``prompted`` and ``exported`` are work for the worker (start the
#: export, download); ``prompting`` and ``exporting`` are waits for the triggerer.
STAGES = ("pending", "prompting", "prompted", "exporting", "exported", "done", "failed")
#: Stages the triggerer waits on, and the worker's work after each.
WAITING = frozenset({"prompting", "exporting"})


class RowRecord(BaseModel):
    """One row of the manifest (and of the campaign's state)."""

    key: str
    stage: str = "pending"
    marker: str
    #: UNIX time this row's first project create was sent: a retry searches no older project.
    started_at: float | None = None
    project_id: str | None = None
    chapter_ids: dict[str, str] = {}
    prompt_ids: dict[str, str] = {}
    #: Whether an export was ever asked for: until then the first one needs no status check.
    export_requested: bool = False
    path: str | None = None
    size: int | None = None
    sha256: str | None = None
    download_url: str | None = None
    #: Where the row failed (``prompt``, ``export``, ``download``, ``write``) and why.
    failed_at: str | None = None
    error: str | None = None

    def fail(self, where: str, error: str) -> None:
        """Mark the row failed at ``where`` with Babou's (or our) reason."""
        self.stage, self.failed_at, self.error = "failed", where, error


class Manifest:
    """The records of a campaign's rows, keyed by row key, and where they are kept.

    :param location: a local path or an :class:`~airflow.sdk.ObjectStoragePath`.
    """

    def __init__(self, location: Any, records: Iterable[RowRecord] = ()) -> None:
        self.location = location
        self.rows: dict[str, RowRecord] = {r.key: r for r in records}

    def __str__(self) -> str:
        return str(self.location)

    @classmethod
    def read(cls, location: Any) -> Manifest | None:
        """The manifest at ``location``, or ``None`` where there is none yet."""
        try:
            if is_remote(location):
                if not location.exists():
                    return None
                text = location.read_text(encoding="utf-8")
            else:
                with open(os.fspath(getattr(location, "path", location)), encoding="utf-8") as handle:
                    text = handle.read()
        except FileNotFoundError:
            return None
        try:
            records = [RowRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]
        except ValidationError as exc:
            raise BabouInputError(
                f"the campaign manifest {location} is not one this provider wrote: {exc.errors()[0]['msg']}",
                hint="point manifest= at a new file, or delete this one to start the campaign over",
            ) from None
        return cls(location, records)

    def write(self) -> None:
        """Write every record, whole (never half a file)."""
        text = "".join(r.model_dump_json() + "\n" for r in self.rows.values())
        if is_remote(self.location):
            with self.location.open("w", encoding="utf-8") as handle:
                handle.write(text)
            return
        path = os.fspath(getattr(self.location, "path", self.location))
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise

    def counts(self) -> dict[str, int]:
        """How many rows are at each stage (stages with none left out)."""
        found = Counter(r.stage for r in self.rows.values())
        return {stage: found[stage] for stage in STAGES if found[stage]}

    def at(self, *stages: str) -> list[RowRecord]:
        """The records at any of ``stages``, in row order."""
        return [r for r in self.rows.values() if r.stage in stages]


class Checkpoints:
    """Write the manifest at most every ``every`` seconds while rows progress (and log the counts),
    so a try cut off mid-way leaves the ids it made to the next one."""

    def __init__(self, manifest: Manifest, log: Any, *, every: float = 15.0, log_every: float = 60.0) -> None:
        self.manifest, self.log, self.every, self.log_every = manifest, log, every, log_every
        self._written = self._logged = time.monotonic()

    def tick(self) -> None:
        """Call after each row's step."""
        now = time.monotonic()
        if now - self._written >= self.every:
            self.manifest.write()
            self._written = now
        if now - self._logged >= self.log_every:
            self.log.info("Campaign progress: %s", describe_counts(self.manifest.counts()))
            self._logged = now


def describe_counts(counts: dict[str, int]) -> str:
    """``{"done": 3, "failed": 1}`` -> ``done 3, failed 1``."""
    return ", ".join(f"{stage} {n}" for stage, n in counts.items()) or "no rows"
