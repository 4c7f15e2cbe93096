"""Upload a logo and a clip, wait until Babou has processed them, and reference them in a prompt.

Babou's prompt body has no asset field: assets are referred to in the prompt's text, by id.
"""

from __future__ import annotations

import os
import struct
import zlib
from datetime import datetime
from importlib.resources import files
from pathlib import Path

from airflow.sdk import DAG, task

from airflow_provider_babou.operators.babou import (
    BabouCreateChapterOperator,
    BabouCreateProjectOperator,
    BabouSubmitPromptOperator,
    BabouUploadAssetOperator,
)

MEDIA_DIR = os.environ.get("BABOU_MEDIA_DIR", "/tmp/babou-media")


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """Encode a flat-colour RGB PNG (a stand-in for the brand logo)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


# [START howto_babou_assets]
with DAG(
    dag_id="babou_assets",
    doc_md=__doc__,  # the module docstring, shown on the DAG page
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["babou", "example"],
) as dag:

    @task
    def prepare_media() -> dict[str, str]:
        """Write the files to upload (in real life they come from your brand kit or a bucket)."""
        folder = Path(MEDIA_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        logo, clip = folder / "logo.png", folder / "intro.mp4"
        logo.write_bytes(_png(64, 64, (255, 102, 0)))
        # The emulator's sample clip stands in for a real intro clip.
        clip.write_bytes((files("airflow_provider_babou.emulator") / "data" / "sample.mp4").read_bytes())
        return {"logo": str(logo), "clip": str(clip)}

    media = prepare_media()

    upload_logo = BabouUploadAssetOperator(
        task_id="upload_logo",
        source="{{ ti.xcom_pull(task_ids='prepare_media')['logo'] }}",
        wait_for_ready=True,
        deferrable=True,
        poll_interval=1,
    )
    upload_clip = BabouUploadAssetOperator(
        task_id="upload_clip",
        source="{{ ti.xcom_pull(task_ids='prepare_media')['clip'] }}",
        content_type="video/mp4",
        wait_for_ready=True,
        deferrable=True,
        poll_interval=1,
    )
    create_project = BabouCreateProjectOperator(task_id="create_project", name="Brand intro")
    create_chapter = BabouCreateChapterOperator(
        task_id="create_chapter",
        project_id="{{ ti.xcom_pull(task_ids='create_project', key='project_id') }}",
        name="intro",
        duration=30,
    )
    prompt = BabouSubmitPromptOperator(
        task_id="prompt_with_assets",
        project_id="{{ ti.xcom_pull(task_ids='create_project', key='project_id') }}",
        chapter_id="{{ ti.xcom_pull(task_ids='create_chapter', key='chapter_id') }}",
        content=(
            "Play the uploaded clip {{ ti.xcom_pull(task_ids='upload_clip', key='asset_id') }} full screen, "
            "then fade to the logo {{ ti.xcom_pull(task_ids='upload_logo', key='asset_id') }} "
            "centred on white."
        ),
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
    )
    media >> [upload_logo, upload_clip]
    create_project >> create_chapter
    [upload_logo, upload_clip, create_chapter] >> prompt
# [END howto_babou_assets]
