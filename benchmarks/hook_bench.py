"""Measure BabouHook against a naive httpx peer: peak memory of a 100 MiB upload and a 1 GiB
download, and TCP connections opened for 1,000 sequential GETs.

Run from the repository root::

    /tmp/venv/bin/python benchmarks/hook_bench.py [--download-mib 1024] [--upload-mib 100]

Each memory figure is measured in a fresh child process: after the imports and setup the peak
(``VmHWM``) is reset to the current RSS via ``/proc/self/clear_refs``, then read again after the
transfer; the difference is what the transfer cost (``ru_maxrss`` where /proc is missing).
Connections come from the emulator's own counter of distinct client ports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import peak_rss_mib, reset_peak  # benchmarks/ is on sys.path when run as a script

KEY = "sk-bab-bench-key"
CONN_ENV = "AIRFLOW_CONN_BABOU_DEFAULT"


def child(mode: str, api_url: str, project_id: str, path: str) -> None:
    """Run one measured operation and print a JSON line with the peak-RSS increase."""
    import httpx

    from airflow_provider_babou.hooks.babou import BabouHook

    hook = BabouHook()
    hook.list_projects(limit=1)  # connection lookup and client set-up happen before the baseline
    headers = {"Authorization": f"Bearer {KEY}"}
    reset_peak()
    before = peak_rss_mib()
    started = time.perf_counter()
    if mode == "hook_upload":
        asset = hook.upload_asset(path, content_type="video/mp4")
        assert asset.size == Path(path).stat().st_size
    elif mode == "naive_upload":
        body = Path(path).read_bytes()
        response = httpx.post(
            f"{api_url}/assets", content=body, headers={**headers, "Content-Type": "video/mp4"}, timeout=300
        )
        response.raise_for_status()
    elif mode == "hook_download":
        result = hook.download_export(project_id, path)
        assert result.size == Path(path).stat().st_size
    elif mode == "naive_download":
        url = httpx.get(f"{api_url}/projects/{project_id}/export", headers=headers).json()["download_url"]
        response = httpx.get(url, timeout=300)
        Path(path).write_bytes(response.content)
    else:
        raise SystemExit(f"unknown mode {mode}")
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "mode": mode,
                "peak_increase_mib": round(peak_rss_mib() - before, 1),
                "seconds": round(elapsed, 2),
            }
        )
    )


def _run_child(mode: str, api_url: str, project_id: str, path: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, api_url, project_id, path],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4, metavar=("MODE", "API_URL", "PROJECT", "PATH"))
    parser.add_argument("--download-mib", type=int, default=1024)
    parser.add_argument("--upload-mib", type=int, default=100)
    parser.add_argument("--gets", type=int, default=1000)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    import httpx

    from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess

    emulator_args = [
        *("--api-key", KEY, "--rate-limit", "0"),
        *("--prompt-seconds", "0.1", "--export-queued-seconds", "0.1", "--export-processing-seconds", "0.1"),
    ]
    results: dict[str, object] = {}
    with EmulatorProcess(emulator_args) as process, tempfile.TemporaryDirectory() as tmp:
        control = EmulatorControl(process.url)
        os.environ[CONN_ENV] = json.dumps({"conn_type": "babou", "host": control.api_url, "password": KEY})
        from airflow_provider_babou.hooks.babou import BabouHook
        from airflow_provider_babou.polling import PollPolicy

        hook = BabouHook()
        poll = PollPolicy(0.1, 1.0, 0.1)
        project = hook.create_project(name="bench")
        chapter = hook.create_chapter(project.id, name="c")
        receipt = hook.submit_prompt(project.id, chapter.id, content="bench")
        hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, poll=poll, timeout=30)
        hook.start_export(project.id)
        hook.wait_for_export(project.id, poll=poll, timeout=30)
        control.configure(mp4_size=args.download_mib * 1024 * 1024)

        upload = Path(tmp) / "upload.mp4"
        with upload.open("wb") as handle:
            block = os.urandom(1024 * 1024)
            for _ in range(args.upload_mib):
                handle.write(block)
        for mode in ("hook_upload", "naive_upload"):
            results[mode] = _run_child(mode, control.api_url, project.id, str(upload))
        for mode in ("hook_download", "naive_download"):
            target = Path(tmp) / f"{mode}.mp4"
            results[mode] = _run_child(mode, control.api_url, project.id, str(target))
            target.unlink()

        control.reset()
        for _ in range(args.gets):
            hook.list_projects(limit=1)
        results["hook_connections"] = control.stats(KEY)["key"]["connections"]
        control.reset()
        for _ in range(args.gets):
            httpx.get(f"{control.api_url}/projects?limit=1", headers={"Authorization": f"Bearer {KEY}"})
        results["naive_connections"] = control.stats(KEY)["key"]["connections"]
        hook.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
