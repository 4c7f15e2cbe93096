"""``BabouHook._pages`` (``iter_projects``/``iter_assets``) against scripted list answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_babou.exceptions import BabouServerError
from airflow_provider_babou.hooks import babou
from tests.unit.script import Script, Step, ok, scripted_hook


@pytest.fixture(autouse=True)
def _few_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list that fails to stop fails in 50 pages here, not after the real guard's 10,000."""
    monkeypatch.setattr(babou, "MAX_PAGES", 50)


def projects(start: int, count: int) -> list[dict[str, Any]]:
    return [{"id": f"prj_{i}", "name": f"p{i}"} for i in range(start, start + count)]


def assets(start: int, count: int) -> list[dict[str, Any]]:
    return [{"id": f"ast_{i}", "state": "ready"} for i in range(start, start + count)]


def offsets(script: Script) -> list[tuple[int, int]]:
    """``(limit, offset)`` of every list request."""
    return [(int(r.url.params["limit"]), int(r.url.params["offset"])) for r in script.requests]


def server(items: Callable[[int, int], list[dict[str, Any]]], key: str, total: int | None, size: int) -> Any:
    """A list endpoint honouring limit/offset over ``size`` items (``total`` as it reports it)."""

    def answer(request: httpx.Request) -> httpx.Response:
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        page = items(offset, max(0, min(limit, size - offset)))
        body: dict[str, Any] = {key: page}
        if total is not None:
            body["pagination"] = {"limit": limit, "offset": offset, "total": total}
        return ok(body)

    return answer


def test_a_server_ignoring_offset_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    same = ok({"projects": projects(0, 2), "pagination": {"limit": 2, "offset": 0, "total": 10}})
    script = Script(Step("GET", "/projects", same, forever=True))
    hook = scripted_hook(monkeypatch, script)
    pages = hook.iter_projects(page_size=2)
    seen = [next(pages).id, next(pages).id]
    with pytest.raises(BabouServerError, match="same page twice") as info:
        next(pages)
    assert seen == ["prj_0", "prj_1"]  # each item once, then the repeat is refused
    assert len(script.requests) == 2
    assert "offset" in (info.value.hint or "")


def test_a_server_ignoring_offset_without_a_total_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/assets", ok(assets(0, 3)), forever=True))  # a bare, full page forever
    with pytest.raises(BabouServerError):
        list(scripted_hook(monkeypatch, script).iter_assets(page_size=3))
    assert len(script.requests) == 2


def test_a_list_that_never_ends_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(babou, "MAX_PAGES", 5)
    endless = server(projects, "projects", None, 10**9)  # new items forever, no total
    script = Script(Step("GET", "/projects", endless, forever=True))
    with pytest.raises(BabouServerError, match="did not end after 5 pages"):
        list(scripted_hook(monkeypatch, script).iter_projects(page_size=3))
    assert len(script.requests) == 6


def test_the_total_ends_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # Full pages all along: only the reported total says when to stop.
    script = Script(Step("GET", "/projects", server(projects, "projects", 6, 10**9), forever=True))
    listed = [p.id for p in scripted_hook(monkeypatch, script).iter_projects(page_size=3)]
    assert listed == [f"prj_{i}" for i in range(6)]
    assert offsets(script) == [(3, 0), (3, 3)]


def test_a_short_page_ends_a_list_without_total(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", server(projects, "projects", None, 7), forever=True))
    listed = [p.id for p in scripted_hook(monkeypatch, script).iter_projects(page_size=3)]
    assert listed == [f"prj_{i}" for i in range(7)]
    assert offsets(script) == [(3, 0), (3, 3), (3, 6)]


def test_an_empty_page_ends_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/projects", server(projects, "projects", None, 6), forever=True))
    assert len(list(scripted_hook(monkeypatch, script).iter_projects(page_size=3))) == 6
    assert offsets(script) == [(3, 0), (3, 3), (3, 6)]  # the full last page needs one more look


def test_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(
        ("GET", "/projects", ok({"projects": [], "pagination": {"limit": 100, "offset": 0, "total": 0}}))
    )
    assert list(scripted_hook(monkeypatch, script).iter_projects()) == []
    assert script.done


def test_a_total_larger_than_the_items_does_not_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server says 50 but has 4: the empty page after them ends the list.
    script = Script(Step("GET", "/projects", server(projects, "projects", 50, 4), forever=True))
    assert len(list(scripted_hook(monkeypatch, script).iter_projects(page_size=2))) == 4
    assert offsets(script) == [(2, 0), (2, 2), (2, 4)]


@pytest.mark.parametrize(
    "shape",
    [
        lambda items: items,  # a bare array
        lambda items: {"data": items},
        lambda items: {"items": items},
        lambda items: {"projects": items, "pagination": "garbled"},
    ],
    ids=["bare", "data", "items", "bad-pagination"],
)
def test_tolerant_list_shapes(monkeypatch: pytest.MonkeyPatch, shape: Callable[[Any], Any]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        return ok(shape(projects(offset, 2 if offset == 0 else 1)))

    script = Script(Step("GET", "/projects", answer, forever=True))
    hook = scripted_hook(monkeypatch, script)
    assert [p.id for p in hook.iter_projects(page_size=2)] == ["prj_0", "prj_1", "prj_2"]
    assert [p.id for p in hook.list_projects(limit=2).items] == ["prj_0", "prj_1"]


def test_asset_filters_are_sent_on_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(Step("GET", "/assets", server(assets, "assets", 3, 3), forever=True))
    hook = scripted_hook(monkeypatch, script)
    assert len(list(hook.iter_assets(content_type="video/mp4", state="ready", page_size=2))) == 3
    for request in script.requests:
        assert request.url.params["contentType"] == "video/mp4"
        assert request.url.params["state"] == "ready"
    assert offsets(script) == [(2, 0), (2, 2)]


@pytest.mark.parametrize(
    "body",
    [{"projects": "nope"}, {"other": []}, "a string", 42, [{"no": "id"}], {"projects": [{"id": 1}]}],
    ids=repr,
)
def test_unreadable_lists_are_server_errors(monkeypatch: pytest.MonkeyPatch, body: Any) -> None:
    hook = scripted_hook(monkeypatch, Script(("GET", "/projects", ok(body))))
    with pytest.raises(BabouServerError, match="unexpected"):
        list(hook.iter_projects())
