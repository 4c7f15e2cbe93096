"""A person reviews the rendered video in the Airflow UI before it is published.

``render`` builds the project's three chapters into an MP4. ``review_1`` then waits for a
reviewer (Airflow's **Required Actions**, the standard provider's human-in-the-loop operators,
Airflow 3.1+). Its body links the video ("Babou video", Babou's download URL, which expires after
about an hour) and names the local file, which stays.

* **Approve**: ``publish`` copies the MP4 to ``BABOU_PUBLISH_DIR`` (default
  ``/tmp/babou-published``) and emits the ``babou://videos/reviewed-launch`` Asset, whose event
  extra carries ``project_id``, ``path``, ``size``, ``sha256``, ``round`` and ``reviewer``.
* **Reject**, with the chapter to redo and a note: ``revise_2`` appends the note to that chapter's
  prompt, ``reprompt_2`` submits it with ``force=True`` (cancelling anything still running on the
  chapter), ``export_2`` and ``download_2`` render and fetch the video again, and ``review_2`` asks
  again.

A DAG cannot loop, so the review rounds are tasks: ``MAX_ROUNDS`` (3) reviews, two of which can
send the video back. Re-triggering the DAG with the answer in its conf would loop without a bound,
but would spread one video over several runs; here everything a round decided stays in one DAG run
(the answers are the review tasks' XCom), and the graph shows how far the video got. On Approve,
the next ``revise_<n>`` short-circuits, skipping every later round; ``publish`` waits for all
reviews and runs once one of them approved. The last round is an ``ApprovalOperator``: Reject
there leaves the video unpublished (``publish`` is skipped). Another round means adding one to
``MAX_ROUNDS``.

A reviewer can answer in the UI or through the REST API::

    PATCH /api/v2/dags/babou_human_review/dagRuns/{run_id}/taskInstances/review_1/-1/hitlDetails
    {"chosen_options": ["Reject"], "params_input": {"chapter": "features", "note": "Slower cards."}}

Approve takes the same body with ``["Approve"]`` (Airflow 3.1 wants every form field in
``params_input``, so send the chapter and an empty note). Before Airflow 3.1.3 the form shows each
field as plain text under its name, without the chapter list or the descriptions, so the body names
the chapters and ``revise_<n>`` checks the answer: a wrong chapter or an empty note fails it with
what to do. (On Airflow 3.3 the form offers the list, and a chapter outside it, sent through the
API, fails the review's try; the retry asks again.) The reviews wait without a time limit; newer
standard providers take ``response_timeout`` to bound them.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_babou.exceptions import BabouInputError
from airflow_provider_babou.operators.babou import (
    BabouDownloadExportOperator,
    BabouGenerateVideoOperator,
    BabouStartExportOperator,
    BabouSubmitPromptOperator,
)

OUTPUT_DIR = os.environ.get("BABOU_OUTPUT_DIR", "/tmp/babou-videos")
PUBLISH_DIR = os.environ.get("BABOU_PUBLISH_DIR", "/tmp/babou-published")
REVIEWED_VIDEO = Asset("babou://videos/reviewed-launch")
MAX_ROUNDS = 3
APPROVE, REJECT = ApprovalOperator.APPROVE, ApprovalOperator.REJECT

CHAPTERS = {
    "intro": "Open on the product logo over a dark gradient; the tagline types itself in white.",
    "features": "Three feature cards slide in from the right, each with an icon and one short line.",
    "outro": "Close on the call to action 'Try it today' with the website URL, calm music fading.",
}
PROJECT_ID = "{{ ti.xcom_pull(task_ids='render', key='project_id') }}"
RUN_DIR = OUTPUT_DIR + "/{{ dag.dag_id }}/{{ run_id | replace(':', '-') | replace('+', '-') }}"


def video_task(round_no: int) -> str:
    """The task whose result (``path``, ``download_url``, ...) is the video of review round ``round_no``."""
    return "render" if round_no == 1 else f"download_{round_no}"


def review_body(round_no: int) -> str:
    """The review's Markdown body: which round, the video's link and file, what each answer does."""
    video = f"ti.xcom_pull(task_ids='{video_task(round_no)}')"
    last = round_no == MAX_ROUNDS
    answers = (
        "This is the last round: **Reject** leaves the video unpublished."
        if last
        else "**Reject** with the chapter to redo and a note: the note is added to that chapter's "
        "prompt and the video is rendered again for another review. Chapters: "
        + ", ".join(f"`{name}`" for name in CHAPTERS)
        + "."
    )
    return (
        f"**Round {round_no} of {MAX_ROUNDS}.** Watch the [Babou video]({{{{ {video}['download_url'] }}}}) "
        "(Babou's link expires after about an hour) or the file "
        f"`{{{{ {video}['path'] }}}}`.\n\n"
        f"**Approve** to publish it to `{PUBLISH_DIR}`. {answers}"
    )


def revised_prompt(chapter: str, notes: list[str]) -> str:
    """The chapter's prompt with every reviewer's note on it appended, oldest first."""
    return "\n".join([CHAPTERS[chapter], *(f"Reviewer's note: {note}" for note in notes)])


with DAG(
    dag_id="babou_human_review",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["babou", "example"],
    default_args={"retries": 2},
    doc_md=__doc__,
) as dag:
    render = BabouGenerateVideoOperator(
        task_id="render",
        project_name="Reviewed launch",
        chapters=[{"name": name, "prompt": prompt} for name, prompt in CHAPTERS.items()],
        destination=RUN_DIR + "/round-1.mp4",
        overwrite=True,
        deferrable=True,
        poll_interval=1,
    )

    @task(trigger_rule="none_failed_min_one_success", outlets=[REVIEWED_VIDEO])
    def publish(*, ti: Any = None, run_id: Any = None, outlet_events: Any = None) -> dict[str, Any]:
        """Copy the approved round's MP4 to the published location and emit the Asset event."""
        for round_no in range(1, MAX_ROUNDS + 1):
            answer = ti.xcom_pull(task_ids=f"review_{round_no}")
            if answer and answer["chosen_options"] == [APPROVE]:
                break
        else:  # unreachable: publish runs only after a review approved
            raise ValueError("no review approved the video")
        video = ti.xcom_pull(task_ids=video_task(round_no))
        target = Path(PUBLISH_DIR) / ti.dag_id / f"{run_id.replace(':', '-').replace('+', '-')}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        shutil.copyfile(video["path"], partial)
        partial.replace(target)  # readers never see a half-copied video
        extra = {
            "project_id": ti.xcom_pull(task_ids="render", key="project_id"),
            "path": str(target),
            "size": target.stat().st_size,
            "sha256": video["sha256"],
            "round": round_no,
            "reviewer": (answer.get("responded_by_user") or {}).get("name"),
        }
        outlet_events[REVIEWED_VIDEO].extra = extra
        return extra

    published = publish()

    previous: Any = render
    for round_no in range(1, MAX_ROUNDS + 1):
        if round_no > 1:

            @task.short_circuit(task_id=f"revise_{round_no}", ignore_downstream_trigger_rules=False)
            def revise(asked: int, *, ti: Any = None) -> dict[str, str] | None:
                """After a Reject, the chapter to redo and its prompt with the notes; None after Approve."""
                answers = [ti.xcom_pull(task_ids=f"review_{n}") for n in range(1, asked + 1)]
                if answers[-1]["chosen_options"] == [APPROVE]:
                    return None  # approved: skip this round and the later ones
                chapter = str(answers[-1]["params_input"].get("chapter") or "")
                note = str(answers[-1]["params_input"].get("note") or "").strip()
                retry = f"clear review_{asked} and answer again"
                if chapter not in CHAPTERS:
                    raise BabouInputError(f"no chapter {chapter!r}; pick one of {list(CHAPTERS)}", hint=retry)
                if not note:
                    raise BabouInputError("a Reject needs a note saying what to change", hint=retry)
                notes = [
                    a["params_input"]["note"].strip()
                    for a in answers
                    if a["params_input"]["chapter"] == chapter
                ]
                chapter_ids = ti.xcom_pull(task_ids="render", key="chapter_ids")
                return {
                    "chapter": chapter,
                    "chapter_id": chapter_ids[chapter],
                    "content": revised_prompt(chapter, notes),
                }

            revision = f"ti.xcom_pull(task_ids='revise_{round_no}')"
            reprompt = BabouSubmitPromptOperator(
                task_id=f"reprompt_{round_no}",
                project_id=PROJECT_ID,
                chapter_id=f"{{{{ {revision}['chapter_id'] }}}}",
                content=f"{{{{ {revision}['content'] }}}}",
                force=True,  # replace whatever still runs on the chapter
                wait_for_completion=True,
                deferrable=True,
                poll_interval=1,
            )
            export = BabouStartExportOperator(
                task_id=f"export_{round_no}", project_id=PROJECT_ID, deferrable=True, poll_interval=1
            )
            download = BabouDownloadExportOperator(
                task_id=f"download_{round_no}",
                project_id=PROJECT_ID,
                destination=RUN_DIR + f"/round-{round_no}.mp4",
                overwrite=True,
            )
            previous >> revise(round_no - 1) >> reprompt >> export >> download
            previous = download

        subject = f"Review the launch video (round {round_no} of {MAX_ROUNDS})"
        if round_no < MAX_ROUNDS:
            review: HITLOperator = HITLOperator(
                task_id=f"review_{round_no}",
                subject=subject,
                body=review_body(round_no),
                options=[APPROVE, REJECT],
                params={
                    "chapter": Param(
                        next(iter(CHAPTERS)),
                        type="string",
                        enum=list(CHAPTERS),
                        title="Chapter to redo",
                        description="Reject only: the chapter whose prompt gets your note.",
                    ),
                    "note": Param(
                        "",
                        type="string",
                        title="Note",
                        description="Reject only: what to change; it is appended to the chapter's prompt.",
                    ),
                },
            )
        else:
            # Skips publish on Reject: nothing is published after the last round.
            review = ApprovalOperator(
                task_id=f"review_{round_no}", subject=subject, body=review_body(round_no)
            )
        previous >> review >> published
        previous = review
