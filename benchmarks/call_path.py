"""Count the provider's functions and files a call crosses, from operator to HTTP, by tracing it.

Runs ``BabouStartExportOperator(wait_for_completion=False).execute`` against a fresh emulator
(project, chapter and completed prompt made beforehand) under ``sys.setprofile`` and reports:

* every distinct function of ``airflow_provider_babou`` (the emulator excluded) called during
  ``execute``, and the files they live in, with the number of HTTP requests sent;
* every distinct function called while ``BabouHook.start_export`` runs (the hook's side alone);
* the chain of the package's frames on the stack when the export's POST is sent (operator -> HTTP).

Usage: ``source .ci/env.sh && python benchmarks/call_path.py`` (run it in a checkout of another
commit to compare; it only uses public names that exist before and after the redesign).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="babou-callpath-"))
KEY = "sk-bab-callpath-key"


class _TI:
    dag_id, task_id, run_id, map_index, try_number = "d", "t", "r", -1, 1

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.xcoms.get(key)


def main() -> None:
    import httpx

    import airflow_provider_babou
    from airflow_provider_babou.emulator import EmulatorProcess
    from airflow_provider_babou.hooks.babou import BabouHook
    from airflow_provider_babou.operators.babou import BabouStartExportOperator

    package = str(Path(airflow_provider_babou.__file__).parent)
    emulator_dir = os.path.join(package, "emulator")
    args = ["--api-key", KEY, "--rate-limit", "0", "--prompt-seconds", "0.2"]
    args += ["--export-processing-seconds", "5"]
    with EmulatorProcess(args) as emulator:
        conn = {"conn_type": "babou", "host": emulator.api_url, "password": KEY}
        os.environ["AIRFLOW_CONN_BABOU_DEFAULT"] = json.dumps(conn)
        hook = BabouHook()
        project = hook.create_project(name="call path")
        chapter = hook.create_chapter(project.id, name="one")
        receipt = hook.submit_prompt(project.id, chapter.id, content="A title card")
        hook.wait_for_prompt(project.id, chapter.id, receipt.prompt_id, timeout=30)
        hook.close()

        called: dict[tuple[str, str], None] = {}
        in_start: dict[tuple[str, str], None] = {}
        depth = [0]
        original_start = BabouHook.start_export

        def start_export(self: Any, *args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                return original_start(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        post_chain: list[tuple[str, str]] = []
        requests: list[str] = []
        original_send = httpx.Client.send

        def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            requests.append(f"{request.method} {request.url.path}")
            if request.method == "POST" and not post_chain:
                frame = sys._getframe(1)
                while frame is not None:
                    if _ours(frame.f_code.co_filename, package, emulator_dir):
                        post_chain.append(_name(frame, package))
                    frame = frame.f_back  # type: ignore[assignment]
            return original_send(self, request, **kwargs)

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event == "call" and _ours(frame.f_code.co_filename, package, emulator_dir):
                called.setdefault(_name(frame, package), None)
                if depth[0]:
                    in_start.setdefault(_name(frame, package), None)

        httpx.Client.send = send  # type: ignore[method-assign]
        BabouHook.start_export = start_export  # type: ignore[method-assign]
        operator = BabouStartExportOperator(task_id="t", project_id=project.id, wait_for_completion=False)
        context: Any = {"ti": _TI()}
        sys.setprofile(profile)
        try:
            operator.execute(context)
        finally:
            sys.setprofile(None)
            httpx.Client.send = original_send  # type: ignore[method-assign]
            BabouHook.start_export = original_start  # type: ignore[method-assign]

    chain = list(reversed(post_chain))
    start_files = len({f for f, _ in in_start})
    print(f"BabouHook.start_export(): {len(in_start)} functions in {start_files} files")
    files = len({f for f, _ in called})
    print(f"execute(): {len(called)} functions in {files} files, {len(requests)} requests")
    print("  requests:", ", ".join(requests))
    if os.environ.get("CALL_PATH_LIST"):
        for file, func in called:
            print(f"      {file}: {func}")
    print(f"execute() -> the POST: {len(chain)} functions in {len({f for f, _ in chain})} files")
    for file, func in chain:
        print(f"    {file}: {func}")


def _ours(filename: str, package: str, emulator_dir: str) -> bool:
    return filename.startswith(package) and not filename.startswith(emulator_dir)


def _name(frame: Any, package: str) -> tuple[str, str]:
    return os.path.relpath(frame.f_code.co_filename, package), frame.f_code.co_qualname


if __name__ == "__main__":
    main()
