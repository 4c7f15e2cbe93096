"""Many deferred export waits in one triggerer-like event loop, on a rate-limited key:
``BabouExportTrigger`` side by side with the HTTP provider's ``HttpEventTrigger``.

Run from the repository root (after ``source .ci/env.sh``)::

    python benchmarks/many_waits.py --two-process        # N = 100, 1,000, 10,000; writes the results
    python benchmarks/many_waits.py --quick              # N = 50, 5 s exports: checks it works (~1 min)

For every measured cell (a side at a scale N) the script starts a fresh emulator on a free
127.0.0.1 port (``EmulatorProcess``, ``--port 0``; stopped by PID in a ``finally``), with prompts
done at once and exports that render ``--export-seconds`` (queued 0 s by default). With the rate
limit off it creates N projects, each with a completed prompt, through one keep-alive
``httpx.Client``. It starts the event-loop process(es) (one subprocess per side, so one side's
CPU and memory never pollute the other's), waits until they have imported everything, then POSTs
the N exports (recording each POST's time: the emulator completes an export exactly
queued + processing seconds after it), sets ``rate_limit``/``rate_burst`` with
``PATCH /_emulator/config``, snapshots the key's counters and says "go".

Each subprocess builds its triggers (only public constructor kwargs) and ``run()``\\s them all at
once with ``asyncio.gather`` in one event loop, recording when each wait's event came and what
it said. Afterwards the parent reads the key's counters again; the differences are the waits'
traffic. Figures per cell:

* succeeded / gave up: the wait's event says success, or anything else (an error or timeout
  event, the trigger raising, no event by the deadline),
* requests sent and 429 answers: emulator counters for the key, all routes, during the waits,
* CPU seconds of the event-loop process (``time.process_time`` around the waits, trigger
  construction included; imports and the first connection lookup excluded, see "Steady state"
  below), and its peak RSS increase (``VmHWM`` reset first),
* TCP connections: the emulator's distinct client ports for the key during the waits (loopback
  reuses ports, so this is a floor) and the client's own count of ``loop.create_connection``,
* detection lag p50/p99: event time minus the export's completion time (POST time, the midpoint
  of the request, + queued + processing), over the successful waits,
* wall time from "go" to the last event, and the emulator's CPU seconds during the waits,
* loop stalls: how long the event loop ran callbacks without polling for I/O, longest and in
  total above 0.2 s (what Airflow's triggerer warns about), timed by the loop's selector.

Steady state (issue 18, N = 10, where both sides spend about a tenth of a CPU second): the
figures are those of a triggerer that has been running, for both sides alike.

* The first connection lookup of a process imports the task SDK's connection and secret-cache
  modules and adds the key to the secrets masker: ~13 ms of CPU, then ~1 ms a lookup. A
  running triggerer paid that once, long ago. Each child does one lookup of its own side's
  connection through the SDK (``BaseHook.aget_connection``, not our hook, whose resolved-
  connection cache stays cold) before "go"; its CPU is reported apart ("first lookup"), and the
  cold figure (window + first lookup) is in the ratios too. ``--no-warm-up`` leaves it in the
  window.
* Loop stalls used to be timed with a 0.1 s timer in the loop (the shape of the triggerer's
  ``block_watchdog``). Its ten wake-ups a second cost ~0.2 ms of CPU each on this machine
  (0.08 s per 45 s in a process doing nothing else), counted in both sides' figures and part
  of neither trigger: at N = 10 it was about 80% of ours (0.10 s) and 40% of the peer's. The
  selector times the loop now, with no wake-ups of its own. A real triggerer does run such a
  watchdog, whatever its triggers: ``--watchdog`` adds the 0.1 s timer back to both sides.

Bounds: the triggers' ``end_time`` is ``--deadline`` seconds after "go"; an ``asyncio.wait_for``
per wait cuts a wait off 30 s after it (the peer, which has no deadline of its own, at it); each
subprocess is killed (by PID) when it overruns the deadline by 120 s; setup calls time out after
30 s each.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from _memory import peak_rss_mib, reset_peak  # benchmarks/ is on sys.path when run as a script

KEY = "sk-bab-many-waits-bench"
BABOU_CONN_ID = "babou_default"
HTTP_CONN_ID = "http_babou"
CHECK_PATH = "many_waits_check.export_completed"  # benchmarks/ is sys.path[0] in the child
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "many_waits_results.md"
EXPORT_ROUTE = "GET /api/v1/projects/{project_id}/export"
READY_TIMEOUT = 180.0  # importing Airflow in two processes at once on a busy 2-core machine
KILL_GRACE = 120.0
SIDE_NAMES = {"ours": "BabouExportTrigger", "peer": "HttpEventTrigger"}
#: Seconds of loop work at a stretch that count as a stall (the triggerer's warning threshold).
STALL = 0.2


# -- helpers shared by both processes ---------------------------------------------------------------


def _read_line(stream: Any, timeout: float) -> str | None:
    """One line from a pipe or stdin within ``timeout`` seconds (None on timeout or EOF)."""
    fd = stream.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            data = os.read(fd, 1)  # byte by byte: nothing after the line may be swallowed
            if not data:
                return None
            buffer += data
    return buffer.decode(errors="replace").strip()


# -- the event-loop process (one per side, or two sharing the key) --------------------------------


class StallSelector(selectors.DefaultSelector):
    """The event loop's selector, timing the loop's work between two polls for I/O (a stall is a
    stretch of callbacks that keeps the loop from its timers and sockets): no wake-ups of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.back: float | None = None  # when the last poll returned
        self.longest = 0.0
        self.stalled = 0.0

    def select(self, timeout: float | None = None) -> Any:
        if self.back is not None:
            busy = time.monotonic() - self.back
            self.longest = max(self.longest, busy)
            if busy > STALL:
                self.stalled += busy
        ready = super().select(timeout)
        self.back = time.monotonic()
        return ready


def child(spec_path: str, result_path: str) -> None:
    """Import, say READY, wait for GO, run every wait in one event loop, write the figures."""
    import asyncio

    spec = json.loads(Path(spec_path).read_text())
    side = spec["side"]
    from airflow_provider_babou._compat import aget_connection

    conn_id = BABOU_CONN_ID if side == "ours" else HTTP_CONN_ID
    if side == "ours":
        # Imported before GO on both sides, as in a running triggerer: the hook imports its aiohttp
        # client on the first wait, not with the trigger class.
        import airflow_provider_babou.hooks._async  # noqa: F401
        from airflow_provider_babou.triggers.babou import BabouExportTrigger

        def make(project_id: str, end_time: float) -> Any:
            # As BabouStartExportOperator does: the receipt's estimated_time, as UNIX times.
            window = expected.get(project_id)
            return BabouExportTrigger(
                babou_conn_id=BABOU_CONN_ID,
                project_id=project_id,
                end_time=end_time,
                poll_interval=spec["poll_interval"],
                poll_backoff=spec["poll_backoff"],
                max_poll_interval=spec["max_poll_interval"],
                **({"expected": window} if window else {}),
            )

    else:
        import aiohttp  # noqa: F401 - imported before GO, as in a running triggerer
        import many_waits_check  # noqa: F401
        from airflow.providers.http.triggers.http import HttpEventTrigger

        def make(project_id: str, end_time: float) -> Any:
            return HttpEventTrigger(
                response_check_path=CHECK_PATH,
                http_conn_id=HTTP_CONN_ID,
                method="GET",
                endpoint=f"projects/{project_id}/export",
                poll_interval=spec["peer_poll_interval"],
            )

    def succeeded(payload: Any) -> str:
        status = payload.get("status") if isinstance(payload, dict) else None
        return str(status) if status else f"event {payload!r}"[:80]

    async def consume(trigger: Any, record: dict[str, Any]) -> None:
        try:
            async for event in trigger.run():
                if record["at"] is None:
                    record["at"] = time.time()
                    record["status"] = succeeded(event.payload)
        except Exception as exc:
            if record["at"] is None:
                record["status"] = f"raised {type(exc).__name__}"

    async def bounded(trigger: Any, bound: float) -> dict[str, Any]:
        late = bound - spec["deadline"]
        missing = f"no event by deadline + {late:.0f} s" if late else "no event by the deadline"
        record: dict[str, Any] = {"status": missing, "at": None}
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(consume(trigger, record), bound)
        return record

    async def waits() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        connects = 0
        create_connection = loop.create_connection

        async def counting(*args: Any, **kwargs: Any) -> Any:  # httpx (anyio) and aiohttp both use it
            nonlocal connects
            connects += 1
            return await create_connection(*args, **kwargs)

        loop.create_connection = counting  # type: ignore[method-assign]

        async def watchdog() -> None:  # --watchdog: the triggerer's block_watchdog, on both sides
            wakeups = 0
            while wakeups >= 0:  # until cancelled
                await asyncio.sleep(0.1)
                wakeups += 1

        reset_peak()
        rss_before = peak_rss_mib()
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = time.process_time()
        started = time.time()
        end_time = started + spec["deadline"]
        triggers = [make(pid, end_time) for pid in spec["project_ids"]]
        # Our triggers keep their own deadline (a wait silent 30 s past it is cut off and counted as
        # such); the peer has none, so the bound is its deadline.
        bound = spec["deadline"] + (30.0 if side == "ours" else 0.0)
        watcher = asyncio.ensure_future(watchdog()) if spec["watchdog"] else None
        selector.reset()
        records = await asyncio.gather(*(bounded(t, bound) for t in triggers))
        cpu = time.process_time() - cpu_before
        if watcher is not None:
            watcher.cancel()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "started": started,
            "ended": time.time(),
            "cpu_s": cpu,
            "user_s": usage.ru_utime - usage_before.ru_utime,
            "sys_s": usage.ru_stime - usage_before.ru_stime,
            "peak_rss_increase_mib": peak_rss_mib() - rss_before,
            "client_connects": connects,
            "loop_stall_max_s": selector.longest,
            "loop_stalled_s": selector.stalled,
            "warmup_cpu_s": warmup_cpu,
            "waits": [[r["status"], r["at"]] for r in records],
        }

    # Loaded in a running triggerer (its supervisor); else the first connection lookup imports it.
    import airflow.sdk.execution_time.supervisor  # noqa: F401
    from airflow.sdk.bases.hook import BaseHook

    # A running triggerer has looked a connection up before (see "Steady state" in the docstring):
    # the first lookup's one-time work, measured apart, the same on both sides.
    warmup_cpu = None
    if spec["warm_up"]:
        before = time.process_time()
        asyncio.run(aget_connection(BaseHook, conn_id))
        warmup_cpu = time.process_time() - before

    print("READY", flush=True)
    # From here on nothing may fill the stdout pipe (the parent stops reading it): point fd 1 at
    # stderr, which the parent sends to a log file.
    os.dup2(2, 1)
    line = _read_line(sys.stdin, READY_TIMEOUT + 600)
    if line != "GO":
        raise SystemExit(f"expected GO on stdin, got {line!r}")
    windows = Path(spec_path.replace(".spec.json", ".expected.json"))
    expected: dict[str, list[float]] = json.loads(windows.read_text()) if windows.exists() else {}
    selector = StallSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        if os.environ.get("MANY_WAITS_PROFILE"):  # a cProfile of the waits, for finding CPU
            import cProfile

            # CPU time of this thread (the loop's), not wall time: the machine is shared.
            profile = cProfile.Profile(time.thread_time)
            result = profile.runcall(loop.run_until_complete, waits())
            profile.dump_stats(os.environ["MANY_WAITS_PROFILE"] + f".{side}")
        else:
            result = loop.run_until_complete(waits())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    Path(result_path).write_text(json.dumps(result))


# -- the parent: emulator, setup, measurement, report ---------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc; 0.0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _setup_projects(client: Any, n: int) -> list[str]:
    """N projects, each with one chapter whose prompt is already completed (prompt_seconds 0)."""
    ids = []
    for i in range(n):
        project = client.post("/projects", json={"name": f"wait {i}"}).raise_for_status().json()["id"]
        chapter = client.post(f"/projects/{project}/chapters", json={"name": "c", "duration": 10})
        chapter_id = chapter.raise_for_status().json()["id"]
        client.post(
            f"/projects/{project}/chapters/{chapter_id}/prompt", json={"content": "go"}
        ).raise_for_status()
        ids.append(project)
    return ids


def _spawn(
    side: str, project_ids: list[str], args: argparse.Namespace, tmp: Path, tag: str
) -> dict[str, Any]:
    spec = {
        "side": side,
        "project_ids": project_ids,
        "deadline": args.deadline,
        "poll_interval": args.poll_interval,
        "poll_backoff": args.poll_backoff,
        "max_poll_interval": args.max_poll_interval,
        "peer_poll_interval": args.peer_poll_interval,
        "watchdog": args.watchdog,
        "warm_up": args.warm_up,
    }
    spec_path = tmp / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    result_path = tmp / f"{tag}.result.json"
    log_path = tmp / f"{tag}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path), str(result_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    return {
        "proc": proc,
        "log": log,
        "log_path": log_path,
        "result_path": result_path,
        "n": len(project_ids),
        "ids": project_ids,
        "expected_path": tmp / f"{tag}.expected.json",
    }


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_cell(side: str, n: int, procs: int, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one side at one scale, in ``procs`` event-loop processes sharing the key."""
    import httpx

    from airflow_provider_babou.emulator import EmulatorControl, EmulatorProcess
    from airflow_provider_babou.polling import expected_window

    cell_started = time.monotonic()
    emulator_args = [
        *("--api-key", KEY, "--rate-limit", "0", "--rate-burst", str(args.burst)),
        *("--prompt-seconds", "0", "--export-queued-seconds", str(args.queued_seconds)),
        *("--export-processing-seconds", str(args.export_seconds - args.queued_seconds)),
    ]
    emulator = EmulatorProcess(emulator_args)
    children: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="many-waits-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            emulator.start()
            control = EmulatorControl(emulator.url)
            # As the README advises: the connection's rate_limit extra is the key's limit (each
            # process of a --two-process run starts there, and adapts down on 429s).
            babou_conn = {"conn_type": "babou", "host": control.api_url, "password": KEY}
            os.environ["AIRFLOW_CONN_BABOU_DEFAULT"] = json.dumps(
                {**babou_conn, "extra": {"rate_limit": args.rate}}
            )
            os.environ["AIRFLOW_CONN_HTTP_BABOU"] = json.dumps(
                {"conn_type": "http", "host": control.api_url, "extra": {"Authorization": f"Bearer {KEY}"}}
            )
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=control.api_url, headers=headers, timeout=30) as client:
                t = time.monotonic()
                project_ids = _setup_projects(client, n)
                setup_s = time.monotonic() - t
                share = math.ceil(n / procs)
                for i in range(procs):
                    part = project_ids[i * share : (i + 1) * share]
                    children.append(_spawn(side, part, args, tmp, f"{side}-{n}-{i}"))
                for c in children:
                    assert c["proc"].stdout is not None
                    line = None
                    deadline = time.monotonic() + READY_TIMEOUT
                    while line != "READY" and time.monotonic() < deadline:
                        line = _read_line(c["proc"].stdout, deadline - time.monotonic())
                        if line is None:
                            break
                    if line != "READY":
                        tail = c["log_path"].read_text(errors="replace")[-3000:]
                        raise RuntimeError(f"event-loop process not ready in {READY_TIMEOUT:.0f} s:\n{tail}")
                posted = {}
                windows: dict[str, tuple[float, float] | None] = {}
                for pid in project_ids:
                    t0 = time.time()
                    receipt = client.post(f"/projects/{pid}/export").raise_for_status().json()
                    posted[pid] = (t0 + time.time()) / 2
                    windows[pid] = expected_window(receipt.get("estimated_time"), t0)
                if args.estimate:
                    for c in children:
                        part = {p: w for p, w in windows.items() if p in set(c["ids"]) and w}
                        c["expected_path"].write_text(json.dumps(part))
            control.configure(rate_limit=args.rate, rate_burst=args.burst)
            before = control.stats(KEY)["key"]
            emu_cpu_before = _proc_cpu_s(emulator.pid)
            for c in children:
                assert c["proc"].stdin is not None
                c["proc"].stdin.write(b"GO\n")
                c["proc"].stdin.flush()
            go = time.time()
            _say(f"{side} N={n} procs={procs}: setup {setup_s:.0f} s, waits started")
            for c in children:
                limit = max(1.0, go + args.deadline + KILL_GRACE - time.time())
                try:
                    c["proc"].wait(limit)
                except subprocess.TimeoutExpired:
                    _kill(c["proc"])
            after = control.stats(KEY)["key"]
            emu_cpu = _proc_cpu_s(emulator.pid) - emu_cpu_before
        finally:
            for c in children:
                _kill(c["proc"])
                c["log"].close()
            emulator.stop()  # SIGTERM by PID, SIGKILL after 5 s
        results = []
        for c in children:
            if c["proc"].returncode != 0 or not c["result_path"].exists():
                tail = c["log_path"].read_text(errors="replace")[-3000:]
                raise RuntimeError(f"event-loop process failed ({c['proc'].returncode}):\n{tail}")
            result = json.loads(c["result_path"].read_text())
            result["log_lines"] = len(c["log_path"].read_bytes().splitlines())
            results.append(result)

    completion = {pid: t + args.export_seconds for pid, t in posted.items()}
    statuses: dict[str, int] = {}
    lags: list[float] = []
    offset = 0
    for c, result in zip(children, results, strict=True):
        ids = project_ids[offset : offset + c["n"]]
        offset += c["n"]
        for pid, (status, at) in zip(ids, result["waits"], strict=True):
            statuses[status] = statuses.get(status, 0) + 1
            if status == "success" and at is not None:
                lags.append(at - completion[pid])
    routes = _diff(after["requests_by_route"], before["requests_by_route"])
    responses = _diff(after["responses"], before["responses"])
    requests = sum(routes.values())
    too_many = responses.get("429", 0)
    cell = {
        "side": side,
        "n": n,
        "procs": procs,
        "succeeded": statuses.get("success", 0),
        "gave_up": {k: v for k, v in statuses.items() if k != "success"},
        "requests": requests,
        "routes": routes,
        "responses": responses,
        "r429": too_many,
        "share429": too_many / requests if requests else 0.0,
        "cpu_s": sum(r["cpu_s"] for r in results),
        "warmup_cpu_s": sum(r.get("warmup_cpu_s") or 0.0 for r in results),
        "cpu_each": [round(r["cpu_s"], 1) for r in results],
        "user_s": sum(r["user_s"] for r in results),
        "sys_s": sum(r["sys_s"] for r in results),
        "peak_rss_increase_mib": max(r["peak_rss_increase_mib"] for r in results),
        "conns_emulator": after["connections"] - before["connections"],
        "conns_client": sum(r["client_connects"] for r in results),
        "lag_p50": _percentile(lags, 50),
        "lag_p99": _percentile(lags, 99),
        "wall_s": max(r["ended"] for r in results) - go,
        "emulator_cpu_s": emu_cpu,
        "log_lines": sum(r["log_lines"] for r in results),
        "loop_stall_max_s": max(r["loop_stall_max_s"] for r in results),
        "loop_stalled_s": max(r["loop_stalled_s"] for r in results),
        "setup_s": setup_s,
        "cell_s": time.monotonic() - cell_started,
    }
    _say(
        f"{side} N={n} procs={procs}: {cell['succeeded']}/{n} succeeded, {requests} requests, "
        f"{too_many} x 429, CPU {_fmt_cpu(cell['cpu_s'])} s, wall {cell['wall_s']:.0f} s, "
        f"cell {cell['cell_s']:.0f} s"
    )
    return cell


# -- report ------------------------------------------------------------------------------------------


def _fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_lag(cell: dict[str, Any]) -> str:
    if cell["lag_p50"] is None:
        return "n/a"
    return f"{cell['lag_p50']:.1f} / {cell['lag_p99']:.1f}"


def _fmt_gave_up(cell: dict[str, Any]) -> str:
    total = sum(cell["gave_up"].values())
    if not total:
        return "0"
    return f"{total:,} ({', '.join(f'{k}: {v:,}' for k, v in sorted(cell['gave_up'].items()))})"


def _side_label(cell: dict[str, Any]) -> str:
    label = SIDE_NAMES[cell["side"]]
    if cell["procs"] > 1:
        label += f", {cell['procs']} processes x {math.ceil(cell['n'] / cell['procs']):,} (one key)"
    return label


def _fmt_cpu(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 1 else f"{seconds:.1f}"


def render_table(cells: list[dict[str, Any]]) -> str:
    head = (
        "| N | side | succeeded | gave up | requests | 429 (share) | CPU s (event loop; + first lookup) | "
        "TCP conns emulator / client | lag p50 / p99 s | wall s | loop stall max s | emulator CPU s | "
        "peak RSS + MiB |\n"
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for c in cells:
        cpu = _fmt_cpu(c["cpu_s"])
        if c["procs"] > 1:
            cpu += f" ({' + '.join(str(x) for x in c['cpu_each'])})"
        if c.get("warmup_cpu_s"):
            cpu += f"; + {_fmt_cpu(c['warmup_cpu_s'])}"
        rows.append(
            f"| {_fmt_int(c['n'])} | {_side_label(c)} | {_fmt_int(c['succeeded'])} | {_fmt_gave_up(c)} | "
            f"{_fmt_int(c['requests'])} | {_fmt_int(c['r429'])} ({c['share429']:.0%}) | {cpu} | "
            f"{_fmt_int(c['conns_emulator'])} / {_fmt_int(c['conns_client'])} | {_fmt_lag(c)} | "
            f"{c['wall_s']:.0f} | {c['loop_stall_max_s']:.2f} | {c['emulator_cpu_s']:.1f} | "
            f"{c['peak_rss_increase_mib']:,.0f} |"
        )
    return head + "\n".join(rows) + "\n"


def render_ratios(cells: list[dict[str, Any]]) -> str:
    pairs = []
    for ours in cells:
        if ours["side"] != "ours" or ours["procs"] != 1:
            continue
        peer = next(
            (c for c in cells if c["side"] == "peer" and c["n"] == ours["n"] and c["procs"] == 1), None
        )
        if peer is not None:
            pairs.append((ours, peer))
    if not pairs:
        return ""

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    lines = [
        "| N | CPU ours / peer | CPU with the first lookup (cold) | requests ours / peer | "
        "429 share ours / peer | succeeded ours / peer |",
        "|---:|---:|---:|---:|---:|---:|",
    ]

    def cold(cell: dict[str, Any]) -> float:
        return cell["cpu_s"] + cell.get("warmup_cpu_s", 0.0)

    for ours, peer in pairs:
        lines.append(
            f"| {_fmt_int(ours['n'])} | {ratio(ours['cpu_s'], peer['cpu_s'])} | "
            f"{ratio(cold(ours), cold(peer))} | "
            f"{ratio(ours['requests'], peer['requests'])} | "
            f"{ours['share429']:.0%} / {peer['share429']:.0%} "
            f"({ratio(ours['share429'], peer['share429'])}) | "
            f"{_fmt_int(ours['succeeded'])} / {_fmt_int(peer['succeeded'])} |"
        )
    return "\n".join(lines) + "\n"


def _versions() -> str:
    from importlib import metadata

    names = ["apache-airflow", "apache-airflow-providers-http", "httpx", "aiohttp"]
    found = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "airflow_provider_babou"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + (" (package modified)" if dirty else "")


def _procs_note(cell: dict[str, Any]) -> str:
    return f" x{cell['procs']} processes" if cell["procs"] > 1 else ""


def render_section(
    cells: list[dict[str, Any]], args: argparse.Namespace, command: str, total_s: float
) -> str:
    cores = os.cpu_count()
    settings = (
        f"exports of {args.export_seconds:g} s (queued {args.queued_seconds:g} s), key limited to "
        f"{args.rate:g} requests/s (burst {args.burst}); BabouExportTrigger poll {args.poll_interval:g} s "
        f"x{args.poll_backoff:g} up to {args.max_poll_interval:g} s (defaults), HttpEventTrigger "
        f"poll_interval={args.peer_poll_interval:g} (its other arguments default); deadline "
        f"{args.deadline:g} s after the waits start; BabouExportTrigger "
        + ("given" if args.estimate else "not given")
        + " the receipt's estimated_time; "
        + ("one connection lookup per process before the waits (CPU apart)" if args.warm_up else "no warm-up")
        + ("; a 0.1 s loop watchdog on both sides" if args.watchdog else "")
    )
    lines = [
        f"## {args.label}",
        "",
        f"Command: `{command}`",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {cores} shared cores "
        f"({platform.machine()}, other work running), {_versions()}; package at git {_git_revision()}.",
        f"- Settings: {settings}.",
        f"- Whole run: {total_s / 60:.1f} min. Per cell (setup + waits + teardown): "
        + ", ".join(
            f"{SIDE_NAMES[c['side']]} N={c['n']:,}{_procs_note(c)} {c['cell_s']:.0f} s" for c in cells
        )
        + ".",
        "",
        render_table(cells),
    ]
    ratios = render_ratios(cells)
    if ratios:
        lines += ["Ratios (ours / peer, same N, one process each):", "", ratios]
    lines += [
        "Requests by route and answers by status during the waits:",
        "",
    ]
    for c in cells:
        lines.append(
            f"- {_side_label(c)}, N={c['n']:,}: routes {json.dumps(c['routes'])}; "
            f"statuses {json.dumps(c['responses'])}; CPU user {c['user_s']:.1f} s + sys {c['sys_s']:.1f} s; "
            f"{c['log_lines']:,} log lines; event loop busy > 0.2 s at a stretch for "
            f"{c['loop_stalled_s']:.1f} s in total; setup {c['setup_s']:.0f} s"
        )
    return "\n".join(lines) + "\n"


_INTRO = """# Many deferred export waits: BabouExportTrigger vs HttpEventTrigger

Written by `benchmarks/many_waits.py` (see its docstring for the method). N deferred export
waits run in one triggerer-like event loop (one subprocess per side), on a key the emulator
limits to 50 requests/s (burst 50), side by side with the HTTP provider's `HttpEventTrigger`
polling Get Export Status every 5 s with a response check (what a user would write instead).

- succeeded / gave up: the wait's event says success, or not (error or timeout event, the
  trigger raising, no event by the deadline).
- requests, 429: the emulator's counters for the key during the waits (all routes).
- CPU s: `time.process_time()` of the event-loop process during the waits (imports excluded).
- TCP conns: the emulator's distinct client ports for the key (loopback reuses ports, so a
  floor) / the client process's own count of `loop.create_connection` calls.
- lag: event time minus the export's completion (its POST time + queued + processing), over
  the successful waits.
- The machine is shared (2 cores, other work running): wall times are noisy; CPU seconds per
  process and request counts are the robust figures.

Each `##` section below is one run; the script replaces the section with its `--label`.
"""


def write_results(path: Path, section: str, label: str) -> None:
    text = path.read_text() if path.exists() else _INTRO
    heading = f"## {label}\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("SPEC", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1000, help="headline N (also for --two-process)")
    parser.add_argument("--scales", default=None, help="comma-separated N values (default 100,N,10000)")
    parser.add_argument("--sides", default="ours,peer", help="ours, peer or both (default ours,peer)")
    parser.add_argument("--peer-max-n", type=int, default=10000, help="skip the peer above this N")
    parser.add_argument("--two-process", action="store_true", help="also run 2 processes x N/2 (ours)")
    parser.add_argument("--export-seconds", type=float, default=60.0)
    parser.add_argument("--queued-seconds", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=50.0, help="key rate limit, requests/s")
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--poll-backoff", type=float, default=1.5)
    parser.add_argument("--max-poll-interval", type=float, default=30.0)
    parser.add_argument("--peer-poll-interval", type=float, default=5.0)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds after the waits start")
    parser.add_argument(
        "--estimate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give our triggers the export receipt's estimated_time, as the operator does",
    )
    parser.add_argument(
        "--warm-up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one connection lookup per child before the waits, its CPU reported apart (see the docstring)",
    )
    parser.add_argument(
        "--watchdog",
        action="store_true",
        help="run a 0.1 s timer in the loop on both sides, as the triggerer's block_watchdog does",
    )
    parser.add_argument("--quick", action="store_true", help="N=50, 5 s exports, results not written")
    parser.add_argument("--label", default="before (old trigger)", help="results section heading")
    parser.add_argument("--output", type=Path, default=None, help=f"results file (default {RESULTS})")
    parser.add_argument("--json", type=Path, default=None, help="also dump the raw figures here")
    args = parser.parse_args()

    if args.child:
        child(*args.child)
        return

    command = "python benchmarks/many_waits.py " + " ".join(sys.argv[1:])
    if args.quick:
        args.n, args.export_seconds, args.deadline = 50, 5.0, min(args.deadline, 120.0)
        scales = [50]
    elif args.scales:
        scales = [int(x) for x in args.scales.split(",") if x.strip()]
    else:
        scales = sorted({100, args.n, 10000})
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(sides) - set(SIDE_NAMES)
    if unknown:
        parser.error(f"unknown side(s) {sorted(unknown)}; use ours and/or peer")
    if args.queued_seconds > args.export_seconds:
        parser.error("--queued-seconds must not exceed --export-seconds")
    output = args.output or (None if args.quick else RESULTS)

    # Airflow must never touch a real AIRFLOW_HOME; the children inherit this one.
    home = tempfile.mkdtemp(prefix="many-waits-airflow-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    started = time.monotonic()
    cells: list[dict[str, Any]] = []
    failed: list[str] = []
    try:
        plan = [(side, n, 1) for n in scales for side in sides]
        if args.two_process and "ours" in sides:
            plan.append(("ours", args.n, 2))
        for side, n, procs in plan:
            if side == "peer" and n > args.peer_max_n:
                _say(f"peer N={n}: skipped (above --peer-max-n {args.peer_max_n})")
                continue
            try:
                cells.append(run_cell(side, n, procs, args))
            except Exception as exc:  # one broken cell must not lose the others' figures
                _say(f"{side} N={n} procs={procs} FAILED: {type(exc).__name__}: {exc}")
                failed.append(f"{SIDE_NAMES[side]} N={n:,} x{procs}: {type(exc).__name__}: {str(exc)[:300]}")
            if args.json:
                args.json.write_text(json.dumps(cells, indent=1))
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    section = render_section(cells, args, command, time.monotonic() - started)
    if failed:
        section += "\nCells that failed:\n\n" + "".join(f"- {line}\n" for line in failed)
    out: TextIO = sys.stdout
    out.write("\n" + section)
    if output is not None:
        write_results(output, section, args.label)
        _say(f"wrote {output}")


if __name__ == "__main__":
    main()
