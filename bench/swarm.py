"""Benchmark: end-to-end latency and throughput of quorum-verified swarm completions.

One local relay (relay_mock, its own process), instant scripted providers (their own process,
they answer each job at once with a fixed function of the prompt), and the customer
(SwarmClient) here. For concurrency 1, 10 and 100 it prints p50/p99 latency of
``SwarmClient.complete`` and completions per second for:

- a single-provider job (quorum 1 of 1) - the peer figure,
- a 2-of-3 quorum with one subscription per job (the default, clear-text results),
- the same with sealed results (``sealing="require"``: NIP-44 to the customer and back),
- the same with commit-reveal (``commit_reveal=True``: commitments, the customer's reveal call,
  then the results), and with both,
- a 2-of-3 quorum with the shared inbox subscription (``inbox=True``).

After the table it prints the latency cost of the copy-resistant modes next to clear mode.

Usage: ``python bench/swarm.py [--jobs N] [--inproc]`` (``--inproc``: relay, providers and
customer in this one process and event loop). Target: p50 under 15 ms at concurrency 1.
Figures depend on machine load: compare the rows of one run with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from client.dvm.nip90 import build_result, parse_request  # noqa: E402
from client.dvm.sealing import (  # noqa: E402
    KIND_REVEAL_CALL,
    PARAM_COMMIT,
    PARAM_SEALED,
    build_commitment,
    commit,
    new_salt,
    parse_reveal_call,
)
from client.net.pool import RelayPool  # noqa: E402
from client.nostr.event import Event  # noqa: E402
from client.nostr.filter import Filter  # noqa: E402
from client.nostr.keys import Keys  # noqa: E402
from router.types import LmUsage  # noqa: E402

MAX_SUBS = 5000


# --- providers -------------------------------------------------------------------------------


async def serve_providers(url: str, keys: list[Keys], ready: asyncio.Event | None = None) -> None:
    """Each key answers every job addressed to it, at once: 'echo: <prompt>'."""
    pools: list[RelayPool] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for k in keys:
            pool = RelayPool([url], keys=k)
            await pool.start()
            pools.append(pool)
            since = int(time.time()) - 5
            sub = pool.subscribe(
                [Filter(kinds=[5050], since=since), Filter(kinds=[KIND_REVEAL_CALL], since=since)]
            )
            tasks.append(asyncio.create_task(_answer(pool, sub, k)))
            await sub.wait_eose()
        if ready is not None:
            ready.set()
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for p in pools:
            await p.close()


USAGE = LmUsage(2, 3, 5)


async def _answer(pool: RelayPool, sub: object, keys: Keys) -> None:
    """Answer at once; seal when asked; with commit-reveal, commit and hold the result until
    the customer's reveal call names this key (as provider/node.py does)."""
    pending: set[asyncio.Task[object]] = set()
    held: dict[str, tuple[str, Event]] = {}  # request id -> (customer, result)

    def send(event: Event) -> None:
        t = asyncio.create_task(pool.publish(event))
        pending.add(t)
        t.add_done_callback(pending.discard)

    async for event in sub:  # type: ignore[attr-defined]
        if event.kind == KIND_REVEAL_CALL:
            call = parse_reveal_call(event)
            for request_id in call.request_ids:
                customer, result = held.pop(request_id, ("", event))
                if customer == call.customer and call.names(keys.public_key):
                    send(result)
            continue
        try:
            req = parse_request(event, keys=keys, verify=False)  # the pool verified it
        except Exception:
            continue
        if not req.is_for(keys.public_key):
            continue
        text = "echo: " + req.prompt
        salt = new_salt() if PARAM_COMMIT in req.params else None
        result = build_result(
            keys,
            req,
            text,
            model="echo",
            usage=USAGE,
            seal=req.params.get(PARAM_SEALED),
            salt=salt,
        )
        if salt is None:
            send(result)
            continue
        held[req.id] = (req.customer, result)
        send(build_commitment(keys, req, commit(req.id, keys.public_key, text, salt)))


def providers_main(url: str, count: int) -> None:
    """Child process: print the provider keys, then serve until SIGTERM."""
    keys = [Keys.generate() for _ in range(count)]

    async def run() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve_providers(url, keys, ready))
        await ready.wait()
        for k in keys:
            print(k.public_key, flush=True)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    concurrency: int
    jobs: int
    p50_ms: float
    p99_ms: float
    per_s: float
    failures: int


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def measure(
    client: SwarmClient,
    name: str,
    targets: list[str],
    quorum: int,
    concurrency: int,
    jobs: int,
    **opts: object,
) -> Row:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(jobs))

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            t0 = time.perf_counter()
            try:
                r = await client.complete(
                    f"job {i}",
                    quorum=quorum,
                    targets=targets,
                    timeout=10,
                    **opts,  # type: ignore[arg-type]
                )
                assert r.text == f"echo: job {i}"
            except Exception:
                failures += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return Row(
        name,
        concurrency,
        jobs,
        pct(latencies, 0.5),
        pct(latencies, 0.99),
        len(latencies) / wall,
        failures,
    )


async def bench(url: str, provider_keys: list[str], jobs: int) -> list[Row]:
    rows: list[Row] = []
    customer = Keys.generate()
    single, three = provider_keys[:1], provider_keys[:3]
    levels = (1, 10, 100)
    async with (
        SwarmClient(customer, [url]) as per_job,
        SwarmClient(customer, [url], inbox=True) as inbox,
    ):
        # Warm-up: connections, caches, first-call costs.
        await measure(per_job, "warm-up", three, 2, 4, 40)
        await measure(inbox, "warm-up", three, 2, 4, 40)
        await measure(per_job, "warm-up", three, 2, 4, 40, sealing="require", commit_reveal=True)
        for c in levels:
            n = max(jobs, c * 5)
            rows.append(await measure(per_job, "single provider (1 of 1)", single, 1, c, n))
            rows.append(await measure(per_job, CLEAR, three, 2, c, n))
            for name, opts in COPY_RESISTANT.items():
                rows.append(await measure(per_job, name, three, 2, c, n, **opts))
            rows.append(await measure(inbox, "2-of-3 quorum, inbox", three, 2, c, n))
    return rows


CLEAR = "2-of-3 quorum"
COPY_RESISTANT: dict[str, dict[str, object]] = {
    "2-of-3 sealed": {"sealing": "require"},
    "2-of-3 commit-reveal": {"commit_reveal": True},
    "2-of-3 sealed+commit": {"sealing": "require", "commit_reveal": True},
}


def print_copy_cost(rows: list[Row]) -> None:
    """p50/p99 of each copy-resistant mode next to clear mode, at each concurrency."""
    print("\nlatency cost of copy resistance (2-of-3, vs clear-text results in the same run)")
    head = ("conc", "p50 ms", "clear", "+p50 ms", "p99 ms", "clear")
    print(f"{'mode':<24}" + "".join(f"{h:>{6 if h == 'conc' else 9}}" for h in head))
    clear = {r.concurrency: r for r in rows if r.scenario == CLEAR}
    for r in rows:
        base = clear.get(r.concurrency)
        if r.scenario not in COPY_RESISTANT or base is None:
            continue
        print(
            f"{r.scenario[7:]:<24}{r.concurrency:>6}{r.p50_ms:>9.2f}{base.p50_ms:>9.2f}"
            f"{r.p50_ms - base.p50_ms:>+9.2f}{r.p99_ms:>9.2f}{base.p99_ms:>9.2f}"
        )


def print_rows(rows: list[Row], layout: str) -> None:
    print(f"\nnostr-swarm bench/swarm.py ({layout})")
    head = ("scenario", "conc", "jobs", "p50 ms", "p99 ms", "jobs/s", "fail")
    widths = (6, 7, 9, 9, 9, 6)
    print(f"{head[0]:<28}" + "".join(f"{h:>{w}}" for h, w in zip(head[1:], widths, strict=True)))
    for r in rows:
        print(
            f"{r.scenario:<28}{r.concurrency:>6}{r.jobs:>7}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.per_s:>9.0f}{r.failures:>6}"
        )
    print_copy_cost(rows)
    c1 = [r for r in rows if r.concurrency == 1 and r.scenario == CLEAR]
    if c1:
        verdict = "met" if c1[0].p50_ms < 15 else "NOT met"
        p50 = c1[0].p50_ms
        print(f"\ntarget p50 < 15 ms for 2-of-3 at concurrency 1: {verdict} ({p50:.2f} ms)")


# --- layouts ---------------------------------------------------------------------------------


async def run_inproc(jobs: int) -> None:
    from relay_mock import Limits, Relay

    keys = [Keys.generate() for _ in range(3)]
    async with Relay(limits=Limits(max_subscriptions=MAX_SUBS)) as relay:
        ready = asyncio.Event()
        task = asyncio.create_task(serve_providers(relay.url, keys, ready))
        await ready.wait()
        try:
            rows = await bench(relay.url, [k.public_key for k in keys], jobs)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    print_rows(rows, "relay, 3 providers and customer in one process")


def run_processes(jobs: int) -> None:
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "client.cli",
            "relay",
            "--port",
            "0",
            "--max-subscriptions",
            str(MAX_SUBS),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    providers: subprocess.Popen[str] | None = None
    try:
        assert relay.stdout is not None
        url = relay.stdout.readline().strip()
        if not url.startswith("ws://"):
            raise SystemExit(f"relay did not start: {url!r}")
        providers = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-providers", url, "3"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert providers.stdout is not None
        pubkeys = []
        for line in providers.stdout:
            line = line.strip()
            if line == "ready":
                break
            pubkeys.append(line)
        rows = asyncio.run(bench(url, pubkeys, jobs))
        print_rows(rows, "relay, providers and customer: one process each, 2 cores")
    finally:
        for proc in (providers, relay):
            if proc is not None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=200, help="jobs per row (at least 5x concurrency)")
    ap.add_argument("--inproc", action="store_true", help="everything in one process")
    ap.add_argument("--serve-providers", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_providers:
        providers_main(args.serve_providers[0], int(args.serve_providers[1]))
        return
    if args.inproc:
        asyncio.run(run_inproc(args.jobs))
    else:
        run_processes(args.jobs)


if __name__ == "__main__":
    main()
