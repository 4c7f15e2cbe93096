"""The downloadable export video: an MP4 file on disk, optionally padded to any size.

Padding appends one top-level ``free`` box, which MP4 readers skip, so the file stays playable.
Bytes are read on demand from the file (a small rendered video, or the bundled sample) and one
shared zero buffer, so even a 1 GiB download never sits in memory.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)
_MIN_FREE_BOX = 8  # the smallest top-level MP4 box


def _free_box_header(size: int) -> bytes:
    """Header of a ``free`` box of ``size`` bytes in total (64-bit form when it needs it)."""
    if size < 2**32:
        return struct.pack(">I4s", size, b"free")
    return struct.pack(">I4sQ", 1, b"free", size)


class VirtualMp4:
    """The read-only MP4 at ``path``, padded to ``size`` bytes.

    Padding needs room for a box: a ``size`` under the file's size + 8 serves the file as it is.
    The file is opened here and held until :meth:`close`, so deleting it (an emulator reset) does
    not cut a response that is being served.

    :raises FileNotFoundError: the file is gone already.
    """

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = path
        self._handle = path.open("rb")
        self._file_size = os.fstat(self._handle.fileno()).st_size
        pad = 0 if size is None else size - self._file_size
        self._free = _free_box_header(pad) if pad >= _MIN_FREE_BOX else b""
        self.size = self._file_size + (pad if self._free else 0)

    def close(self) -> None:
        """Release the file."""
        self._handle.close()

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` in chunks of at most :data:`CHUNK`."""
        end = self.size if end is None else end
        pos = start
        if pos < self._file_size and pos < end:
            # A small local file: reads of at most a chunk cost microseconds on the event loop.
            while pos < self._file_size and pos < end:
                data = os.pread(self._handle.fileno(), min(end, self._file_size, pos + CHUNK) - pos, pos)
                if not data:
                    raise OSError(f"{self.path} shrank while being served")
                yield data
                pos += len(data)
        header_end = self._file_size + len(self._free)
        if pos < header_end and pos < end:
            stop = min(end, header_end)
            yield self._free[pos - self._file_size : stop - self._file_size]
            pos = stop
        while pos < end:
            n = min(CHUNK, end - pos)
            # Full chunks reuse the shared buffer without copying.
            yield _ZEROS if n == CHUNK else _ZEROS[:n]
            pos += n


_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)


def parse_range(header: str, size: int) -> tuple[int, int] | Literal[False] | None:
    """Parse a single ``Range: bytes=first-last`` header, strictly as RFC 9110 section 14.1.2 writes it.

    :returns: ``(start, end_exclusive)``; ``None`` to ignore the header (absent, syntactically
        invalid such as ``bytes= 1 - 3`` or ``bytes=+1-3``, or several ranges: the whole file is
        served, as section 14.2 says); ``False`` when unsatisfiable (416).
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix <= 0:
            return False
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None  # last-pos before first-pos: invalid, so ignored
    if start >= size:
        return False
    return start, min(int(last) + 1 if last else size, size)
