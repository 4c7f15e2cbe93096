"""Moving files: the streamed upload body and the state of a resumable download.

:func:`upload_body` checks an upload source (path, file object or ``ObjectStoragePath``: exists,
size, content type) and wraps it in a restartable :class:`UploadBody`. A download writes into a
:class:`DownloadState` (temporary file, offset, running SHA-256); :func:`begin_stream`,
:func:`end_stream` and :func:`range_headers` are the transport-independent halves of one
download request, :func:`prepare_destination` and :func:`finish_download` its start and end.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from airflow_provider_babou.exceptions import BabouError, BabouInputError, BabouTransportError
from airflow_provider_babou.limits import MAX_UPLOAD_BYTES, SUPPORTED_CONTENT_TYPES

CHUNK_SIZE = 256 * 1024
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


def upload_body(source: Any, content_type: str | None) -> tuple[UploadBody, str]:
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
    return body, content_type


# --------------------------------------------------------------------------- downloads


class DownloadState:
    """The partial file of a download: where it is, how much is in it, its running SHA-256."""

    def __init__(self, temp_path: Path) -> None:
        self.temp_path = temp_path
        self.file: IO[bytes] | None = None
        self.offset = 0
        self.total: int | None = None
        self.sha256 = hashlib.sha256()

    def open(self) -> None:
        """Create the temporary file (exclusive: two downloads never share one)."""
        self.file = open(self.temp_path, "xb")  # noqa: SIM115 - closed by close()

    def restart(self) -> None:
        """Forget what was written (the server ignored our ``Range``)."""
        assert self.file is not None
        self.file.seek(0)
        self.file.truncate()
        self.offset = 0
        self.sha256 = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append a chunk to the file and the checksum."""
        assert self.file is not None
        self.file.write(chunk)
        self.sha256.update(chunk)
        self.offset += len(chunk)

    def close(self) -> None:
        """Flush the data to disk and close the file."""
        if self.file is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def discard(self) -> None:
        """Close and delete the temporary file after a failure."""
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.temp_path.unlink(missing_ok=True)


@dataclass
class StreamOutcome:
    """How one download request ended."""

    status: int
    complete: bool
    error: BabouError | None = None


def prepare_destination(destination: Any, overwrite: bool) -> tuple[Path, Any | None]:
    """Return the local file to write and, for a remote ``ObjectStoragePath``, the object to fill."""
    if hasattr(destination, "protocol") and hasattr(destination, "open"):
        if _is_local(destination):
            return prepare_destination(Path(destination.path), overwrite)
        if destination.exists() and not overwrite:
            raise BabouInputError(f"{destination} already exists; pass overwrite=True to replace it")
        import tempfile

        local = Path(tempfile.mkdtemp(prefix="babou-download-")) / (destination.name or "export.mp4")
        return local, destination
    path = Path(os.fspath(destination))
    if path.is_dir():
        raise BabouInputError(f"{path} is a directory; give a file path for the video")
    if path.exists() and not overwrite:
        raise BabouInputError(f"{path} already exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise BabouInputError(f"cannot download to {path}: directory {path.parent} does not exist")
    return path, None


def temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{random.randrange(1 << 32):08x}.part")


def finish_download(state: DownloadState, local: Path, remote: Any | None) -> None:
    state.close()
    os.replace(state.temp_path, local)
    if remote is not None:
        import shutil

        try:
            with open(local, "rb") as src, remote.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)
        finally:
            local.unlink(missing_ok=True)
            local.parent.rmdir()


_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def begin_stream(response: httpx.Response, state: DownloadState) -> StreamOutcome | None:
    """Check a download response's status and range before reading its body.

    Returns an outcome to report at once (an error status), or ``None`` to go on reading.
    """
    status = response.status_code
    if status == 206:
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != state.offset:
            state.restart()  # a range we did not ask for: start over rather than corrupt the file
            return StreamOutcome(status, False, BabouTransportError("unexpected Content-Range", method="GET"))
        if match.group(3) != "*":
            state.total = int(match.group(3))
        return None
    if status == 200:
        if state.offset:
            state.restart()  # the server ignored Range and sends the whole file again
        length = response.headers.get("Content-Length")
        state.total = int(length) if length and length.isdigit() else None
        return None
    if status == 416 and state.total is not None and state.offset >= state.total:
        return StreamOutcome(status, True)
    return StreamOutcome(status, False, None)


def end_stream(status: int, state: DownloadState, method: str, url: str) -> StreamOutcome:
    """Judge a body that ended without a transport error: complete, or short (resume)."""
    if state.total is None or state.offset == state.total:
        return StreamOutcome(status, True)
    if state.offset > state.total:
        state.restart()
    return StreamOutcome(
        status,
        False,
        BabouTransportError(
            f"download ended at {state.offset} of {state.total} bytes",
            method=method,
            path=httpx.URL(url).path,
        ),
    )


def range_headers(state: DownloadState) -> dict[str, str]:
    """Headers of a download request: ``Range`` for the rest of a partial file."""
    # identity: byte offsets must refer to the file itself, not to a compressed encoding of it.
    headers = {"Accept-Encoding": "identity"}
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    return headers
