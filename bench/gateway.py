"""What the gateway adds, and which HTTP layers it should run on: the same chat completion
requests sent to a fake OpenAI-compatible upstream directly and through the full gateway on each
HTTP stack, in one run, at concurrency 1 and 64.

    python bench/gateway.py [--requests 2000] [--loop auto|asyncio|uvloop]

Processes: the upstream (a minimal aiohttp server answering a fixed completion); the gateway on
our own HTTP layers (`swarm serve --server builtin`: router/gateway/http_server.py, and
router/backends/http1.py to the upstream); the same gateway through the ASGI adapter
(router/gateway/asgi.py) on uvicorn (uvloop, httptools) and on granian, both with the aiohttp
client to the upstream (`transport: aiohttp`); optionally a minimal aiohttp pass-through proxy
(reference) and LiteLLM's proxy; and this client (aiohttp). Rounds alternate between them so
machine load affects all alike. Prints per-request latency p50/p99, the latency each adds,
throughput and CPU per request; then the ratio of our stack's throughput to the best library
stack's at concurrency 64 against the rule of issue 18: our own layers stay only where they are
at least 1.5x the best library stack. Targets: <= 0.5 ms added at p50 (concurrency 1); gateway
throughput >= 50% of direct (concurrency 64); /healthz within 100 ms while 2,000 slow clients
hold connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]

ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The answer is 42."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
).encode()
MODELS = json.dumps(
    {"object": "list", "data": [{"id": "bench-model", "object": "model", "owned_by": "bench"}]}
).encode()
REQUEST = json.dumps(
    {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is six times seven?"},
        ],
        "max_tokens": 16,
        "temperature": 0,
    }
).encode()


# --- the upstream (runs in its own process) ------------------------------------------------------


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("uvloop is not installed") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


async def _upstream() -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.Response(body=MODELS, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


async def _proxy(upstream: str) -> None:
    """The reference: the least an aiohttp proxy can do (bytes in, bytes out; no parsing,
    routing, accounting or metrics)."""
    from aiohttp import web

    session = aiohttp.ClientSession()
    target = upstream + "/v1/chat/completions"
    headers = {"Content-Type": "application/json"}

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(target, data=body, headers=headers) as r:
            data = await r.read()
        return web.Response(body=data, status=r.status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


# --- the client ----------------------------------------------------------------------------------


def _start(cmd: list[str], marker: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        raise SystemExit(f"could not start {cmd}: {line!r}")
    return proc, line


# A request that takes longer ends the run with an error instead of hanging it.
REQUEST_TIMEOUT_S = 60.0
# LiteLLM's proxy is far slower than the rest: it gets a quarter of the requests (rates and
# percentiles stay comparable; the run stays minutes, not tens of minutes).
LITELLM_SHARE = 4

#: LiteLLM's proxy, in its own environment (its pins clash with ours: rich, websockets,
#: uvloop). ``bash scripts/install-bench-peers.sh`` makes it from bench/requirements-litellm.txt.
LITELLM = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"


def _start_litellm(upstream: str) -> tuple[subprocess.Popen[str], str] | None:
    """LiteLLM's proxy in front of the same upstream, or None when it is not installed."""
    exe = Path(os.environ.get("LITELLM_BIN") or LITELLM)
    if not exe.exists():
        print(f"litellm: not installed ({exe}); bash scripts/install-bench-peers.sh adds it")
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(
            "model_list:\n  - model_name: bench-model\n    litellm_params:\n"
            f"      model: openai/bench-model\n      api_base: {upstream}/v1\n"
            "      api_key: none\nlitellm_settings:\n  telemetry: false\n"
        )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # never fetch the price map from the network
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    port = _free_port()
    # Its log goes to a file: a pipe nobody reads fills up and stalls the proxy mid-run.
    log_path = Path(tempfile.gettempdir()) / f"bench-litellm-{port}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [
                str(exe),
                "--config",
                f.name,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    deadline = time.monotonic() + 120
    while "Uvicorn running on" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            print(f"litellm: did not start (see {log_path})")
            return None
        time.sleep(0.2)  # another process's start-up: nothing to await
    return proc, f"http://127.0.0.1:{port}"


#: The rule of issue 18: our own HTTP layers stay only where they beat the best library stack
#: by this much at concurrency 64.
KEEP_OURS_RATIO = 1.5


def _start_asgi(server: str, config: str, loop: str) -> tuple[subprocess.Popen[str], str] | None:
    """The gateway for ``config`` through the ASGI adapter on ``server`` (uvicorn or granian),
    or None when that server is not installed."""
    import importlib.util

    if importlib.util.find_spec(server) is None:
        print(f"{server}: not installed (pip install -e '.[dev]' adds it)")
        return None
    port = _free_port()
    target = "router.gateway.asgi:app_from_env"
    use_uvloop = loop != "asyncio" and importlib.util.find_spec("uvloop") is not None
    if server == "uvicorn":
        cmd = [
            *("-m", "uvicorn", "--factory", target, "--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop" if use_uvloop else "asyncio", "--http", "httptools"),
            *("--lifespan", "on", "--no-access-log", "--log-level", "warning"),
            *("--timeout-keep-alive", "75"),
        ]
    else:
        cmd = [
            *("-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", "1", "--http", "1", "--no-ws"),
            *("--loop", "uvloop" if use_uvloop else "asyncio", "--log-level", "warning"),
            target,
        ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWARM_GATEWAY_CONFIG": config}
    log_path = Path(tempfile.gettempdir()) / f"bench-{server}-{port}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, *cmd],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    if not _wait_healthy(proc, url, 60):
        proc.kill()
        print(f"{server}: did not start (see {log_path})")
        return None
    return proc, url


def _wait_healthy(proc: subprocess.Popen[str], url: str, within_s: float) -> bool:
    """Poll ``url``/healthz until it answers 200 (another process's start-up: nothing here
    to await)."""
    import urllib.request

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run(
    session: aiohttp.ClientSession, url: str, n: int, concurrency: int
) -> tuple[list[float], float]:
    """Send n requests with `concurrency` in flight; (latencies in ms, requests per second)."""
    latencies: list[float] = []
    left = n
    perf = time.perf_counter

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = perf()
            async with (
                asyncio.timeout(REQUEST_TIMEOUT_S),
                session.post(url, data=REQUEST, headers={"Content-Type": "application/json"}) as r,
            ):
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{url}: HTTP {r.status}: {await r.text()}")
            latencies.append((perf() - t0) * 1000.0)

    start = perf()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, n / (perf() - start)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds a process and its live children (granian's worker) have used
    so far (Linux /proc)."""
    fields = _stat(pid)
    if fields is None:
        return float("nan")
    total = int(fields[11]) + int(fields[12])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != pid:
            child = _stat(int(entry.name))
            if child is not None and int(child[1]) == pid:
                total += int(child[11]) + int(child[12])
    return total / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


GATEWAYS = ("gateway", "gw-uvicorn", "gw-granian")
LIBRARY_STACKS = ("gw-uvicorn", "gw-granian")


async def _bench(urls: dict[str, str], requests: int, rounds: int, pids: dict[str, int]) -> None:
    targets = {name: url + "/v1/chat/completions" for name, url in urls.items()}
    print(f"{requests} requests per round, {rounds} rounds alternating {' / '.join(targets)}\n")
    for concurrency in (1, 64):
        lat: dict[str, list[float]] = {k: [] for k in targets}
        rps: dict[str, list[float]] = {k: [] for k in targets}
        cpu: dict[str, float] = {k: 0.0 for k in targets}
        sent: dict[str, int] = {k: 0 for k in targets}
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            for url in targets.values():  # warm up connections and code paths
                await _run(session, url, min(200, requests), concurrency)
            for _ in range(rounds):
                for name, url in targets.items():
                    pid = pids.get(name)
                    c0 = _cpu_s(pid) if pid else 0.0
                    n = max(100, requests // LITELLM_SHARE) if name == "litellm" else requests
                    sent[name] += n
                    ls, r = await _run(session, url, n, concurrency)
                    lat[name] += ls
                    rps[name].append(r)
                    if pid:
                        cpu[name] += _cpu_s(pid) - c0
        p50 = {k: _pct(v, 50) for k, v in lat.items()}
        p99 = {k: _pct(v, 99) for k, v in lat.items()}
        thr = {k: statistics.median(v) for k, v in rps.items()}
        print(f"concurrency {concurrency}")
        print(
            f"  {'':12}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}"
            f"{'+p50 ms':>9}{'+p99 ms':>9}{'vs direct':>10}{'CPU us/req':>11}"
        )
        for name in targets:
            per_req = cpu[name] / max(1, sent[name]) * 1e6 if name in pids else float("nan")
            added = "" if name == "direct" else f"{p50[name] - p50['direct']:+9.3f}"
            added99 = "" if name == "direct" else f"{p99[name] - p99['direct']:+9.3f}"
            ratio = f"{thr[name] / thr['direct']:10.0%}"
            cpu_txt = f"{per_req:11.0f}" if name in pids else f"{'':11}"
            print(
                f"  {name:12}{p50[name]:9.3f}{p99[name]:9.3f}{thr[name]:8.0f}"
                f"{added:>9}{added99:>9}{ratio}{cpu_txt}"
            )
        for gw in (g for g in GATEWAYS if g in targets):
            added50 = p50[gw] - p50["direct"]
            ratio = thr[gw] / thr["direct"]
            if concurrency == 1:
                verdict = "meets" if added50 <= 0.5 else "MISSES"
                print(f"  {gw} adds {added50:.3f} ms at p50: target <= 0.5 ms -> {verdict}")
            else:
                verdict = "meets" if ratio >= 0.5 else "MISSES"
                print(f"  {gw} throughput {ratio:.0%} of direct: target >= 50% -> {verdict}")
        print()
        if concurrency == 64:
            per_req = {k: cpu[k] / max(1, sent[k]) * 1e6 for k in targets if k in pids}
            _decide(thr, per_req, rps)


def _decide(
    thr: dict[str, float], cpu_us: dict[str, float], rounds: dict[str, list[float]]
) -> None:
    """The HTTP decision of issue 18, from this run's concurrency-64 throughput."""
    stacks = {k: v for k, v in thr.items() if k in LIBRARY_STACKS}
    if "gateway" not in thr or not stacks:
        print("HTTP decision: needs the gateway and at least one library stack in the run")
        return
    best = max(stacks, key=lambda k: stacks[k])
    ratio = thr["gateway"] / stacks[best]
    verdict = (
        "keep our HTTP layers"
        if ratio >= KEEP_OURS_RATIO
        else "serve the gateway on the library stack"
    )
    wins = sum(
        o / b >= KEEP_OURS_RATIO for o, b in zip(rounds["gateway"], rounds[best], strict=True)
    )
    print(
        f"HTTP decision at concurrency 64: ours {thr['gateway']:.0f} req/s, best library stack "
        f"{best} {stacks[best]:.0f} req/s (medians of the rounds): ours / best = {ratio:.2f}x; "
        f"rule >= {KEEP_OURS_RATIO}x -> {verdict}"
    )
    print(
        f"  round by round, ours / {best} >= {KEEP_OURS_RATIO}x in {wins} of "
        f"{len(rounds['gateway'])}; CPU per request: ours {cpu_us.get('gateway', 0):.0f} us, "
        f"{best} {cpu_us.get(best, 0):.0f} us\n"
    )


async def _flood(url: str, slow: int = 2000, probes: int = 50) -> None:
    """/healthz latency while ``slow`` clients hold connections that never finish a request
    (each sends half a head, then nothing): the gateway must stay reachable."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    held = []
    for _ in range(slow):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        held.append(writer)
    times: list[float] = []
    try:
        for _ in range(probes):  # a new connection each time, as a monitor's probe would
            t0 = time.perf_counter()
            async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
                await r.read()
                assert r.status == 200
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        for w in held:
            w.close()
    p50, p99 = _pct(times, 50), _pct(times, 99)
    verdict = "meets" if p99 <= 100 else "MISSES"
    print(
        f"flood: {slow} slow connections open, /healthz from a new connection: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms: target <= 100 ms -> {verdict}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    ap.add_argument(
        "--no-reference", action="store_true", help="leave out the minimal aiohttp proxy row"
    )
    ap.add_argument(
        "--no-flood", action="store_true", help="leave out the 2,000 slow connections check"
    )
    ap.add_argument(
        "--no-litellm", action="store_true", help="leave out LiteLLM's proxy even if installed"
    )
    ap.add_argument(
        "--no-library",
        action="store_true",
        help="leave out the gateway on uvicorn and granian (and so the HTTP decision)",
    )
    ap.add_argument("--upstream-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--proxy-only", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = ap.parse_args()
    factory = _loop_factory(args.loop)
    if args.upstream_only or args.proxy_only:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_proxy(args.proxy_only) if args.proxy_only else _upstream())
        return 0
    procs: list[subprocess.Popen[str]] = []
    try:
        up, line = _start(
            [sys.executable, __file__, "--upstream-only", "--loop", args.loop], "http://"
        )
        procs.append(up)
        urls = {"direct": line.strip()}
        pids = {}
        if not args.no_reference:
            ref, line = _start(
                [sys.executable, __file__, "--proxy-only", urls["direct"], "--loop", args.loop],
                "http://",
            )
            procs.append(ref)
            urls["reference"] = line.strip()
            pids["reference"] = ref.pid

        def write_config(transport: str) -> str:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(
                    "refresh_interval: 0\n"
                    f"backends:\n  - name: upstream\n    url: {urls['direct']}\n"
                    f"    transport: {transport}\n"
                    "    rate_limit: {max_concurrent: 1000}\n"
                )
                return f.name

        cfg = write_config("http1")
        if not args.no_litellm:
            started = _start_litellm(urls["direct"])
            if started is not None:
                procs.append(started[0])
                urls["litellm"] = started[1]
                pids["litellm"] = started[0].pid
        serve = [sys.executable, "-m", "client.cli", "serve", "--config", cfg, "--port", "0"]
        gw, line = _start([*serve, "--loop", args.loop, "--server", "builtin"], "listening on")
        procs.append(gw)
        urls["gateway"] = line.split("listening on ")[1].split()[0]
        pids["gateway"] = gw.pid
        if not args.no_library:
            library_cfg = write_config("aiohttp")
            for server in ("uvicorn", "granian"):
                started = _start_asgi(server, library_cfg, args.loop)
                if started is not None:
                    procs.append(started[0])
                    urls[f"gw-{server}"] = started[1]
                    pids[f"gw-{server}"] = started[0].pid
        loop_name = "uvloop" if factory is not None else "asyncio"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"event loop: {loop_name}; {os.cpu_count()} cores; load average before: {load}")
        print("direct: the fake upstream; reference: a minimal aiohttp pass-through proxy;")
        if "litellm" in urls:
            print("litellm: LiteLLM's proxy (bench/requirements-litellm.txt), one worker;")
        print("gateway: swarm serve on our HTTP layers (parsing, routing, accounting, metrics)")
        if "gw-uvicorn" in urls or "gw-granian" in urls:
            print("gw-uvicorn, gw-granian: the same gateway through the ASGI adapter on uvicorn")
            print("  (uvloop, httptools) and on granian, aiohttp client to the upstream")
        print()
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_bench(urls, args.requests, args.rounds, pids))
            if not args.no_flood:
                runner.run(_flood(urls["gateway"]))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average after: {load}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
