"""Peak RSS and local disk of a 1 GiB export downloaded to S3: streamed (now) vs staged (before).

Run from the repository root::

    python benchmarks/s3_download.py [--mib 1024] [--staged-ref 256c663]

Starts the emulator (``mp4_size`` = the export's size) and moto's S3 server, both on 127.0.0.1,
and downloads the export to ``s3://bench/<mode>.mp4`` through the Amazon provider's
``ObjectStoragePath`` and an ``aws`` connection, once per mode, each in a fresh child process:

- ``streamed``: this checkout's ``BabouHook.download_export``;
- ``staged``: the same call with the package as it was at ``--staged-ref`` (the last commit
  that wrote the whole file to a local temporary file, then copied it to the object), taken with
  ``git archive`` and put first on the child's ``PYTHONPATH``.

Each child gets an empty ``TMPDIR`` and an empty working directory. Memory = the child's peak
RSS increase during the download (``VmHWM`` reset after imports and a warm-up call). Disk,
sampled every 10 ms (``tests.helpers.DiskWatch``): the largest total size of the files under
those two directories, and of the deleted files the child holds open (anonymous temporary files);
as a cross-check, the growth of the file system's used space, which also counts other processes'
writes (the machine is shared). moto is told to hold objects in its own memory (it
would spool those over 5 MiB to temporary files): only the downloading process is measured.
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

REPO = Path(__file__).resolve().parent.parent
# tests.s3 (the moto server) and tests.helpers (the disk watch); last, so that the staged package
# on a child's PYTHONPATH comes before this checkout's.
sys.path.append(str(REPO))

KEY = "sk-bab-bench-key"
BUCKET = "bench"
MIB = 1024 * 1024


def child(mode: str, project_id: str) -> None:
    """Download to ``s3://bench/<mode>.mp4`` and print one JSON line of measurements."""
    from airflow.sdk import ObjectStoragePath

    import airflow_provider_babou
    from airflow_provider_babou.hooks.babou import BabouHook
    from tests.helpers import DiskWatch

    hook = BabouHook()
    hook.get_export(project_id)  # connection lookup and client set-up happen before the baseline
    target = ObjectStoragePath(f"s3://{BUCKET}/{mode}.mp4", conn_id="babou_s3")
    target.exists()  # so do the aws connection, credentials and S3 client
    watch = DiskWatch(Path(tempfile.gettempdir()), Path.cwd())
    reset_peak()
    before = peak_rss_mib()
    started = time.perf_counter()
    with watch:
        result = hook.download_export(project_id, target, overwrite=True)
    elapsed = time.perf_counter() - started
    record = {
        "mode": mode,
        "package": os.path.dirname(airflow_provider_babou.__file__),
        "peak_rss_increase_mib": round(peak_rss_mib() - before, 1),
        "local_files_peak_mib": round(watch.peak / MIB, 1),
        "unlinked_open_files_peak_mib": round(watch.unlinked / MIB, 1),
        "fs_used_growth_mib": round(watch.fs_growth / MIB, 1),
        "seconds": round(elapsed, 1),
        "size": result.size,
        "sha256": result.sha256,
    }
    print(json.dumps(record))


def _run_child(mode: str, project_id: str, env: dict[str, str], root: Path, staged: Path) -> dict:
    temp, cwd = root / f"{mode}-tmp", root / f"{mode}-cwd"
    temp.mkdir()
    cwd.mkdir()
    env = {**env, "TMPDIR": str(temp)}
    if mode == "staged":
        env["PYTHONPATH"] = str(staged)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode, project_id],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PROJECT"))
    parser.add_argument("--mib", type=int, default=1024, help="export size (default 1 GiB)")
    parser.add_argument("--staged-ref", default="256c663", help="commit of the staged download code")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
    from tests.helpers import completed_export
    from tests.s3 import MotoServer

    emulator_args = [
        *("--api-key", KEY, "--rate-limit", "0"),
        *("--prompt-seconds", "0.1", "--export-queued-seconds", "0.1", "--export-processing-seconds", "0.1"),
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(emulator_args) as process:
        root = Path(tmp)
        staged = root / "staged"
        staged.mkdir()
        # moto would spool objects over 5 MiB to temporary files: keep them in its memory, so the
        # file system's growth is the downloader's.
        s3 = MotoServer(env={"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(4 * args.mib * MIB)}).start()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.staged_ref, "airflow_provider_babou"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(staged)], input=archive, check=True)

        control = EmulatorControl(process.url)
        env = {
            **os.environ,
            "AIRFLOW_CONN_BABOU_DEFAULT": json.dumps(
                {"conn_type": "babou", "host": control.api_url, "password": KEY, "extra": {"rate_limit": 1e3}}
            ),
            "AIRFLOW_CONN_BABOU_S3": json.dumps(s3.connection()),
        }
        os.environ.update(env)
        from airflow_provider_babou.hooks.babou import BabouHook

        hook = BabouHook()
        project_id = completed_export(hook)
        control.configure(mp4_size=args.mib * MIB)
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        for mode in ("streamed", "staged"):
            record = _run_child(mode, project_id, env, root, staged)
            head = client.head_object(Bucket=BUCKET, Key=f"{mode}.mp4")
            assert head["ContentLength"] == record["size"] == args.mib * MIB, (head, record)
            client.delete_object(Bucket=BUCKET, Key=f"{mode}.mp4")  # moto holds objects in memory
            results.append(record)
            print(json.dumps(record), flush=True)
        assert results[0]["sha256"] == results[1]["sha256"]
        assert results[0]["package"] != results[1]["package"]
        hook.close()
        s3.stop()


if __name__ == "__main__":
    main()
