"""Scale: swarm latency and throughput against the number of providers (1 to 50) and the number
of jobs in flight (1 to 1,000).

Three processes on 127.0.0.1: the relay (``python -m relay_mock``), N provider nodes (real
ProviderNodes with an instant MockBackend, free, in one process: ``--role providers``), and the
customer here (one SwarmClient with the shared inbox subscription). Each job asks 3 providers
(round robin over the N; all of them when N < 3) for a 2-of-3 quorum (1 of 1 with one provider).
Every provider still receives and verifies every request: that is how NIP-90 job requests
travel, so the relay's fan-out grows with N.

Printed: one row per (providers, concurrency): jobs, p50/p95 latency of ``SwarmClient.complete``,
completed jobs per second, failures. Drawn: ``docs/img/scale.png`` (matplotlib).

Run: ``python bench/scale.py [--providers 1 3 10 25 50] [--concurrency 1 10 100 1000]
[--png docs/img/scale.png]``. A few minutes on 2 cores. Figures depend on machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from client.customer.swarm import SwarmClient  # noqa: E402
from client.nostr.keys import Keys  # noqa: E402

MODEL = "m1"
SELF = os.path.abspath(__file__)
JOBS = {1: 30, 10: 100, 100: 300, 1000: 1000}  # jobs measured per concurrency level


def providers_main(url: str, count: int) -> None:
    """Child process: ``count`` ProviderNodes on ``url``; prints their keys, then ``ready``."""
    from provider import Limits, ProviderNode
    from router.backends import MockBackend

    async def run() -> None:
        nodes = []
        limits = Limits(rate_per_minute=None, max_concurrent=64, queue_size=4096)
        for _ in range(count):
            backend = MockBackend("mock").with_model(MODEL).with_response("4").with_usage(5, 3)
            node = ProviderNode(Keys.generate(), [url], backend, limits=limits, announce=False)
            await node.start()
            nodes.append(node)
            print(node.public_key, flush=True)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await asyncio.gather(*(n.close() for n in nodes))

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run())


@dataclass
class Row:
    providers: int
    concurrency: int
    jobs: int
    p50_ms: float
    p95_ms: float
    per_s: float
    failures: int


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def measure(swarm: SwarmClient, keys: list[str], concurrency: int, jobs: int) -> Row:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(jobs))
    quorum = 1 if len(keys) == 1 else 2

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            targets = [keys[(3 * i + j) % len(keys)] for j in range(min(3, len(keys)))]
            t0 = time.perf_counter()
            try:
                r = await swarm.complete(
                    f"job {i}", model=MODEL, quorum=quorum, targets=targets, timeout=60
                )
                assert r.text == "4"
            except Exception:
                failures += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return Row(
        len(keys),
        concurrency,
        jobs,
        pct(latencies, 0.5),
        pct(latencies, 0.95),
        len(latencies) / wall,
        failures,
    )


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


async def run_grid(counts: list[int], levels: list[int]) -> list[Row]:
    rows: list[Row] = []
    for n in counts:
        relay = start("-m", "relay_mock", "--port", "0", "--max-subscriptions", "5000")
        assert relay.stdout is not None
        url = relay.stdout.readline().strip()
        prov = start(SELF, "--role", "providers", "--relay", url, "--count", str(n))
        assert prov.stdout is not None
        keys = [prov.stdout.readline().strip() for _ in range(n)]
        assert prov.stdout.readline().strip() == "ready"
        try:
            async with SwarmClient(Keys.generate(), [url], inbox=True) as swarm:
                await measure(swarm, keys, 4, 20)  # warm-up: connections, caches
                for c in levels:
                    row = await measure(swarm, keys, c, max(c, JOBS.get(c, c)))
                    rows.append(row)
                    print_row(row)
        finally:
            for p in (prov, relay):
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=60)
    return rows


def print_head() -> None:
    print(
        f"{'providers':>9}{'conc':>6}{'jobs':>6}{'p50 ms':>9}{'p95 ms':>9}{'jobs/s':>9}{'fail':>6}",
        flush=True,
    )


def print_row(r: Row) -> None:
    print(
        f"{r.providers:>9}{r.concurrency:>6}{r.jobs:>6}{r.p50_ms:>9.1f}{r.p95_ms:>9.1f}"
        f"{r.per_s:>9.1f}{r.failures:>6}",
        flush=True,
    )


def draw(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r.providers for r in rows})
    levels = sorted({r.concurrency for r in rows})
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for (ax_lat, ax_tput), x_name, lines, line_name in (
        ((axes[0][0], axes[0][1]), "providers", levels, "concurrency"),
        ((axes[1][0], axes[1][1]), "concurrency", counts, "providers"),
    ):
        for value in lines:
            sel = sorted(
                (r for r in rows if getattr(r, line_name) == value),
                key=lambda r: getattr(r, x_name),
            )
            xs = [getattr(r, x_name) for r in sel]
            ax_lat.plot(xs, [r.p50_ms for r in sel], marker="o", label=f"{line_name} {value}")
            ax_tput.plot(xs, [r.per_s for r in sel], marker="o", label=f"{line_name} {value}")
        for ax, what in ((ax_lat, "p50 latency (ms)"), (ax_tput, "completed jobs per second")):
            ax.set_xlabel(f"{x_name} (log)" if x_name == "concurrency" else x_name)
            ax.set_ylabel(what)
            ax.set_yscale("log")
            if x_name == "concurrency":
                ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(
        "nostr-swarm bench/scale.py: 2-of-3 quorum jobs through one relay_mock (2 cores, shared)"
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


# --- gateways sharing one state -----------------------------------------------------------------

GATEWAY_REQUESTS = 3000
GATEWAY_CONCURRENCY = 64


def _gateway_config(path: str, state: dict[str, str]) -> None:
    import yaml

    cfg = {
        "refresh_interval": 0,
        "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 1}],
        "keys": [{"name": "k", "key": "sk-bench", "budget_sats": 10**9, "rpm": 10**6}],
        # With Redis the cache and the breakers are shared too; neither adds a Redis call to
        # these requests (sampled, so never cached; a closed breaker is read in the process).
        "cache": {"ttl_s": 300, "max_entries": 10_000},
        "state": state,
    }
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)


def _start_gateways(path: str, n: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    procs, urls = [], []
    for _ in range(n):
        proc = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "serve", "--config", path, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"swarm serve did not start: {line!r}")
        procs.append(proc)
        urls.append(line.split("listening on ")[1].split()[0])
    return procs, urls


async def _load(urls: list[str]) -> tuple[float, float]:
    """Requests per second and p50 ms, spread round robin over ``urls``."""
    import aiohttp

    body = b'{"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": 8}'
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    left = GATEWAY_REQUESTS
    lat: list[float] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=GATEWAY_CONCURRENCY)
    ) as s:

        async def worker(i: int) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                async with s.post(
                    urls[(left + i) % len(urls)] + "/v1/chat/completions",
                    data=body,
                    headers=headers,
                ) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"HTTP {r.status}")
                lat.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(GATEWAY_CONCURRENCY)))
        rate = GATEWAY_REQUESTS / (time.perf_counter() - t0)
    lat.sort()
    return rate, lat[len(lat) // 2]


def run_gateways(counts: list[int]) -> None:
    """Gateway throughput with 1, 2, 3 instances on a shared PostgreSQL + Redis (spend in
    PostgreSQL; each request's rpm in Redis, one call; cache and breakers shared), next to one
    instance on its own SQLite file, in one run (private servers from Debian's packages)."""
    import tempfile

    from tests.support.servers import start_postgres, start_redis

    print(
        f"\ngateways: {GATEWAY_REQUESTS} keyed requests (each reserves and charges a budget) "
        f"at concurrency {GATEWAY_CONCURRENCY}, spread over the instances"
    )
    print(f"{'store':<24}{'instances':>10}{'req/s':>9}{'p50 ms':>9}")
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    path = os.path.join(tmp, "gateway.yaml")
    rows: list[tuple[str, int, float, float]] = []
    _gateway_config(path, {"url": f"sqlite:///{tmp}/gateway.sqlite"})
    procs, urls = _start_gateways(path, 1)
    try:
        rows.append(("SQLite", 1, *asyncio.run(_load(urls))))
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(30)
    pg, redis = start_postgres(), start_redis()
    try:
        for n in counts:
            _gateway_config(path, {"url": pg.fresh_database(), "redis": redis.url})
            procs, urls = _start_gateways(path, n)
            try:
                rows.append(("PostgreSQL + Redis", n, *asyncio.run(_load(urls))))
            finally:
                for pr in procs:
                    pr.terminate()
                    pr.wait(30)
    finally:
        pg.stop()
        redis.kill()
    for store, n, rate, p50 in rows:
        print(f"{store:<24}{n:>10}{rate:>9.0f}{p50:>9.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=("main", "providers"), default="main")
    p.add_argument("--relay")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--providers", type=int, nargs="+", default=[1, 3, 10, 25, 50])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100, 1000])
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "img", "scale.png"))
    p.add_argument(
        "--gateways",
        type=int,
        nargs="*",
        default=None,
        metavar="N",
        help="also (or, with --gateways-only, only) measure N gateway instances on a shared "
        "PostgreSQL + Redis against one on SQLite (default counts: 1 2 3)",
    )
    p.add_argument("--gateways-only", action="store_true", help="skip the provider grid")
    args = p.parse_args()
    if args.gateways_only:
        run_gateways(args.gateways or [1, 2, 3])
        return 0
    if args.role == "providers":
        providers_main(args.relay, args.count)
        return 0
    print("nostr-swarm bench/scale.py: latency and throughput vs providers and concurrency")
    print_head()
    started = time.perf_counter()
    rows = asyncio.run(run_grid(args.providers, args.concurrency))
    print(f"total {time.perf_counter() - started:.0f} s")
    draw(rows, args.png)
    if args.gateways is not None:
        run_gateways(args.gateways or [1, 2, 3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
