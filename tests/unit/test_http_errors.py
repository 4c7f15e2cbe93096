"""hooks/_http.py: ``Retry-After``, error mapping with the key scrubbed, and hostile bodies."""

from __future__ import annotations

import email.utils
import logging

import httpx
import pytest

from airflow_provider_babou import exceptions
from airflow_provider_babou.exceptions import (
    BabouAuthError,
    BabouConflictError,
    BabouError,
    BabouNotFoundError,
    BabouRateLimitError,
    BabouServerError,
    BabouTransportError,
    BabouValidationError,
)
from airflow_provider_babou.hooks import _http
from airflow_provider_babou.models import Project
from tests.unit.script import Script, VirtualClock, fail, ok, scripted_hook

NOW = 1_800_000_000.0
KEY = "sk-bab-live-9fQ2xL7pW3mZ8rT1vB6nK4yH0cJ5dS"
REQUEST = httpx.Request("GET", "https://api.babou.test/api/v1/projects/prj_1?limit=1")


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),  # clamped: never a negative sleep
        ("-inf", 0.0),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("Infinity", None),
        ("1e400", None),  # overflows to infinity
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert _http.parse_retry_after(value, now=NOW) == expected


def test_retry_after_http_dates() -> None:
    future = email.utils.formatdate(NOW + 120, usegmt=True)
    assert _http.parse_retry_after(future, now=NOW) == 120.0
    past = email.utils.formatdate(NOW - 3600, usegmt=True)
    assert _http.parse_retry_after(past, now=NOW) == 0.0  # already due: no wait, never negative
    zoned = email.utils.formatdate(NOW + 60, localtime=False)  # "-0000" zone: read as UTC
    assert _http.parse_retry_after(zoned, now=NOW) == 60.0
    assert _http.parse_retry_after("Mon, 32 Foo 2015 99:99:99 GMT", now=NOW) is None


def test_a_429_carries_its_retry_after() -> None:
    throttled = httpx.Response(429, json={"error": "slow"}, headers={"Retry-After": "3"}, request=REQUEST)
    err = _http.error_for_response(throttled, "GET")
    assert isinstance(err, BabouRateLimitError)
    assert err.retry_after == 3.0
    garbled = httpx.Response(429, json={"error": "slow"}, headers={"Retry-After": "nan"}, request=REQUEST)
    assert _http.error_for_response(garbled, "GET").retry_after is None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- error classes


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BabouValidationError),
        (401, BabouAuthError),
        (403, BabouValidationError),
        (404, BabouNotFoundError),
        (409, BabouConflictError),
        (413, BabouValidationError),
        (422, BabouValidationError),
        (429, BabouRateLimitError),
        (500, BabouServerError),
        (502, BabouServerError),
        (503, BabouServerError),
        (504, BabouServerError),
        (599, BabouServerError),
    ],
)
def test_statuses_map_to_typed_errors(status: int, cls: type[BabouError]) -> None:
    body = {"error": "It failed", "code": "SOME_CODE", "hint": "do this"}
    err = _http.error_for_response(httpx.Response(status, json=body, request=REQUEST), "GET")
    assert type(err) is cls
    assert (err.http_status, err.code, err.message, err.method) == (status, "SOME_CODE", "It failed", "GET")
    assert err.path == "/api/v1/projects/prj_1"  # never the query
    assert err.hint == "do this"


def test_a_nested_envelope_is_read() -> None:
    body = {"error": {"message": "deep", "code": "X", "hint": "h"}}
    err = _http.error_for_response(httpx.Response(400, json=body, request=REQUEST), "GET")
    assert (err.message, err.code, err.hint) == ("deep", "X", "h")


@pytest.mark.parametrize("code", ["API_KEY_EXPIRED", "INVALID_API_KEY_FORMAT", "UNAUTHORIZED", None])
def test_auth_errors_always_have_a_hint(code: str | None) -> None:
    body = {"error": "no", **({"code": code} if code else {})}
    err = _http.error_for_response(httpx.Response(401, json=body, request=REQUEST), "GET")
    assert err.hint


# --------------------------------------------------------------------------- the key, scrubbed


def _echoes(key: str) -> dict[str, httpx.Response]:
    """Answers that echo the key (or its Authorization header) in every place a server text goes."""
    bearer = f"Authorization: Bearer {key}"
    return {
        "error": fail(401, {"error": f"invalid key {key}", "code": "UNAUTHORIZED"}),
        "code": fail(400, {"error": "bad", "code": key}),
        "hint": fail(403, {"error": "bad", "hint": f"you sent {bearer}"}),
        "all-fields": fail(409, {"error": bearer, "code": f"K_{key}", "hint": key}),
        "nested": fail(400, {"error": {"message": bearer, "code": key, "hint": key}}),
        "list-item": fail(500, {"error": ["first", key, bearer]}),
        "top-list": fail(400, [key, {"error": key}]),
        "non-json-5xx": fail(502, text=f"<html><body><pre>{bearer}</pre></body></html>"),
        "non-json-4xx": fail(400, text=f"header was {bearer}"),
        "html-escaped": fail(500, text=f"<p>{key.replace('s', '&#115;')}</p>"),
        "past-the-cut": fail(500, {"error": "x" * 190 + key, "hint": "y" * 195 + bearer}),
        "past-the-cut-text": fail(503, text="z" * 193 + key),
        "at-the-cut": fail(500, {"error": "x" * (200 - len(key) // 2) + key}),
        "reason-phrase": httpx.Response(502, text="", extensions={"reason_phrase": f"Bad {bearer}".encode()}),
        "reason-phrase-2xx": httpx.Response(200, text="{", extensions={"reason_phrase": key.encode()}),
        "2xx-shape": ok({"id": [key], "name": key}),
        "2xx-not-json": httpx.Response(200, text=f"not json {key}"),
    }


def _leaks(text: str, key: str) -> list[str]:
    """The key, or any prefix of 12 characters or more, found in ``text``."""
    return [key[:n] for n in range(12, len(key) + 1) if key[:n] in text]


@pytest.mark.parametrize("case", sorted(_echoes(KEY)))
def test_the_key_never_appears_in_errors_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    answer = _echoes(KEY)[case]

    def babou(request: httpx.Request) -> httpx.Response:
        # Every call echoes, but the chapter read that reconciles the ambiguous POST.
        if request.method == "GET" and request.url.path.endswith("/chapters/cht_1"):
            return ok({"id": "cht_1", "name": "c"})
        return answer

    # A GET (a 5xx is retried: its log lines are checked too) and a POST (its reconciliation line).
    hook = scripted_hook(monkeypatch, babou, key=KEY, max_retries=2)
    VirtualClock.install(monkeypatch)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for call in (
            lambda: hook.get_project("prj_1"),
            lambda: hook.submit_prompt("prj_1", "cht_1", content="x"),
        ):
            try:
                call()
            except BabouError as exc:
                errors.append(exc)
    assert errors, "the echoing answer should have failed the call"
    texts = [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [str(e.__cause__) for e in errors if e.__cause__ is not None]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert _leaks(text, KEY) == [], text
        assert "Bearer sk" not in text


@pytest.mark.parametrize("case", sorted(_echoes(KEY)))
def test_error_for_response_scrubs_every_text(case: str) -> None:
    answer = _echoes(KEY)[case]
    answer.request = REQUEST
    if answer.is_success:
        try:
            _http.parse_model(Project, answer, KEY)
        except BabouError as exc:
            err: BabouError = exc
        else:  # pragma: no cover - every 2xx here is unreadable
            raise AssertionError("parsed")
    else:
        err = _http.error_for_response(answer, "GET", KEY)
    for text in (str(err), repr(err), err.message, err.code or "", err.hint or ""):
        assert _leaks(text, KEY) == [], text


def test_key_shaped_text_is_scrubbed_even_without_the_secret() -> None:
    other = "sk-bab-someone-elses-key-1234567890"
    cleaned = exceptions.scrub(f"keys {other} and Bearer abc.def-ghi and bearer\tXYZ123")
    assert other[:12] not in cleaned
    assert "abc.def-ghi" not in cleaned
    assert "XYZ123" not in cleaned


def test_a_key_with_separator_characters_is_scrubbed_whole() -> None:
    odd = "sk-bab-ab,cd;ef&gh<ij>kl'mn\"op"
    assert _leaks(exceptions.scrub(f"echo {odd} end", odd), odd) == []
    err = _http.error_for_response(httpx.Response(500, text=f"echo {odd}", request=REQUEST), "GET", odd)
    assert ",cd;ef&gh" not in str(err)


@pytest.mark.parametrize("inside", [3, 8, 12, 20, 30])
def test_a_key_cut_by_the_length_limit_leaves_no_part_behind(inside: int) -> None:
    """The cut at 200 characters falls inside the key: it must have been scrubbed before."""
    odd = "sk-bab-ab,cdefghijklmnopqrstuvwxyz0123456789"  # the key pattern stops at ','
    text = "x" * (exceptions.TEXT_CUT - inside) + odd + " tail"
    secret_part = odd[len("sk-bab-") :]
    for body in ({"error": text}, {"error": "e", "hint": text}):
        err = _http.error_for_response(httpx.Response(500, json=body, request=REQUEST), "GET", odd)
        shown = str(err)
        assert [
            secret_part[i : i + 6] for i in range(len(secret_part) - 5) if secret_part[i : i + 6] in shown
        ] == []


def test_transport_errors_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"connection reset while sending Authorization: Bearer {KEY}", request=request)

    hook = scripted_hook(monkeypatch, Script(("POST", "/projects", reset)), key=KEY)
    with pytest.raises(BabouError) as info:
        hook.create_project(name="p")
    for text in (str(info.value), repr(info.value), str(info.value.__cause__)):
        assert _leaks(text, KEY) == [], text
    assert isinstance(info.value.__cause__, BabouTransportError)


# --------------------------------------------------------------------------- hostile bodies


DEEP = "[" * 100_000
DEEP_OBJECT = '{"a":' * 100_000


@pytest.mark.parametrize(
    "body", [DEEP, DEEP_OBJECT, '{"error": ' + DEEP], ids=["array", "object", "in-error"]
)
@pytest.mark.parametrize("status", [400, 500])
def test_deeply_nested_error_bodies_are_typed(status: int, body: str) -> None:
    err = _http.error_for_response(httpx.Response(status, text=body, request=REQUEST), "GET", KEY)
    assert isinstance(err, BabouValidationError if status == 400 else BabouServerError)
    assert len(err.message) < 400  # cut, not 100 000 characters


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_success_bodies_are_server_errors(monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    script = Script(
        ("GET", "/projects/prj_1", httpx.Response(200, text=body)),
        ("GET", "/projects", httpx.Response(200, text=body)),
        ("GET", "/projects/prj_1/export", httpx.Response(200, text=body)),
        ("GET", "/projects", fail(500, text=body)),
    )
    hook = scripted_hook(monkeypatch, script, max_retries=0)
    for call in (
        lambda: hook.get_project("prj_1"),
        lambda: list(hook.iter_projects()),
        lambda: hook.find_export("prj_1"),
        lambda: hook.list_projects(),
    ):
        with pytest.raises(BabouServerError, match=r"nested too deeply|non-JSON"):
            call()
    assert script.done


def test_deep_but_parseable_error_payloads_are_typed() -> None:
    depth = 900
    nested = '{"error": ' + '{"message": ' * depth + '"x"' + "}" * depth + "}"
    err = _http.error_for_response(httpx.Response(500, text=nested, request=REQUEST), "GET", KEY)
    assert isinstance(err, BabouServerError)


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00garbage", b"", b"null", b"[]", b'"a string"', b"42", b'{"error": null}', b'{"error": 5}'],
    ids=repr,
)
def test_odd_error_bodies_are_typed(body: bytes) -> None:
    err = _http.error_for_response(httpx.Response(502, content=body, request=REQUEST), "POST", KEY)
    assert isinstance(err, BabouServerError)
    assert err.message.startswith("502 Bad Gateway")


def test_a_huge_error_body_is_cut() -> None:
    err = _http.error_for_response(httpx.Response(500, text="x" * 10_000_000, request=REQUEST), "GET")
    assert len(err.message) < 300
    assert err.message.endswith("...)")


def test_non_json_error_mapping() -> None:
    request = httpx.Request("POST", "https://api.babou.test/api/v1/assets?x=1")
    page = "<html><head><title>502</title></head><body><h1>Bad   Gateway</h1></body></html>"
    err = _http.error_for_response(httpx.Response(502, text=page, request=request), "POST")
    assert err.message == "502 Bad Gateway (non-JSON body: 502 Bad Gateway)"
    assert (err.method, err.path) == ("POST", "/api/v1/assets")
    big = _http.error_for_response(
        httpx.Response(413, json={"error": "File too large", "code": "FILE_TOO_LARGE"}, request=request),
        "POST",
    )
    assert type(big).__name__ == "BabouValidationError"
    assert big.code == "FILE_TOO_LARGE"
