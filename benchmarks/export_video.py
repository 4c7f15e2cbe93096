"""What the emulator's rendered export video costs: render time, CPU, bytes (export_video.md).

Part 1 renders in this process (``render_mp4``, the emulator's own function) for projects of
several shapes, best of ``--repeat`` runs. Part 2 runs a real emulator process: a 10-chapter x
60 s project, the export's completion time, then the first download (which renders), a cached
one, and the emulator's CPU seconds (``/proc/<pid>/stat``) and RSS around each.

    source .ci/env.sh && python benchmarks/export_video.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import httpx

from airflow_provider_babou.emulator import DEMO_API_KEY, EmulatorProcess
from airflow_provider_babou.emulator.video import Segment, VideoPlan, render_mp4

# A prompt of the length users write (~330 characters), wrapped onto the card.
PROMPT = (
    "Open on a wide shot of the harbour at sunrise, gulls crossing the frame. Slowly push in on the "
    "lighthouse while the product logo fades in over the water, then cut to three close-ups of the "
    "app on a phone: the timeline, the export button, the finished video playing. Keep the colours "
    "warm and the music calm; end on the tagline."
)
SHAPES = [(10, 60), (1, 600), (100, 6), (60, 60)]  # (chapters, seconds each)


def _plan(chapters: int, seconds: int) -> VideoPlan:
    return VideoPlan(
        "Benchmark project",
        tuple(Segment(f"Chapter {i + 1}", f"{i + 1}. {PROMPT}", seconds) for i in range(chapters)),
    )


def _duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / 1e6 if container.duration else 0.0


def in_process(repeat: int) -> None:
    print("| chapters x seconds | video | render wall (best) | render CPU (best) | MP4 bytes |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "v.mp4"
        render_mp4(_plan(1, 1), target)  # imports and font loading happen once per process
        for chapters, seconds in SHAPES:
            walls, cpus = [], []
            for _ in range(repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                render_mp4(_plan(chapters, seconds), target)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            print(
                f"| {chapters} x {seconds} s | {_duration(target):.0f} s | {min(walls) * 1000:.0f} ms "
                f"| {min(cpus) * 1000:.0f} ms | {target.stat().st_size:,} |"
            )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def through_emulator() -> None:
    args = ["--rate-limit", "0", "--prompt-seconds", "0.2", "--export-queued-seconds", "0"]
    with EmulatorProcess([*args, "--export-processing-seconds", "0.5"]) as emulator:
        headers = {"Authorization": f"Bearer {DEMO_API_KEY}"}
        with httpx.Client(base_url=emulator.api_url, headers=headers, timeout=60) as api:
            project = api.post("/projects", json={"name": "Ten minutes"}).json()["id"]
            for i in range(10):
                body = {"name": f"Chapter {i + 1}", "duration": 60}
                chapter = api.post(f"/projects/{project}/chapters", json=body).json()["id"]
                api.post(f"/projects/{project}/chapters/{chapter}/prompt", json={"content": PROMPT})
            time.sleep(0.3)
            started = time.perf_counter()
            api.post(f"/projects/{project}/export")
            while (status := api.get(f"/projects/{project}/export").json())["status"] != "completed":
                time.sleep(0.01)
            completed = time.perf_counter() - started
        print(f"export POST -> completed: {completed * 1000:.0f} ms (export_processing_seconds 0.5)")
        url = status["download_url"]
        for label in ("first download (renders)", "second download (cached)"):
            cpu, rss, wall = _cpu_seconds(emulator.pid), _rss_mib(emulator.pid), time.perf_counter()
            data = httpx.get(url, timeout=60).content
            wall, cpu = time.perf_counter() - wall, _cpu_seconds(emulator.pid) - cpu
            print(
                f"{label}: {wall * 1000:.0f} ms, emulator CPU {cpu * 1000:.0f} ms,"
                f" RSS {rss:.0f} -> {_rss_mib(emulator.pid):.0f} MiB, {len(data):,} bytes"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="renders per shape (best is shown)")
    args = parser.parse_args()
    in_process(args.repeat)
    print()
    through_emulator()


if __name__ == "__main__":
    main()
