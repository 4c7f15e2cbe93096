"""Peak-memory readings shared by the benchmarks (Linux ``/proc``; ``ru_maxrss`` elsewhere)."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak RSS in MiB: ``VmHWM`` (resettable), else ``ru_maxrss`` (KiB on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS, so import-time spikes cannot hide what is measured."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
