"""Success bodies into models: JSON, single objects, tolerant list pages, and paging on."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from airflow_provider_babou.exceptions import BabouServerError
from airflow_provider_babou.hooks._errors import non_json_message
from airflow_provider_babou.models import BabouModel, Page, Pagination

M = TypeVar("M", bound=BabouModel)


def parse_json(response: httpx.Response, method: str) -> Any:
    """Decode a success body; a non-JSON 2xx is a server fault, reported clearly."""
    try:
        return response.json()
    except ValueError:
        raise BabouServerError(
            non_json_message(response, response.text),
            http_status=response.status_code,
            method=method,
            path=response.request.url.path,
        ) from None


def parse_model(model: type[M], response: httpx.Response, method: str) -> M:
    """Validate a success body against a model, with a typed error when the shape is wrong."""
    data = parse_json(response, method)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BabouServerError(
            f"unexpected {model.__name__} in the response: {exc.error_count()} problem(s): "
            f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
            http_status=response.status_code,
            method=method,
            path=response.request.url.path,
        ) from None


def parse_list(data: Any, key: str) -> tuple[list[Any], Pagination | None]:
    """Find the items of a list response: ``{key: [...]}``, ``{"data": [...]}`` or a bare array."""
    if isinstance(data, list):
        return data, None
    if not isinstance(data, dict):
        raise ValueError(f"expected a list or an object, got {type(data).__name__}")
    items = next((data[k] for k in (key, "data", "items") if isinstance(data.get(k), list)), None)
    if items is None:
        raise ValueError(f"no {key!r} or 'data' list in the response")
    pagination = data.get("pagination")
    try:
        page = Pagination.model_validate(pagination) if isinstance(pagination, dict) else None
    except ValidationError:
        page = None
    return items, page


def parse_page(model: type[M], response: httpx.Response, method: str, key: str) -> Page[M]:
    """Parse a list response tolerantly into a :class:`Page`."""
    data = parse_json(response, method)
    try:
        items, pagination = parse_list(data, key)
        return Page[model](items=[model.model_validate(i) for i in items], pagination=pagination)  # type: ignore[valid-type]
    except (ValueError, ValidationError) as exc:
        raise BabouServerError(
            f"unexpected list response: {exc}",
            http_status=response.status_code,
            method=method,
            path=response.request.url.path,
        ) from None


def next_offset(page: Page[Any], offset: int, limit: int) -> int | None:
    """The offset of the page after ``page``, or ``None`` when ``page`` was the last one."""
    if not page.items:
        return None
    nxt = offset + len(page.items)
    if page.pagination is not None:
        return nxt if nxt < page.pagination.total else None
    # Without pagination a short page is the last one; a full one may be followed by more.
    return nxt if len(page.items) >= limit else None
