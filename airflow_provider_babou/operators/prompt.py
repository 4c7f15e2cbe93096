"""Submit a prompt to a chapter, optionally waiting for it to be built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_babou.lineage import BabouLineage
from airflow_provider_babou.links import BabouProjectLink
from airflow_provider_babou.operators._common import BabouWaitingOperator, default_deferrable
from airflow_provider_babou.operators._steps import submit_or_attach
from airflow_provider_babou.polling import PromptTarget
from airflow_provider_babou.triggers.babou import raise_for_event
from airflow_provider_babou.validation import check_prompt

if TYPE_CHECKING:
    from airflow.sdk import Context


class BabouSubmitPromptOperator(BabouWaitingOperator):
    """Submit a prompt to a chapter, optionally waiting for it to be built (30-90 s).

    Retry-safe: before submitting, the chapter's latest prompt (the one an export renders) is read.
    If it has exactly this content and is processing or completed, the task attaches to it instead
    of submitting again; if it failed, or a newer prompt of other content followed this one, the
    prompt is submitted anew. A 409 (another prompt in flight on the chapter) fails with a hint to
    pass ``force=True``, which makes Babou cancel that prompt.

    Pushes ``prompt_id`` (before deferring) and returns it, ``project_id`` and ``chapter_id`` with
    ``status``, Babou's ``result`` text, ``reused`` and, once waited, the ``chapter``.
    OpenLineage: the chapter out, the ids in the ``babou`` run facet, the text in ``babouPrompts``.

    :param project_id: the project holding the chapter.
    :param chapter_id: the chapter to submit to.
    :param content: the prompt, 1-5000 characters.
    :param force: cancel a prompt in flight on this chapter (Babou's ``force``).
    :param wait_for_completion: wait until the prompt completed; a failed prompt fails the task.
    :param deferrable: wait in the triggerer instead of occupying a worker slot.
    :param poll_interval: first delay between two status polls, in seconds (backs off x1.5 to 30 s).
    :param timeout: how long to wait, in seconds, before failing with what is still pending.
    :param babou_conn_id: the Airflow connection holding Babou's base URL and API key.
    """

    template_fields: Sequence[str] = ("project_id", "chapter_id", "content")
    template_fields_renderers = {"content": "md"}
    operator_extra_links = (BabouProjectLink(),)

    def __init__(
        self,
        *,
        project_id: str,
        chapter_id: str,
        content: str,
        force: bool = False,
        wait_for_completion: bool = False,
        deferrable: bool = default_deferrable(),
        poll_interval: float = 2.0,
        timeout: float = 900,
        **kwargs: Any,
    ) -> None:
        super().__init__(deferrable=deferrable, poll_interval=poll_interval, timeout=timeout, **kwargs)
        self.project_id = project_id
        self.chapter_id = chapter_id
        self.content = content
        self.force = force
        self.wait_for_completion = wait_for_completion

    def execute(self, context: Context) -> dict[str, Any]:
        content = check_prompt(self.content)
        with self.session() as hook:
            target = PromptTarget(self.project_id, self.chapter_id, "pending")  # checks both ids first
            prompt_id, status, reused, expected = submit_or_attach(
                hook, target.project_id, target.chapter_id, content, force=self.force
            )
            target = PromptTarget(target.project_id, target.chapter_id, prompt_id)
            verb = "Attached to" if reused else "Submitted"
            self.log.info("%s prompt %s on chapter %s (%s)", verb, prompt_id, target.chapter_id, status.value)
            self.push(context, prompt_id=prompt_id)
            self.persist_project_link(context, hook, target.project_id)
            self._record_lineage(target, content)
            result = {
                **target.ids(),
                "status": status.value,
                "result": None,
                "reused": reused,
                "chapter": None,
            }
            if not self.wait_for_completion:
                return result
            chapter = self.wait_for(context, hook, target, kwargs={"reused": reused}, expected=expected)
            return _result(chapter.model_dump(mode="json"), prompt_id, result)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, reused: bool = False
    ) -> dict[str, Any]:
        """Resume after the prompt trigger fired: return the prompt's result, or raise its failure."""
        raise_for_event(event)
        assert event is not None  # raise_for_event rejected a missing event
        target = PromptTarget(event["project_id"], event["chapter_id"], event["prompt_id"])
        with self.session() as hook:
            chapter = hook.get_chapter(target.project_id, target.chapter_id).model_dump(mode="json")
            self._record_lineage(target, self.content)
        return _result(chapter, target.prompt_id, {**target.ids(), "reused": reused})

    def _record_lineage(self, target: PromptTarget, content: str) -> None:
        # Set before waiting: a task that then fails still ran this prompt (failure events use it too).
        self.babou_lineage = BabouLineage(
            ids=target.ids(),
            prompts=[{"chapter_id": target.chapter_id, "content": content}],
            outputs=[self.babou_dataset(f"projects/{target.project_id}/chapters/{target.chapter_id}")],
        )


def _result(chapter: dict[str, Any], prompt_id: str, base: dict[str, Any]) -> dict[str, Any]:
    """The JSON result of a waited prompt: its ids, status, Babou's ``result`` text and the chapter."""
    prompt: dict[str, Any] = next((p for p in chapter.get("prompts") or [] if p.get("id") == prompt_id), {})
    return {
        **base,
        "status": prompt.get("status") or "completed",
        "result": prompt.get("result"),
        "chapter": chapter,
    }
