"""Many worker processes on one API key: 429s with per-process budgets vs the host's shared budget.

Run from the repository root::

    python benchmarks/many_processes.py                                  # 8 and 16 processes, 20 s each
    python benchmarks/many_processes.py --procs 4 --seconds 5 --no-write   # a quick look, not written

One emulator (``--rate-limit 20 --rate-burst 20``, set through ``PATCH /_emulator/config``) and
one project. For each process count and each mode, N worker processes (a ``BabouHook`` each, as
N mapped tasks of a LocalExecutor or Celery worker would have) call ``hook.get_project`` in a loop
for ``--seconds`` seconds, on a connection with ``rate_limit`` 20 (the hook's defaults otherwise:
a 429 is retried after its ``Retry-After``, the key paused and slowed):

- ``shared off``: ``BABOU_BUDGET_DIR=off``, every process its own budget (as before this change);
- ``shared on``: a fresh budget directory, one budget for the host's processes on the key.

The workers import Airflow, resolve the connection and join the budget first, then all start
together. Reported, from the emulator's counters of the key during the window: requests, 429s
and their share, successful requests per second; and from the workers: calls completed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = Path(__file__).resolve().parent / "many_processes_results.md"
RATE = 20


def worker(project_id: str) -> None:
    """One process: get ready, wait for ``go <end>``, call ``get_project`` until then; print counts."""
    from airflow_provider_babou import budget as _budget
    from airflow_provider_babou.exceptions import BabouError
    from airflow_provider_babou.hooks.babou import BabouHook

    hook = BabouHook("babou_bench")
    config = hook.config
    budget = _budget.budget_for(_budget.budget_key(config.base_url, config.api_key), config.rate_limit)
    print(json.dumps({"ready": True, "shared": budget.shared}), flush=True)
    end = float(sys.stdin.readline().split()[1])
    calls = errors = 0
    while time.monotonic() < end:
        try:
            hook.get_project(project_id)
            calls += 1
        except BabouError:
            errors += 1
    print(json.dumps({"calls": calls, "errors": errors}), flush=True)


def answer(child: subprocess.Popen[str], field: str) -> dict[str, Any]:
    """The worker's next JSON line with ``field`` (its log lines, on stdout too, are passed over)."""
    assert child.stdout is not None
    while line := child.stdout.readline():
        if line.startswith("{") and field in (data := json.loads(line)):
            return data
    raise RuntimeError(f"worker {child.pid} ended without {field!r}")


def run(control: Any, api_url: str, key: str, procs: int, shared: bool, seconds: float) -> dict[str, Any]:
    """One cell: a reset emulator limited to RATE, ``procs`` workers for ``seconds``; its figures."""
    import httpx

    control.reset()
    control.configure(rate_limit=RATE, rate_burst=RATE)
    project = httpx.post(
        f"{api_url}/projects", json={"name": "bench"}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()["id"]
    time.sleep(1.5)  # the emulator's bucket full again
    with tempfile.TemporaryDirectory(prefix="babou-bench-budget-") as budget_dir:
        env = {
            **os.environ,
            "BABOU_BUDGET_DIR": budget_dir if shared else "off",
            "AIRFLOW_CONN_BABOU_BENCH": json.dumps(
                {"conn_type": "babou", "host": api_url, "password": key, "extra": {"rate_limit": RATE}}
            ),
        }
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", project],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(procs)
        ]
        try:
            readies = [answer(c, "ready") for c in children]
            assert all(r["shared"] is shared for r in readies), readies
            before = control.stats(key)["key"]
            go = time.monotonic()
            for c in children:
                c.stdin.write(f"go {go + seconds}\n")  # type: ignore[union-attr]
                c.stdin.flush()  # type: ignore[union-attr]
            results = [answer(c, "calls") for c in children]
            wall = time.monotonic() - go
            after = control.stats(key)["key"]
        finally:
            for c in children:
                if c.poll() is None:
                    c.kill()
                c.wait(30)
    requests = after["requests"] - before["requests"]
    responses = {s: n - before["responses"].get(s, 0) for s, n in after["responses"].items()}
    throttled = responses.get("429", 0)
    ok = responses.get("200", 0)
    return {
        "procs": procs,
        "mode": "shared on" if shared else "shared off",
        "requests": requests,
        "429": throttled,
        "share": throttled / requests if requests else 0.0,
        "ok": ok,
        "ok_per_s": ok / wall,
        "calls": sum(r["calls"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "wall": wall,
    }


def take_cost(count: int = 20_000) -> tuple[float, float]:
    """Microseconds per ``KeyBudget.take()`` in one process: in-process bucket, shared (file) bucket."""
    from airflow_provider_babou.budget import KeyBudget

    costs = []
    with tempfile.TemporaryDirectory(prefix="babou-bench-budget-") as budget_dir:
        for state_file in (None, os.path.join(budget_dir, "key")):
            budget = KeyBudget(1e9, state_file=state_file)  # never short of tokens
            started = time.perf_counter()
            for _ in range(count):
                budget.take()
            costs.append((time.perf_counter() - started) / count * 1e6)
    return costs[0], costs[1]


def table(cells: list[dict[str, Any]]) -> str:
    rows = [
        "| processes | budget | requests | 429 (share) | 200s per s | calls done | calls failed | window s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        rows.append(
            f"| {c['procs']} | {c['mode']} | {c['requests']:,} | {c['429']:,} ({c['share']:.1%}) | "
            f"{c['ok_per_s']:.1f} | {c['calls']:,} | {c['errors']} | {c['wall']:.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", metavar="PROJECT_ID", help=argparse.SUPPRESS)
    parser.add_argument("--procs", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return

    from airflow_provider_babou.emulator import DEMO_API_KEY, EmulatorControl, EmulatorProcess

    home = tempfile.mkdtemp(prefix="babou-bench-home-")
    os.environ["AIRFLOW_HOME"] = home  # the workers never touch a real AIRFLOW_HOME
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    cells = []
    started = time.monotonic()
    with EmulatorProcess(["--rate-limit", str(RATE), "--rate-burst", str(RATE)]) as emu:
        control = EmulatorControl(emu.url)
        for procs in args.procs:
            for shared in (False, True):
                cell = run(control, emu.api_url, DEMO_API_KEY, procs, shared, args.seconds)
                print(json.dumps(cell), flush=True)
                cells.append(cell)
    print(table(cells))
    own, shared = take_cost()
    print(f"take(): {own:.1f} us in-process, {shared:.1f} us shared")
    if args.no_write:
        return
    import httpx

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    argv = " ".join(sys.argv[1:])
    command = "python benchmarks/many_processes.py" + (f" {argv}" if argv else "")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{os.cpu_count()} shared cores ({platform.machine()}, other work running)"
    machine += f", Python {platform.python_version()}"
    RESULTS.write_text(
        f"""# Many worker processes on one key: per-process budgets vs the host's shared budget

Written by `benchmarks/many_processes.py` (its docstring has the method). N worker processes, a
`BabouHook` each, call `get_project` in a loop on one key that the emulator limits to {RATE}
requests/s (burst {RATE}); the connection's `rate_limit` is {RATE}. "shared off" is
`BABOU_BUDGET_DIR=off` (each process its own budget, as before); "shared on" is one budget for
the host's processes on the key. Requests and 429s are the emulator's counters for the key
during the window; a 429 is retried by the hook (after its `Retry-After`), so a call may cost
several requests.

Command: `{command}`

- Date: {when}; machine: {machine}; httpx {httpx.__version__}; package at git {git.stdout.strip()}.
- Whole run: {time.monotonic() - started:.0f} s; window {args.seconds:g} s per cell.
- One `KeyBudget.take()` costs {own:.1f} µs in-process and {shared:.1f} µs shared (flock, read, write
  of the key's 72-byte file; 20,000 takes, one process, no contention).

{table(cells)}
"""
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
