"""Run the example video pipeline end to end against a local Babou emulator.

Called by ``.ci/demo``; prints one line per task (state, seconds), the ids Babou gave, and the
path of the downloaded MP4. Exits non-zero if anything failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BABOU_DEMO_DIR", ROOT / "demo_output"))
os.environ["AIRFLOW_HOME"] = str(OUT / "airflow_home")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("BABOU_DEMO_LOG_LEVEL", "WARNING")
os.environ["BABOU_OUTPUT_DIR"] = str(OUT / "videos")


def main() -> int:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    from airflow_provider_babou.emulator import DEMO_API_KEY, EmulatorProcess

    with EmulatorProcess() as emulator:
        print(f"Babou emulator on {emulator.api_url} (pid {emulator.pid})")
        os.environ["AIRFLOW_CONN_BABOU_DEFAULT"] = json.dumps(
            {"conn_type": "babou", "host": emulator.api_url, "password": DEMO_API_KEY}
        )
        try:
            from airflow.dag_processing.dagbag import DagBag

            sync_bag_to_db = None  # dag.test() writes the DAG to the metadata DB itself
        except ImportError:  # Airflow 3.1
            from airflow.models.dagbag import (  # type: ignore[no-redef,unused-ignore]
                DagBag,
                sync_bag_to_db,
            )

        bag = DagBag(str(ROOT / "example_dags"))
        dag = bag.get_dag("babou_video_pipeline")
        if dag is None:
            raise SystemExit("babou_video_pipeline did not load from example_dags/")
        if sync_bag_to_db is not None:
            # Airflow 3.1's dag.test() needs the DAG serialised in the DB first (as `airflow dags
            # test` does it): "Cannot create DagRun ... because the dag is not serialized".
            from airflow.dag_processing.bundles.manager import DagBundlesManager

            DagBundlesManager().sync_bundles_to_db()
            sync_bag_to_db(bag, "dags-folder", None)
        run_started = time.monotonic()
        dag_run = dag.test()
        run_seconds = time.monotonic() - run_started
        return _summarise(dag_run, run_seconds, time.monotonic() - started)


def _summarise(dag_run, run_seconds: float, total_seconds: float) -> int:  # type: ignore[no-untyped-def]
    tis = sorted(dag_run.get_task_instances(), key=lambda ti: (ti.start_date is None, ti.start_date))
    print(f"\nDAG run {dag_run.run_id}: {dag_run.state} in {run_seconds:.1f} s")
    for ti in tis:
        seconds = (ti.end_date - ti.start_date).total_seconds() if ti.start_date and ti.end_date else 0.0
        ids = {}
        for key in ("project_id", "chapter_id", "prompt_id", "export_id"):
            value = ti.xcom_pull(task_ids=ti.task_id, key=key)
            if value:
                ids[key] = value
        print(f"  {ti.task_id:<28} {ti.state!s:<8} {seconds:5.1f} s  {ids or ''}")
    result = next((ti.xcom_pull(task_ids=ti.task_id) for ti in tis if ti.task_id == "download_video"), None)
    if dag_run.state != "success" or not result:
        print("\nThe pipeline did not finish; see the task log lines above.")
        return 1
    path = Path(result["path"])
    print(f"\nMP4: {path} ({result['size']} bytes, sha256 {result['sha256'][:16]}...)")
    print(_describe_video(path))
    print(f"Demo finished in {total_seconds:.1f} s (after install).")
    return 0


def _describe_video(path: Path) -> str:
    try:
        import av
    except ImportError:
        return "  (install PyAV to print the stream details)"
    with av.open(str(path)) as container:
        streams = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams)
        # The emulator draws one title card (a keyframe) per chapter, in playback order.
        cards = [f"{float(frame.time or 0):.1f}" for frame in container.decode(video=0) if frame.key_frame]
        seconds = container.duration / 1e6
        return (
            f"  opens as a {container.format.name} container with {streams}, {seconds:.1f} s;"
            f" chapter title cards start at {', '.join(cards)} s"
        )


if __name__ == "__main__":
    sys.exit(main())
