"""`swarm serve`: run the OpenAI-compatible gateway in front of the router and the swarm."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .gateway.config import GatewayConfig, load_config
from .gateway.errors import ConfigError

SERVERS = ("builtin", "uvicorn", "granian")

_EPILOG = """\
config.yaml is a superset of the LLM Router Service's format: a file with only
refresh_interval and backends (name, url, auth of type bearer/basic/header) works as is.
See examples/gateway.yaml and docs/gateway-guide.md for everything else (backend types
openai/ollama/swarm/mock, routes, aliases, strategy, resilience, swarm, keys and budgets).

Any OpenAI client can then use it:  OPENAI_BASE_URL=http://127.0.0.1:8080/v1
SIGINT/SIGTERM stop it gracefully: requests in flight finish (server.shutdown_timeout_s).
SIGHUP reloads the config file: a valid one takes effect without dropping requests in
flight; an invalid one is refused with a log line and the running one stays.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible HTTP gateway",
        description="Serve /v1/chat/completions, /v1/completions, /v1/models, /v1/usage, "
        "/healthz and /metrics in front of the configured backends and the swarm.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="path to config.yaml")
    p.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    p.add_argument(
        "--check", action="store_true", help="validate the config, print a summary and exit"
    )
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed)",
    )
    p.add_argument(
        "--server",
        choices=SERVERS,
        default="builtin",
        help="HTTP server: builtin (our own), or the same gateway through the ASGI adapter on "
        "uvicorn or granian (granian's embedded server, which it marks experimental); see "
        "docs/performance.md for how they compare",
    )
    p.set_defaults(handler=_serve)


def _summary(cfg: GatewayConfig) -> str:
    lines = [f"config OK: {len(cfg.all_backends())} backend(s)"]
    for b in cfg.all_backends():
        where = getattr(b, "url", None) or ", ".join(getattr(b, "relays", []) or []) or "-"
        models = ", ".join(b.models) if b.models else "discovered"
        lines.append(f"  {b.name:<16} {b.type:<7} {where}  models: {models}")
    lines.append(f"strategy: {cfg.strategy.name}; api keys: {len(cfg.keys) or 'none (open)'}")
    return "\n".join(lines)


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("swarm serve: error: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def _serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"swarm serve: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(_summary(cfg))
        return 0
    factory = _loop_factory(args.loop)
    server = getattr(args, "server", "builtin")
    if server != "builtin":
        import importlib.util

        if importlib.util.find_spec(server) is None:
            print(f"swarm serve: error: {server} is not installed", file=sys.stderr)
            return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            if server == "uvicorn":
                return runner.run(_run_uvicorn(cfg, args.host, args.port, args.config))
            if server == "granian":
                return runner.run(_run_granian(cfg, args.host, args.port, args.config))
            return runner.run(_run(cfg, args.host, args.port, args.config))
    except ConfigError as exc:  # raised while building backends
        print(f"swarm serve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"swarm serve: error: cannot listen: {exc}", file=sys.stderr)
        return 1


async def _reload(gw: Any, path: str) -> None:
    """SIGHUP: read the config file again; a valid one takes effect without dropping requests
    in flight, an invalid one is refused and the running one stays."""
    try:
        cfg = load_config(path)
        await gw.reload(cfg)
    except Exception as exc:  # anything: the gateway must keep serving on the old config
        print(
            f"swarm serve: reload refused, still serving the previous config: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return
    print(f"swarm serve: reloaded {path}", file=sys.stderr, flush=True)


async def _run(
    cfg: GatewayConfig, host: str | None, port: int | None, path: str | None = None
) -> int:
    from .gateway.app import Gateway

    gw = Gateway(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        url = await gw.start(host, port)
    except BaseException:
        await gw.stop(grace_s=0)
        raise
    print(f"swarm gateway listening on {url} (OpenAI base URL: {url}/v1)", flush=True)
    reloading: set[asyncio.Task[None]] = set()
    if path is not None and hasattr(signal, "SIGHUP"):

        def on_hup() -> None:
            task = asyncio.create_task(_reload(gw, path))
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    print("shutting down: finishing requests in flight", file=sys.stderr, flush=True)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(sig)
    finished = await gw.stop()
    return 0 if finished else 1


async def _run_uvicorn(
    cfg: GatewayConfig, host: str | None, port: int | None, path: str | None = None
) -> int:
    """The gateway through the ASGI adapter on uvicorn (in this event loop). uvicorn handles
    SIGINT/SIGTERM: requests in flight finish (server.shutdown_timeout_s), then the gateway
    stops."""
    import socket

    import uvicorn

    from .gateway.app import Gateway
    from .gateway.asgi import GatewayAsgi

    gateway = Gateway(cfg)  # a bad config fails here, as with the built-in server
    srv = cfg.server
    bind_host = host or srv.host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind_host, srv.port if port is None else port))
    sock.listen(1024)
    h, bound = sock.getsockname()[:2]
    url = f"http://{'[' + h + ']' if ':' in h else h}:{bound}"
    finished = True

    class Announced(GatewayAsgi):
        async def startup(self) -> None:
            await super().startup()
            print(f"swarm gateway listening on {url} (OpenAI base URL: {url}/v1)", flush=True)

        async def shutdown(self) -> None:
            nonlocal finished
            gw = self.gateway
            self.app = None
            if gw is not None:
                self.gateway = None
                finished = await gw.stop()

    app = Announced(cfg, gateway)
    config = uvicorn.Config(
        app,
        loop="none",  # this event loop (--loop)
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=max(1, int(srv.keepalive_timeout_s)),
        timeout_graceful_shutdown=max(1, int(srv.shutdown_timeout_s)),
        limit_concurrency=srv.max_connections,
    )
    loop = asyncio.get_running_loop()

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own handlers re-raise the signal after the graceful stop (the process
            # then dies of it); here SIGINT/SIGTERM stop it and it exits with its own status
            signals = (signal.SIGINT, signal.SIGTERM)
            for sig in signals:
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in signals:
                    with contextlib.suppress(NotImplementedError):
                        loop.remove_signal_handler(sig)

    server = Server(config)
    reloading: set[asyncio.Task[None]] = set()
    if path is not None and hasattr(signal, "SIGHUP"):

        def on_hup() -> None:
            if app.gateway is None:
                return
            task = asyncio.create_task(_reload(app.gateway, path))
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        return 1
    return 0 if finished else 1


async def _run_granian(
    cfg: GatewayConfig, host: str | None, port: int | None, path: str | None = None
) -> int:
    """The gateway through the ASGI adapter on granian's embedded server (in this event loop;
    granian parses HTTP on its own Rust thread). SIGINT/SIGTERM stop it gracefully."""
    import socket

    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    from .gateway.app import Gateway
    from .gateway.asgi import GatewayAsgi

    gateway = Gateway(cfg)  # a bad config fails here, as with the built-in server
    srv = cfg.server
    bind_host = host or srv.host
    bind_port = srv.port if port is None else port
    if bind_port == 0:  # granian binds by number: find a free one
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((bind_host, 0))
            bind_port = probe.getsockname()[1]
    url = f"http://{'[' + bind_host + ']' if ':' in bind_host else bind_host}:{bind_port}"
    finished = True

    announcing: set[asyncio.Task[None]] = set()

    async def announce_when_accepting() -> None:
        # granian runs the lifespan startup before its Rust worker listens on the socket, and
        # offers no hook for "listening": the line that says so waits until a connection is
        # accepted (a client that reads it must not be refused).
        delay = 0.005
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection(bind_host, bind_port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            print(f"swarm gateway listening on {url} (OpenAI base URL: {url}/v1)", flush=True)
            return
        print(f"swarm serve: granian did not accept connections on {url}", file=sys.stderr)
        server.stop()

    class Announced(GatewayAsgi):
        async def startup(self) -> None:
            await super().startup()
            task = asyncio.create_task(announce_when_accepting())
            announcing.add(task)
            task.add_done_callback(announcing.discard)

        async def shutdown(self) -> None:
            nonlocal finished
            gw = self.gateway
            self.app = None
            if gw is not None:
                self.gateway = None
                finished = await gw.stop()

    app = Announced(cfg, gateway)
    server = Server(
        app,
        address=bind_host,
        port=bind_port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        backlog=1024,
        log_level="warning",  # type: ignore[arg-type]
        # granian logs to stdout; stdout's first line is the "listening on" line
        log_dictconfig={
            "handlers": {
                name: {
                    "formatter": formatter,
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                }
                for name, formatter in (("console", "generic"), ("access", "access"))
            }
        },
    )
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, server.stop)
    reloading: set[asyncio.Task[None]] = set()
    if path is not None and hasattr(signal, "SIGHUP"):

        def on_hup() -> None:
            if app.gateway is None:
                return
            task = asyncio.create_task(_reload(app.gateway, path))
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await server.serve()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    if app.gateway is not None:  # the server stopped without a lifespan shutdown
        finished = await app.gateway.stop()
    return 0 if finished else 1
