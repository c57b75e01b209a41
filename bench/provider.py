"""Provider node benchmark: how many jobs one ProviderNode sustains with an instant backend, and
how much latency the node adds over calling that backend directly.

Three processes on 127.0.0.1 so they do not share one event loop: the relay (``python -m
relay_mock``), the node (this process), and a load generator (this script with ``--load``) that
signs jobs, keeps ``c`` in flight and times each from publish to the result's arrival. Each job
costs the node: verify the request, screen it, claim it in SQLite (WAL, a file), publish
``processing``, call the backend, sign and publish the result and ``success``.

Printed, side by side:

- the peer: the backend called directly (calls/s, p50 latency);
- per concurrency (1, 10, 100): jobs/s through the node, end-to-end p50/p95 at the customer;
- the node's added latency at p50/p95: from the screened request (its relay connection has
  parsed it and checked its signature) to the result handed to the relays, minus the backend
  call (measured by the node's job book); and, as a cross-check, end-to-end
  p50 minus two relay deliveries (customer -> relay -> node, node -> relay -> customer, measured
  as a publish -> delivery round trip) minus the direct backend call. Target: < 5 ms at p50.

Run: ``python bench/provider.py [--jobs 2000] [--concurrency 1 10 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the package it measures: keep its own folder off the import path.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_ROOT = os.path.dirname(_here)

from client.dvm.nip90 import KIND_TEXT_RESULT, JobSpec, build_request  # noqa: E402
from client.net.pool import RelayPool  # noqa: E402
from client.nostr.event import Event  # noqa: E402
from client.nostr.filter import Filter  # noqa: E402
from client.nostr.keys import Keys  # noqa: E402
from provider.limits import Limits  # noqa: E402
from provider.node import ProviderNode  # noqa: E402
from router.backends import MockBackend  # noqa: E402

MODEL = "instant"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_relay() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay_mock", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("relay_mock exited at start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"ws://127.0.0.1:{port}"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("relay_mock did not start listening")


# --- the load generator (a separate process) ---------------------------------------------------


async def load(relay: str, provider: str, jobs: int, concurrency: int) -> dict[str, object]:
    keys = Keys.generate()
    async with RelayPool([relay], keys=keys) as pool:
        # Relay delivery round trip, for the cross-check.
        rtts: list[float] = []
        echo = pool.subscribe(Filter(kinds=[1], authors=[keys.public_key]))
        await echo.wait_eose()
        for i in range(50):
            ev = Event.create(keys, 1, f"ping {i}", [])
            t0 = time.perf_counter()
            await pool.publish(ev)
            got = await asyncio.wait_for(echo.__anext__(), 10)
            assert got.id == ev.id
            rtts.append((time.perf_counter() - t0) * 1000)
        echo.close()

        waiting: dict[str, asyncio.Future[float]] = {}
        sub = pool.subscribe(Filter(kinds=[KIND_TEXT_RESULT], tags={"p": [keys.public_key]}))
        await sub.wait_eose()

        async def reader() -> None:
            async for event in sub:
                fut = waiting.pop(event.tag_value("e") or "", None)
                if fut is not None and not fut.done():
                    fut.set_result(time.perf_counter())

        read_task = asyncio.create_task(reader())
        latencies: list[float] = []
        counter = iter(range(jobs))

        async def worker() -> None:
            for i in counter:
                spec = JobSpec(prompt=f"job {i}", model=MODEL, max_tokens=16, targets=(provider,))
                request = build_request(keys, spec)
                fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                waiting[request.id] = fut
                t0 = time.perf_counter()
                await pool.publish(request)
                done = await asyncio.wait_for(fut, 30)
                latencies.append((done - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        read_task.cancel()
    return {
        "jobs": len(latencies),
        "elapsed_s": elapsed,
        "latencies_ms": latencies,
        "relay_rtt_p50_ms": pct(rtts, 50),
    }


# --- the node (this process) -------------------------------------------------------------------


async def direct_backend(backend: MockBackend, n: int = 20_000) -> tuple[float, float]:
    samples = []
    t_all = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        await backend.complete(MODEL, f"job {i}", 16)
        samples.append((time.perf_counter() - t0) * 1000)
    rate = n / (time.perf_counter() - t_all)
    return rate, pct(samples, 50)


async def run_load(relay: str, provider: str, jobs: int, concurrency: int) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--load",
        relay,
        provider,
        str(jobs),
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": _ROOT},
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed (exit {proc.returncode})")
    return json.loads(out)  # type: ignore[no-any-return]


async def bench(jobs: int, levels: list[int]) -> None:
    relay_proc, relay = start_relay()
    backend = MockBackend("instant").with_model(MODEL).with_response("ok").with_usage(4, 1)
    direct_rate, direct_p50 = await direct_backend(backend)
    limits = Limits(
        max_concurrent=max(levels) * 2,
        queue_size=10_000,
        rate_per_minute=None,
        rate_burst=None,
    )
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            node = ProviderNode(
                Keys.generate(),
                [relay],
                backend,
                limits=limits,
                store=Path(tmp) / "provider.sqlite",
                announce=False,
            )
            async with node:
                await run_load(relay, node.public_key, 50, 1)  # warm up both sides
                for c in levels:
                    node.stats.overhead_ms.clear()
                    n = jobs if c > 1 else max(200, jobs // 5)
                    cpu0 = time.process_time()
                    r = await run_load(relay, node.public_key, n, c)
                    cpu_ms = (time.process_time() - cpu0) * 1000 / max(1, int(r["jobs"]))  # type: ignore[call-overload]
                    lat = r["latencies_ms"]
                    assert isinstance(lat, list)
                    over = list(node.stats.overhead_ms)
                    e2e_p50 = pct(lat, 50)
                    rtt = float(r["relay_rtt_p50_ms"])  # type: ignore[arg-type]
                    rows.append(
                        (
                            c,
                            int(r["jobs"]) / float(r["elapsed_s"]),  # type: ignore[call-overload,arg-type]
                            e2e_p50,
                            pct(lat, 95),
                            pct(over, 50),
                            pct(over, 95),
                            e2e_p50 - 2 * rtt - direct_p50,
                            rtt,
                            cpu_ms,
                        )
                    )
            errors = node.stats.errors
    finally:
        relay_proc.terminate()
        relay_proc.wait(timeout=10)

    print("provider node, instant backend (3 processes: relay, node, load generator)")
    print(f"peer: backend called directly {direct_rate:>10,.0f} calls/s  p50 {direct_p50:.4f} ms")
    print()
    head = (
        f"{'concurrency':>11} {'jobs/s':>8} {'e2e p50':>9} {'e2e p95':>9} "
        f"{'node p50':>9} {'node p95':>9} {'e2e-2rtt':>9} {'relay rtt':>9} {'node cpu':>9}"
    )
    print(head)
    for c, rate, p50, p95, o50, o95, est, rtt, cpu in rows:
        print(
            f"{c:>11} {rate:>8,.0f} {p50:>7.2f}ms {p95:>7.2f}ms "
            f"{o50:>7.3f}ms {o95:>7.3f}ms {est:>7.2f}ms {rtt:>7.2f}ms {cpu:>7.3f}ms"
        )
    print()
    print(
        "node p50/p95: added by the node (screened request -> result handed to the relays, minus "
        "the backend call); target < 5 ms at p50."
    )
    print("e2e-2rtt: end-to-end p50 minus two relay deliveries minus the direct backend call.")
    print("node cpu: the node process's CPU time per job (one core: about 1000/cpu jobs/s).")
    print(f"errors answered by the node during the run: {errors}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        relay, provider, jobs, concurrency = sys.argv[2:6]
        result = asyncio.run(load(relay, provider, int(jobs), int(concurrency)))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(bench(args.jobs, args.concurrency))


if __name__ == "__main__":
    main()
