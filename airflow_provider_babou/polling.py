"""What "done" means for each wait, and how fast to poll: shared by the hook's blocking waits,
the sensors' pokes and the triggers, so the three agree on every outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_babou.models import Asset, AssetState, Chapter, Export, ExportStatus, PromptStatus


@dataclass(frozen=True)
class PollPolicy:
    """Polling cadence: the docs advise starting at 2 s and backing off to 30 s.

    :param interval: first delay between two polls, in seconds.
    :param backoff: factor applied to the delay after each poll.
    :param max_interval: the longest delay between two polls.
    """

    interval: float = 2.0
    backoff: float = 1.5
    max_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.backoff < 1 or self.max_interval < self.interval:
            raise ValueError(
                "poll policy needs interval > 0, backoff >= 1 and max_interval >= interval; "
                f"got interval={self.interval}, backoff={self.backoff}, max_interval={self.max_interval}"
            )

    def delays(self) -> Iterator[float]:
        """Yield the successive delays between polls, forever."""
        delay = self.interval
        while True:
            yield delay
            delay = min(delay * self.backoff, self.max_interval)


@dataclass(frozen=True)
class WaitState:
    """One observation of the object being waited on.

    :param done: whether the object reached a terminal state.
    :param succeeded: whether that terminal state is a success (meaningless while not done).
    :param state: the state word, for logs and events.
    :param message: Babou's text about the outcome (a prompt's ``result``, an export's ``error``).
    :param payload: the JSON-ready object, returned to the DAG author.
    """

    done: bool
    succeeded: bool
    state: str
    message: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def failure(self, what: str) -> str:
        """Say that ``what`` (e.g. ``"export of project prj_1"``) ended in this state, and Babou's reason."""
        return f"{what} ended {self.state!r}: {self.message or 'Babou gave no reason'}"


def prompt_state(chapter: Chapter, prompt_id: str) -> WaitState:
    """Judge a prompt from its chapter (the docs' way to poll a prompt)."""
    prompt = chapter.find_prompt(prompt_id)
    if prompt is None:
        # A wrong id would otherwise be polled until the deadline.
        return WaitState(
            done=True,
            succeeded=False,
            state="missing",
            message=f"prompt {prompt_id} is not on chapter {chapter.id}; check the ids",
            payload=chapter.model_dump(mode="json"),
        )
    status = chapter.prompt_status(prompt_id)
    return WaitState(
        done=status.is_terminal,
        succeeded=status is PromptStatus.COMPLETED,
        state=status.value,
        message=prompt.result,
        payload=chapter.model_dump(mode="json"),
    )


def _status_state(status: ExportStatus | AssetState, message: str | None, obj: Export | Asset) -> WaitState:
    """Judge an object by its status word alone (the enum knows which states are terminal)."""
    return WaitState(
        done=status.is_terminal,
        succeeded=status.is_success,
        state=status.value,
        message=message,
        payload=obj.model_dump(mode="json"),
    )


def export_state(export: Export) -> WaitState:
    """Judge a project's export from Get Export Status."""
    return _status_state(export.status, export.error, export)


def asset_state(asset: Asset) -> WaitState:
    """Judge an asset: ``ready`` succeeds, ``error``/``failed`` fail."""
    return _status_state(asset.state, None, asset)
