"""Typed errors raised by the Babou provider.

Every error carries what Babou said (HTTP status, machine ``code``, human ``message`` and the
optional ``hint``) and shows all of it in its text. None of them ever holds the API key: the
request's method and path are kept, never its headers, and every server text is scrubbed of it
(:func:`scrub`, :func:`shorten`) before it goes into one.
"""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from airflow_provider_babou._compat import AirflowException, AirflowFailException

#: HTTP statuses that may go away on their own: rate limited, or Babou (or a proxy) failing for now.
#: Not 501 (the server will never implement it), and not a 2xx whose body is unreadable (a proxy's
#: page or a changed shape repeats itself; a POST answered so is still reconciled, it took effect).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- no key in any text

#: The most characters of server text an error keeps.
TEXT_CUT = 200

_KEY_RE = re.compile(r"sk-bab-[^\s\"'<>,;&]*")
_BEARER_RE = re.compile(r"(?i)bearer\s+[^\s\"'<>,;&]+")
_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")


def scrub(text: str, secret: str | None = None, *, bearer: bool = True) -> str:
    """Remove the key, and anything shaped like a Babou key or (with ``bearer``) a bearer token,
    from server text."""
    if secret:
        text = text.replace(secret, "***")
    text = _KEY_RE.sub("sk-bab-***", text)
    return _BEARER_RE.sub("Bearer ***", text) if bearer else text


def scrub_values(value: Any, secret: str | None) -> Any:
    """Every string in a parsed JSON value scrubbed (not of the bearer shape, see below)."""
    # Not the bearer shape: a prompt may say "the bearer bonds", and reconciliation compares prompts.
    if isinstance(value, str):
        return scrub(value, secret, bearer=False)
    if isinstance(value, dict):
        return {k: scrub_values(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_values(v, secret) for v in value]
    return value


def shorten(text: str, secret: str | None) -> str:
    """Server text fit for an error: scrubbed, without tags and runs of spaces, cut to :data:`TEXT_CUT`."""
    # Scrubbed before the cut, so a cut can never leave a prefix of the key behind.
    # Also before the tags go: a key holding '<', '>' or '&' would no longer match itself after.
    cleaned = scrub(_SPACE_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", scrub(text, secret)))).strip(), secret)
    return cleaned if len(cleaned) <= TEXT_CUT else cleaned[:TEXT_CUT] + "..."


class BabouError(AirflowException):
    """Base class of every Babou error.

    :param message: Babou's ``error`` text, or ours when Babou gave none.
    :param http_status: the HTTP status of the response, ``None`` when there was no response.
    :param code: Babou's machine-readable ``code`` (e.g. ``CONFLICT``), when known.
    :param hint: Babou's ``hint``, or ours, saying how to fix the problem.
    :param method: the HTTP method of the failed request.
    :param path: the URL path of the failed request (never the query string or headers).
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.code = code
        self.hint = hint
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        head = "Babou"
        if self.http_status is not None:
            head += f" {self.http_status}"
        if self.code:
            head += f" {self.code}"
        if self.method and self.path:
            head += f" on {self.method} {self.path}"
        text = f"{head}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def __str__(self) -> str:
        return self._render()

    @property
    def transient(self) -> bool:
        """Whether this failure may go away on its own: the one rule every retry, wait and download reads."""
        return self.http_status in TRANSIENT_STATUSES

    def sentence(self) -> str:
        """The error as one plain sentence for a person (the connection Test button's message).

        Unlike ``str()`` it leaves out the request line, and the code unless Babou sent one that says
        more than the HTTP reason (``401 UNAUTHORIZED``); it ends with the hint as advice.
        """
        status = ""
        if self.http_status is not None:
            status = f"HTTP {self.http_status}"
            reason = httpx.codes.get_reason_phrase(self.http_status).upper().replace(" ", "_")
            if self.code and self.code != reason:
                status += f" {self.code}"
        text = self.message[:1].upper() + self.message[1:]
        if status:
            text += f" ({status})"
        if self.hint:
            text += f". {self.hint[:1].upper()}{self.hint[1:]}"
        return text if text.endswith(".") else text + "."

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields must survive pickling (executors and the triggerer pickle errors).
        return (_rebuild, (type(self), dict(self.__dict__)))


def _rebuild(cls: type[BabouError], state: dict[str, Any]) -> BabouError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._render())
    return error


class BabouInputError(BabouError, AirflowFailException, ValueError):
    """An argument was rejected before any request was sent (bad id, empty name, missing file...).

    Fails the task without retries (an :class:`AirflowFailException`): a retry cannot fix it.
    """


class BabouAuthError(BabouError, AirflowFailException):
    """401: the key is missing, malformed (``INVALID_API_KEY_FORMAT``), unknown or expired.

    Fails the task without retries: the connection must be fixed first.
    """


class BabouNotFoundError(BabouError):
    """404: the resource does not exist or belongs to another key."""


class BabouConflictError(BabouError):
    """409: a prompt (per chapter) or an export (per project) is already in flight."""


class BabouValidationError(BabouError, AirflowFailException):
    """400 or 413: Babou rejected the request's content; fails the task without retries."""


class BabouRateLimitError(BabouError):
    """429: the key's rate limit was exceeded, or the key's request budget here had no token in time
    (``not sent``: nothing reached Babou). Transient either way: a later try finds room.

    :param retry_after: seconds Babou asked us to wait, when it said.
    """

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class BabouServerError(BabouError):
    """5xx: Babou (or a proxy in front of it) failed."""


class BabouTransportError(BabouError):
    """No usable response: connection refused or dropped, timeout, TLS or protocol error (transient)."""

    transient = True


class BabouOutcomeUnknownError(BabouError):
    """A create request may or may not have taken effect, and the API offers no way to tell.

    Raised instead of retrying, so a retry can never create a duplicate. Check the account
    (for example list projects by name) before trying again.
    """

    @classmethod
    def of_create(cls, what: str, check: str, error: BabouError, path: str) -> BabouOutcomeUnknownError:
        """POSTing ``path`` to create ``what`` failed with ``error``, which may have taken effect."""
        return cls(
            f"the outcome of creating {what} is unknown: {error.message}; it may or may not exist now",
            http_status=error.http_status,
            code=error.code,
            hint=f"{check} before trying again, so as not to create a duplicate",
            method="POST",
            path=path,
        )


class BabouDownloadExpiredError(BabouError):
    """The export's signed ``download_url`` has expired; get the export status for a fresh one."""


class BabouDownloadStalledError(BabouTransportError):
    """A download ran slower than its minimum speed over a window, or past the task's deadline.

    A cut like any other: it is resumed while the download's time bounds allow, then raised.
    """


class BabouJobFailedError(BabouError):
    """A prompt, export or asset reached a failed terminal state; ``message`` is Babou's reason."""


class BabouWaitTimeoutError(BabouError):
    """A wait for a prompt, export or asset passed its deadline; the text names what was pending."""


class BabouEventError(BabouError):
    """A task resumed with a missing or malformed trigger event (not something Babou said)."""


class BabouCampaignError(BabouError):
    """Rows of a campaign failed (more than its ``max_failed_rows``); the message names them and why.

    A retry redoes only the rows that are not done (see :class:`BabouCampaignOperator`).
    """
