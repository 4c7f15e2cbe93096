"""Files, never HTTP: the streamed upload body, and the destination and partial file of a download.

:func:`upload_body` checks an upload source (path, binary file object or ``ObjectStoragePath``:
exists, size, content type) and wraps it in a restartable :class:`UploadBody`.
:func:`check_destination` refuses a destination that cannot be written before any request is made;
a download writes into a :class:`DownloadState` (a temporary file beside a local destination, or
the remote object itself; offset, running SHA-256), whose ``finish`` puts it in place atomically;
:class:`Pace` is the minimum speed each download request must keep.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import mimetypes
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from airflow_provider_babou.exceptions import BabouDownloadStalledError, BabouInputError, BabouServerError
from airflow_provider_babou.limits import MAX_UPLOAD_BYTES, SUPPORTED_CONTENT_TYPES

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
# A download to object storage buffers one part of this size before uploading it (s3fs's default is
# 50 MiB, ~150 MiB of peak RSS): 8 MiB, the AWS CLI's part size, allows objects up to 78 GiB in S3's
# 10,000 parts and costs ~30 MiB (benchmarks/s3_results.md).
UPLOAD_PART_SIZE = 8 * 1024 * 1024
# Spellings that ``mimetypes`` (or users) produce for the same formats.
_CONTENT_TYPE_ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-aac": "audio/aac",
    "audio/mp3": "audio/mpeg",
    "image/jpg": "image/jpeg",
    "video/avi": "video/x-msvideo",
}


# --------------------------------------------------------------------------- uploads


class UploadBody:
    """A restartable streamed upload body: a path, a file object or an ``ObjectStoragePath``.

    Each attempt calls :meth:`open` for a fresh stream positioned at the start, so a retried
    upload re-sends the same bytes. At most ``size`` bytes are sent whatever the file does.
    """

    def __init__(self, opener: Callable[[], IO[bytes]], size: int, *, closes: bool, restartable: bool):
        self._opener = opener
        self.size = size
        self.content_type = "application/octet-stream"
        self.closes = closes
        self.restartable = restartable

    def open(self) -> IO[bytes]:
        """Return a stream positioned at the first byte of the upload."""
        return self._opener()

    def chunks(self) -> Iterator[bytes]:
        """Yield the body in chunks (sync transport)."""
        stream = self.open()
        try:
            remaining = self.size
            while remaining > 0:
                chunk = stream.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            if self.closes:
                stream.close()


def normalize_content_type(value: str) -> str:
    """Lower-case a MIME type, drop parameters and map common aliases (``audio/x-wav``)."""
    base = value.split(";")[0].strip().lower()
    return _CONTENT_TYPE_ALIASES.get(base, base)


def _is_local(path: Any) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def upload_body(source: Any, content_type: str | None) -> UploadBody:
    """Check an upload source (exists, regular file, size, type) and make its streamed body."""
    name: str | None
    if isinstance(source, (str, os.PathLike)) and not hasattr(source, "protocol"):
        path = Path(os.fspath(source))
        if not path.exists():
            raise BabouInputError(f"cannot upload {path}: no such file")
        if not path.is_file():
            raise BabouInputError(f"cannot upload {path}: not a regular file")
        size, name = path.stat().st_size, path.name
        body = UploadBody(lambda: open(path, "rb"), size, closes=True, restartable=True)  # noqa: SIM115
    elif hasattr(source, "protocol") and hasattr(source, "open"):  # an ObjectStoragePath
        if _is_local(source):
            return upload_body(Path(source.path), content_type)
        if not source.exists():
            raise BabouInputError(f"cannot upload {source}: no such object")
        if not source.is_file():
            raise BabouInputError(f"cannot upload {source}: not a file")
        size, name = int(source.stat().st_size), source.name
        body = UploadBody(lambda: source.open("rb"), size, closes=True, restartable=True)
    elif hasattr(source, "read"):
        if isinstance(source, io.TextIOBase) or "b" not in getattr(source, "mode", "b"):
            raise BabouInputError(
                "cannot upload a text-mode file object: media must be sent as bytes",
                hint="open the file with open(path, 'rb'), or pass its path",
            )
        name = os.path.basename(str(getattr(source, "name", "") or "")) or None
        try:
            start = source.tell()
            size = source.seek(0, os.SEEK_END) - start
            source.seek(start)
        except (OSError, AttributeError, ValueError):
            raise BabouInputError(
                "cannot upload a non-seekable file object: its size must be known before sending",
                hint="pass a path or a seekable file",
            ) from None

        def rewind() -> IO[bytes]:
            source.seek(start)
            return source

        body = UploadBody(rewind, size, closes=False, restartable=True)
    else:
        raise BabouInputError(
            f"cannot upload a {type(source).__name__}: "
            "pass a path, a binary file object or an ObjectStoragePath"
        )
    if content_type is None:
        guessed = mimetypes.guess_type(name or "")[0] if name else None
        if guessed is None:
            raise BabouInputError(
                f"cannot guess the content type of {name or 'the file object'}",
                hint="pass content_type=, e.g. 'video/mp4'",
            )
        content_type = guessed
    content_type = normalize_content_type(content_type)
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise BabouInputError(
            f"unsupported content type {content_type!r}",
            hint="Babou accepts " + ", ".join(sorted(SUPPORTED_CONTENT_TYPES)),
        )
    if size > MAX_UPLOAD_BYTES:
        raise BabouInputError(
            f"file is {size} bytes; Babou accepts at most {MAX_UPLOAD_BYTES} bytes (100 MiB) per upload"
        )
    if size == 0:
        raise BabouInputError("cannot upload an empty file")
    body.content_type = content_type
    return body


# --------------------------------------------------------------------------- downloads


def is_remote(destination: Any) -> bool:
    """Whether ``destination`` is an ``ObjectStoragePath`` outside the local file system."""
    return hasattr(destination, "protocol") and hasattr(destination, "open") and not _is_local(destination)


def check_destination(
    destination: Any, *, overwrite: bool, create_parents: bool = False
) -> tuple[Path | None, Any]:
    """Refuse a destination the video could not be written to, before anything is created or rendered.

    :return: ``(local file, None)``, or ``(None, object)`` for a remote ``ObjectStoragePath``.
    """
    if destination is None or (isinstance(destination, str) and not destination.strip()):
        raise BabouInputError("destination is empty", hint="pass a file path such as /tmp/video.mp4")
    if is_remote(destination):
        try:
            _check_bucket(destination)
            is_dir, exists = destination.is_dir(), destination.exists()
        except BabouInputError:
            raise
        except Exception as exc:  # botocore's and fsspec's own words, typed
            raise BabouInputError(f"cannot write {destination}: {type(exc).__name__}: {exc}") from None
        if is_dir:
            raise BabouInputError(f"destination {destination} is a directory", hint="pass a file path")
        if not overwrite and exists:
            raise BabouInputError(f"destination {destination} already exists", hint="pass overwrite=True")
        return None, destination
    if hasattr(destination, "protocol"):
        destination = destination.path
    if not isinstance(destination, (str, os.PathLike)):
        raise BabouInputError(
            f"destination must be a path or an ObjectStoragePath, got {type(destination).__name__}"
        )
    path = Path(os.fspath(destination)).absolute()
    if "\x00" in str(path):  # pathlib calls such a path "not there"; open() would raise ValueError
        raise BabouInputError(f"destination {str(path)!r} contains a NUL character")
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as exc:  # e.g. ENAMETOOLONG: pathlib hides only "not found"-like errors
        raise BabouInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if is_dir:
        raise BabouInputError(f"destination {path} is a directory", hint="give a file path for the video")
    if exists and not overwrite:
        raise BabouInputError(f"destination {path} already exists", hint="pass overwrite=True to replace it")
    existing = path.parent
    while not existing.exists() and create_parents and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BabouInputError(f"cannot write {path}: {existing} does not exist or is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BabouInputError(f"cannot write {path}: no write permission on {existing}")
    longest = max(len(os.fsencode(part)) for part in path.parts)
    if longest > os.pathconf(existing, "PC_NAME_MAX") - 40:  # room for the temporary file's suffix
        raise BabouInputError(f"cannot write {path}: a name in it is too long for the file system")
    _probe(path, create_parents)
    return path, None


def _probe(path: Path, create_parents: bool) -> None:
    """Prove ``path`` writable: create its parents (when allowed) and a temporary file beside it.

    Permission bits do not tell (root passes them all, ``/proc`` refuses everyone): only writing
    does. The probe is removed at once; created parent directories stay, empty.
    """
    probe = path.with_name(f".{path.name}.{os.getpid()}.{random.randrange(1 << 32):08x}.probe")
    try:
        if create_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BabouInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    probe.unlink(missing_ok=True)


#: S3's bucket naming rules (3-63 lower-case letters, digits, dots and hyphens).
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_SCHEMES = ("s3", "s3a", "s3n")


def _check_bucket(destination: Any) -> None:
    """An S3 destination's bucket must be well named and exist: a download never creates one."""
    if destination.protocol not in S3_SCHEMES:
        return
    bucket = str(destination.path).lstrip("/").partition("/")[0]
    if not _S3_BUCKET.fullmatch(bucket) or ".." in bucket:
        raise BabouInputError(
            f"destination {destination}: {bucket!r} is not a valid S3 bucket name",
            hint="3-63 lower-case letters, digits, dots and hyphens; first and last a letter or digit",
        )
    if not destination.fs.exists(bucket):
        raise BabouInputError(
            f"destination {destination}: the bucket {bucket!r} does not exist (or this connection "
            "cannot see it)",
            hint="create the bucket first (the download never creates one), or fix dest_conn_id",
        )


class Pace:
    """At least ``min_speed`` bytes/s over each ``window`` seconds of one download request."""

    def __init__(self, min_speed: float, window: float, received: int) -> None:
        self.min_speed, self.window = min_speed, window
        self.mark, self.mark_bytes = time.monotonic(), received

    def check(self, received: int, path: str) -> None:
        """Raise :class:`BabouDownloadStalledError` if the window that just ended was too slow."""
        now = time.monotonic()
        if now - self.mark < self.window:
            return
        moved = received - self.mark_bytes
        if moved < self.min_speed * (now - self.mark):
            raise BabouDownloadStalledError(
                f"download too slow: {moved} bytes in {now - self.mark:.0f} s, under the minimum "
                f"of {self.min_speed:g} bytes/s",
                method="GET",
                path=path,
                hint="the server is trickling; lower min_speed or raise speed_window if this is expected",
            )
        self.mark, self.mark_bytes = now, received


class DownloadState:
    """Where a download's bytes go, how many went and their running SHA-256.

    A local destination fills a temporary file beside it, moved into place by :meth:`finish`.
    A remote ``ObjectStoragePath`` is written as the bytes arrive, with no local copy: fsspec's
    object-store files buffer one block (:data:`UPLOAD_PART_SIZE`) and upload it as a part (s3fs:
    a multipart upload), and the object appears only when :meth:`finish` closes the file.
    :meth:`discard` cancels it instead (s3fs aborts the multipart upload, gcsfs the resumable
    one; adlfs's staged blocks are never committed), so a failed download leaves nothing visible.
    A process killed mid-way leaves an invisible incomplete upload (S3: expired by the bucket's
    lifecycle rule for incomplete multipart uploads).
    """

    def __init__(self, local: Path | None, remote: Any = None) -> None:
        self.remote = remote
        self.temp_path = None
        if local is not None:
            self.temp_path = local.with_name(
                f".{local.name}.{os.getpid()}.{random.randrange(1 << 32):08x}.part"
            )
        self.file = self._open()
        self.offset = 0
        self.received = 0  # every byte written, restarts included: what the pace is measured on
        self.head = b""  # the first bytes, to tell an MP4
        self.total: int | None = None
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.sha256 = hashlib.sha256()

    def identify(self, total: int | None, headers: Any) -> None:
        """Remember what the whole file's answer said it is: size, ``ETag``, ``Last-Modified``."""
        self.total = total
        self.etag = headers.get("ETag") or None
        self.last_modified = headers.get("Last-Modified") or None

    def validator(self) -> str | None:
        """The ``If-Range`` value: a strong ``ETag``, else ``Last-Modified``, else ``None``."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def resumable(self) -> bool:
        """Whether a ``Range`` request can be proven to continue this same file: its size and a
        validator are known (sent as ``If-Range``). The same size alone proves nothing: the URL names
        the project, and a newer export of the same length may be behind it now."""
        return self.total is not None and self.validator() is not None

    def same_file(self, total: int | None, headers: Any) -> bool:
        """Whether a partial answer is of the file begun: same size and the same validators."""
        return (
            total == self.total
            and (self.etag is None or headers.get("ETag") == self.etag)
            and (self.last_modified is None or headers.get("Last-Modified") == self.last_modified)
        )

    def check_video(self, pid: str) -> None:
        """Refuse what is not an MP4 (an ``ftyp`` box first) before it is put in place."""
        if self.offset == 0:
            raise BabouServerError(f"the download of project {pid} is empty: Babou sent no video")
        if self.head[4:8] != b"ftyp":
            raise BabouServerError(
                f"the download of project {pid} is not an MP4 ({self.offset} bytes starting "
                f"{self.head[:12]!r}, no 'ftyp' box)",
                hint="export the project again; report it to Babou if it persists",
            )

    def _open(self) -> Any:
        if self.temp_path is not None:
            return open(self.temp_path, "xb")
        # The fsspec file itself, not ObjectStoragePath.open()'s wrapper: _cancel() must mark it closed.
        return self.remote.fs.open(self.remote.path, "wb", block_size=UPLOAD_PART_SIZE)

    def _cancel(self) -> None:
        """Abandon the remote object being written, leaving nothing visible."""
        try:
            self.file.discard()
        finally:
            # close() would commit what is buffered (fsspec files commit on close), and so would
            # the file's __del__: a file marked closed is left alone. memory://'s files (BytesIO)
            # cannot be marked, and show what was written since they were opened.
            with contextlib.suppress(AttributeError):
                self.file.closed = True

    def restart(self) -> None:
        """Forget what was written (the server ignored our ``Range``, or sent a range we did not ask for)."""
        if self.temp_path is not None:
            self.file.seek(0)
            self.file.truncate()
        else:  # an object being uploaded cannot be rewound: start a new one
            self._cancel()
            self.file = self._open()
        self.offset = 0
        self.head = b""
        self.total = self.etag = self.last_modified = None
        self.sha256 = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append a chunk to the file and the checksum."""
        self.file.write(chunk)
        self.sha256.update(chunk)
        if len(self.head) < 12:
            self.head = (self.head + chunk)[:12]
        self.offset += len(chunk)
        self.received += len(chunk)

    def discard(self) -> None:
        """Delete the temporary file, or cancel the remote object, after a failure."""
        if self.temp_path is None:
            try:
                self._cancel()
            except Exception as exc:  # the error that brought us here is the one to report
                log.warning("Could not cancel the upload to %s: %s", self.remote, exc)
        else:
            self.file.close()
            self.temp_path.unlink(missing_ok=True)

    def finish(self, local: Path | None, *, overwrite: bool) -> None:
        """Put the file in place; without ``overwrite``, a destination that appeared meanwhile is refused."""
        try:
            if self.temp_path is None:
                if not overwrite and self.remote.exists():
                    raise FileExistsError(str(self.remote))
                self.file.close()  # uploads the last part and completes the object
                return
            assert local is not None
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            try:
                if overwrite:
                    os.replace(self.temp_path, local)
                else:
                    # link() fails if the name exists: two downloads to one path cannot both "win".
                    os.link(self.temp_path, local)
            finally:
                self.temp_path.unlink(missing_ok=True)
        except FileExistsError:
            raise BabouInputError(
                f"destination {self.remote or local} appeared while downloading", hint="pass overwrite=True"
            ) from None
