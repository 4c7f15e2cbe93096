"""``babou-emulator``: run the Babou API emulator with uvicorn on a socket we bind ourselves.

Binding first lets ``--port 0`` pick a free port that we can report. Once uvicorn serves, exactly
one line goes to stdout: ``Babou emulator listening on http://HOST:PORT/api/v1``.
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from pydantic import ValidationError

from airflow_provider_babou.emulator.app import create_app
from airflow_provider_babou.emulator.config import DEMO_API_KEY, EmulatorConfig, profile_from
from airflow_provider_babou.emulator.middleware import silence_drop_tracebacks
from airflow_provider_babou.emulator.state import EmulatorState


def _number(kind: type[int] | type[float], low: float, high: float = math.inf) -> Callable[[str], Any]:
    """An argparse ``type``: a finite ``kind`` in ``[low, high]``, else argparse's one-line error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}"
            ) from None
        if not (math.isfinite(value) and low <= value <= high):
            bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: give a finite number {bound}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_NON_NEGATIVE = _number(float, 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="babou-emulator", description="Local Babou REST API emulator.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_number(int, 0, 65535),
        default=8711,
        help="port to bind; 0 picks a free one (default 8711)",
    )
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key, repeatable (default {DEMO_API_KEY})",
    )
    p.add_argument(
        "--expired-key", action="append", dest="expired_keys", default=[], metavar="KEY", help="expired key"
    )
    p.add_argument("--prompt-seconds", type=_NON_NEGATIVE, default=1.5)
    p.add_argument("--export-queued-seconds", type=_NON_NEGATIVE, default=0.5)
    p.add_argument("--export-processing-seconds", type=_NON_NEGATIVE, default=1.5)
    p.add_argument("--asset-seconds", type=_NON_NEGATIVE, default=1.0)
    p.add_argument(
        "--rate-limit", type=_NON_NEGATIVE, default=20.0, help="requests/s per key, 0 = off (default 20)"
    )
    p.add_argument(
        "--rate-burst", type=_number(int, 1), default=40, help="token bucket size per key (default 40)"
    )
    p.add_argument("--faults", default="none", help="fault profile: none, flaky, chaos, or a JSON object")
    p.add_argument("--seed", type=int, default=None, help="seed for fault injection (reproducible faults)")
    p.add_argument(
        "--mp4-size", type=_number(int, 0), default=None, help="download size in bytes (pads the sample MP4)"
    )
    p.add_argument(
        "--download-ttl", type=_number(float, 1e-3), default=3600.0, help="download URL lifetime in seconds"
    )
    p.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Turn parsed CLI arguments into a validated config."""
    return EmulatorConfig(
        api_keys=args.api_keys or [DEMO_API_KEY],
        expired_keys=args.expired_keys,
        prompt_seconds=args.prompt_seconds,
        export_queued_seconds=args.export_queued_seconds,
        export_processing_seconds=args.export_processing_seconds,
        asset_seconds=args.asset_seconds,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        faults=profile_from(args.faults),
        seed=args.seed,
        mp4_size=args.mp4_size,
        download_ttl_seconds=args.download_ttl,
    )


class _Server(uvicorn.Server):
    """Prints the ready line once uvicorn actually serves the socket; closes the state at the end."""

    ready_line = ""
    state: EmulatorState | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            print(self.ready_line, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        # Here, not after run(): uvicorn re-raises SIGTERM once it has shut down, which ends the
        # process without running atexit handlers.
        if self.state is not None:
            self.state.close()


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValidationError as exc:
        parser.error(
            "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        )
    except ValueError as exc:  # json.JSONDecodeError too
        parser.error(str(exc))
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"babou-emulator: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        sys.exit(1)
    sock.listen(2048)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    silence_drop_tracebacks()
    server = _Server(uv_config)
    # A scripted outage closes the connection a request came on: let the app find it.
    app.state.emulator.connections = server.server_state.connections
    server.state = app.state.emulator
    server.ready_line = f"Babou emulator listening on http://{host}:{port}/api/v1"
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
