"""What a plan yields: the instructions a sync or async driver carries out.

A *plan* (:data:`Plan`) is a generator that yields :class:`Call` (one API request, answered with
the ``httpx.Response``), :class:`Stream` (one download request, answered with a
:class:`~airflow_provider_babou.hooks._transfer.StreamOutcome`), :class:`Sleep` and
:class:`Blocking`, and returns its result. Failures come back into the plan as raised
:class:`~airflow_provider_babou.exceptions.BabouError`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow_provider_babou.hooks._transfer import DownloadState, UploadBody

T = TypeVar("T")

Plan = Generator[Any, Any, T]


@dataclass
class Call:
    """One HTTP request to the API, described without sending it.

    :param method: HTTP method.
    :param path: path below the base URL (``/projects``), or ``url`` for an absolute URL.
    :param retry: ``"auto"`` (GETs retry transient faults; POSTs only what surely did not take
        effect) or ``"never"`` (one attempt, e.g. ``test_connection``).
    """

    method: str
    path: str = ""
    url: str | None = None
    params: dict[str, Any] | None = None
    json: Any = None
    body: UploadBody | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: str = "auto"


@dataclass
class Sleep:
    """Wait this many seconds (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


@dataclass
class Blocking:
    """Run blocking filesystem work (inline when sync, in a worker thread when async)."""

    func: Callable[[], Any]


@dataclass
class Stream:
    """GET ``url`` into ``state`` from ``state.offset`` (with ``Range`` when resuming).

    The driver answers with a :class:`StreamOutcome`; an HTTP error status is reported, not
    raised, so the plan can decide (403 means an expired URL).
    """

    url: str
    state: DownloadState


def request_headers(call: Call) -> dict[str, str]:
    """Headers of one attempt: JSON or the upload's type and exact length (never auth)."""
    headers = dict(call.headers)
    if call.body is not None:
        headers["Content-Length"] = str(call.body.size)
    return headers
