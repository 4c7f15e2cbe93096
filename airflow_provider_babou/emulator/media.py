"""The downloadable export video: the bundled sample MP4, optionally padded to any size.

Padding appends one top-level ``free`` box, which MP4 readers skip, so the file stays playable.
Bytes are produced on demand from the small sample and one shared zero buffer, so even a 1 GiB
download never sits in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from airflow_provider_babou.emulator.config import SAMPLE_MP4

CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)
_SAMPLE = SAMPLE_MP4.read_bytes()


def _free_box_header(size: int) -> bytes:
    """Header of a ``free`` box of ``size`` bytes in total (64-bit form when it needs it)."""
    if size < 2**32:
        return struct.pack(">I4s", size, b"free")
    return struct.pack(">I4sQ", 1, b"free", size)


class VirtualMp4:
    """A read-only MP4 of exactly ``size`` bytes (at least the sample's size)."""

    def __init__(self, size: int | None = None) -> None:
        self.size = len(_SAMPLE) if size is None else size
        pad = self.size - len(_SAMPLE)
        if pad < 0 or 0 < pad < 8:
            raise ValueError("size must equal the sample size or exceed it by at least 8 bytes")
        header = b"" if pad == 0 else _free_box_header(pad)
        self._head = _SAMPLE + header

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` in chunks of at most :data:`CHUNK`."""
        end = self.size if end is None else end
        pos = start
        head_len = len(self._head)
        while pos < head_len and pos < end:
            stop = min(end, head_len, pos + CHUNK)
            yield self._head[pos:stop]
            pos = stop
        while pos < end:
            n = min(CHUNK, end - pos)
            # Full chunks reuse the shared buffer without copying.
            yield _ZEROS if n == CHUNK else _ZEROS[:n]
            pos += n


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """Parse a single ``Range: bytes=...`` header.

    :returns: ``(start, end_exclusive)``; ``None`` to ignore the header (malformed or several
        ranges: the whole file is served); ``False`` when unsatisfiable (416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return False
            return max(0, size - suffix), size
        start = int(first)
        stop = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return False
    if stop <= start:
        return None
    return start, min(stop, size)
