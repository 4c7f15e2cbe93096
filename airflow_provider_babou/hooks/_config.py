"""The auth that guards the key: :class:`BearerAuth`. The connection is resolved in
:mod:`airflow_provider_babou.connection` (:class:`ClientConfig` is re-exported here for ``_async``)."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from airflow_provider_babou import connection
from airflow_provider_babou.connection import ClientConfig

__all__ = ["BearerAuth", "ClientConfig"]


class BearerAuth(httpx.Auth):
    """Add the key to requests for the API's origin only (a CDN download URL never receives it).

    An auth *flow* rather than a client default header, so the check runs on every request.
    """

    def __init__(self, api_key: str, origin: tuple[str, str, int | None]) -> None:
        self._api_key = api_key
        self._origin = origin

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if connection.origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request
