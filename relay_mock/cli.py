"""`swarm relay`: run relay_mock from the shell until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

from client.cli.common import LOCAL_RELAY_PORT

from .config import Limits
from .errors import RelayMockError
from .server import Relay


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "relay",
        help="run a local Nostr relay (relay_mock)",
        description="Run relay_mock, a NIP-01 relay (with NIP-09, 11, 40, 42, 45) for local "
        "development and demos. Prints its URL, then serves until Ctrl-C. Events live in memory "
        "unless --db names a SQLite file, where they survive restarts.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=LOCAL_RELAY_PORT,
        help=f"port (default {LOCAL_RELAY_PORT}; 0 picks a free one)",
    )
    p.add_argument("--db", metavar="PATH", help="SQLite file that keeps events across restarts")
    p.add_argument(
        "--auth-required", action="store_true", help="require NIP-42 AUTH before EVENT and REQ"
    )
    p.add_argument(
        "--event-rate", type=float, metavar="N", help="most events per second per connection"
    )
    p.add_argument(
        "--max-subscriptions",
        type=int,
        default=50,
        metavar="N",
        help="open subscriptions per connection (default 50)",
    )
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed)",
    )
    p.set_defaults(handler=_run)


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("swarm relay: error: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def _run(args: argparse.Namespace) -> int:
    try:
        limits = Limits(event_rate=args.event_rate, max_subscriptions=args.max_subscriptions)
    except ValueError as exc:
        print(f"swarm relay: {exc}", file=sys.stderr)
        return 2
    relay = Relay(args.host, args.port, db=args.db, limits=limits, auth_required=args.auth_required)
    factory = _loop_factory(getattr(args, "loop", "auto"))
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve(relay))
    except KeyboardInterrupt:
        pass
    except (RelayMockError, OSError) as exc:
        print(f"swarm relay: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(relay: Relay) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
            pass
    async with relay:
        print(relay.url, flush=True)
        # Every subcommand that takes --relay also reads this variable.
        print(f"use it with: export SWARM_RELAYS={relay.url}", file=sys.stderr, flush=True)
        await stop.wait()
    print("relay stopped", file=sys.stderr, flush=True)
