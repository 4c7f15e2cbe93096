"""The response check ``benchmarks/many_waits.py`` gives ``HttpEventTrigger`` (its peer side).

``HttpEventTrigger`` takes the check as a dotted path and imports it (``importlib.reload`` when
already loaded) on every poll, so it lives in this tiny module rather than in the benchmark itself.
"""

from __future__ import annotations

from typing import Any


async def export_completed(response: Any) -> bool:
    """True once Get Export Status says ``completed`` (what a user would check)."""
    try:
        return response.json().get("status") == "completed"
    except ValueError:
        return False
