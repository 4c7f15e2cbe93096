"""The export video: a title card per included chapter, rendered once per export and cached.

Each chapter is one keyframe (its name, position and prompt text on a 320x180 card) that the MP4
holds for the chapter's ``duration`` (its packet duration). A chapter costs one encoded frame
whatever its length, so a 10-minute project renders in milliseconds (benchmarks/export_video.md).

Rendering needs PyAV and Pillow (the ``emulator`` extra). Without them the emulator serves the
bundled sample MP4 and says so once at start-up: downloads stay real MP4s for clients that only
move bytes, and the warning names the extra that turns the real video on.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_babou.emulator.config import SAMPLE_MP4

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.packet import Packet
    from PIL.Image import Image
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont, ImageFont

    Font = FreeTypeFont | ImageFont

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 320, 180
DEFAULT_CHAPTER_SECONDS = 2
"""How long a chapter created without a ``duration`` lasts in the video (and in ``duration_seconds``)."""

_MARGIN = 12
# Dark backgrounds, one per chapter in turn, so chapter changes are visible at a glance.
_BACKGROUNDS = [(28, 38, 74), (64, 30, 60), (24, 62, 56), (70, 50, 24), (40, 40, 40)]
_PROMPT_LINES = 7


@dataclass(frozen=True)
class Segment:
    """One chapter as the export renders it."""

    name: str
    prompt: str
    seconds: int


@dataclass(frozen=True)
class VideoPlan:
    """What an export shows, fixed when the export starts: its included chapters in order."""

    project: str
    segments: tuple[Segment, ...]


@cache
def missing_renderer() -> str | None:
    """None when PyAV and Pillow can render; else why not, in one line (also logged once)."""
    try:
        import av
        import PIL.ImageDraw  # noqa: F401
    except ImportError as exc:
        problem = str(exc)
    else:
        if "libx264" in av.codecs_available:
            return None
        problem = "this PyAV build has no libx264 encoder"
    reason = (
        f"export videos are the bundled sample MP4, not the project's chapters ({problem}); "
        "install 'airflow-provider-babou[emulator]' for rendered videos"
    )
    log.warning("babou-emulator: %s", reason)
    return reason


def _wrap(draw: ImageDraw, text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` pixels (words longer than a line are cut)."""

    def fits(candidate: str) -> bool:
        return draw.textlength(candidate, font=font) <= width

    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            # A word wider than the line is broken where it overflows.
            while not fits(word):
                cut = 1
                while fits(word[: cut + 1]):
                    cut += 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def render_card(plan: VideoPlan, index: int) -> Image:
    """The title card of chapter ``index``: position and length, name, prompt text, project."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    segment = plan.segments[index]
    image = PILImage.new("RGB", (WIDTH, HEIGHT), _BACKGROUNDS[index % len(_BACKGROUNDS)])
    draw = ImageDraw.Draw(image)
    small, title, body = (ImageFont.load_default(size=s) for s in (10, 18, 12))
    width = WIDTH - 2 * _MARGIN
    header = f"Chapter {index + 1} of {len(plan.segments)} · {segment.seconds} s"
    draw.text((_MARGIN, 8), header, font=small, fill=(190, 190, 200))
    draw.text((_MARGIN, 22), _wrap(draw, segment.name, title, width)[0], font=title, fill=(255, 255, 255))
    lines = _wrap(draw, segment.prompt, body, width)
    if len(lines) > _PROMPT_LINES:
        lines = [*lines[: _PROMPT_LINES - 1], lines[_PROMPT_LINES - 1] + " …"]
    draw.multiline_text((_MARGIN, 48), "\n".join(lines), font=body, fill=(225, 225, 230), spacing=2)
    footer = _wrap(draw, plan.project, small, width)[0]
    draw.text((_MARGIN, HEIGHT - 18), footer, font=small, fill=(150, 150, 160))
    return image


def render_mp4(plan: VideoPlan, target: Path) -> None:
    """Encode ``plan`` to an H.264 MP4 at ``target``: one keyframe per chapter, held for its length."""
    import av
    from av.video.frame import PictureType

    options = {"preset": "veryfast", "tune": "stillimage", "x264-params": "keyint=infinite:scenecut=0"}
    starts: dict[int, int] = {}
    with av.open(str(target), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.thread_count = 1  # a tiny frame: threads would only cost start-up
        stream.codec_context.max_b_frames = 0  # packets come out in chapter order
        position = 0
        for index, segment in enumerate(plan.segments):
            frame = av.VideoFrame.from_image(render_card(plan, index))
            frame.pts, frame.time_base = position, Fraction(1)
            frame.pict_type = PictureType.I  # a keyframe per chapter: seeking lands on its card
            starts[position] = segment.seconds
            position += segment.seconds
            _mux(container, stream.encode(frame), starts)
        _mux(container, stream.encode(None), starts)


def _mux(container: OutputContainer, packets: list[Packet], starts: dict[int, int]) -> None:
    for packet in packets:
        # The encoder leaves durations unset; the muxer would guess one frame (1 s) for the last.
        assert packet.pts is not None
        packet.duration = starts[packet.pts]
        container.mux(packet)


class VideoCache:
    """Rendered MP4s by export id in a private temp dir, removed by :meth:`close` (or at exit).

    :meth:`get` renders on a worker thread (never on the event loop) the first time an export is
    asked for; concurrent first requests share that one render.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._videos: dict[str, Future[Path]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._dir: Path | None = None
        self._remove_dir: Callable[[], object] = lambda: None

    def get(self, export_id: str, plan: VideoPlan, on_render: Callable[[], None]) -> Future[Path]:
        """The MP4 of ``export_id``; ``on_render`` runs once the file is rendered (not on a hit)."""
        if missing_renderer() is not None:
            done: Future[Path] = Future()
            done.set_result(SAMPLE_MP4)
            return done
        with self._lock:
            video = self._videos.get(export_id)
            if video is None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="babou-render")
                video = self._executor.submit(self._render, export_id, plan, on_render)
                self._videos[export_id] = video
            return video

    def _render(self, export_id: str, plan: VideoPlan, on_render: Callable[[], None]) -> Path:
        target = self._directory() / f"{export_id}.mp4"
        partial = target.with_suffix(".partial")
        try:
            render_mp4(plan, partial)
            partial.replace(target)
        except BaseException:
            with self._lock:  # a later request tries again
                self._videos.pop(export_id, None)
            partial.unlink(missing_ok=True)
            raise
        on_render()
        return target

    def _directory(self) -> Path:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="babou-emulator-videos-"))
                # Also at interpreter exit, for an app run in-process that nobody closes.
                self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
            return self._dir

    def clear(self) -> None:
        """Forget every video and delete its file (a render under way deletes its file when done)."""
        with self._lock:
            videos, self._videos = self._videos, {}
        for video in videos.values():
            video.add_done_callback(_unlink_result)

    def close(self) -> None:
        """Finish a render under way, then delete the directory with every video in it."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._videos = {}
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._remove_dir()


def _unlink_result(video: Future[Path]) -> None:
    if video.exception() is None:
        with contextlib.suppress(OSError):
            video.result().unlink()
