"""Soak: 1,000 paid swarm jobs (3 providers, quorum 2) through one relay with faults switched on.

Five processes on 127.0.0.1, so that each one's memory is its own:

- the relay (this script, ``--role relay``): relay_mock with messages dropped at random, a little
  latency on every message, and every connection cut every few seconds;
- three provider nodes (``--role provider``): real ProviderNodes, payment ``after``, each with a
  LedgerWallet on the shared SQLite ledger; their model answers at once and fails now and then;
- the customer (this process): SwarmClient with SwarmPayHook(Payer(LedgerWallet, PaymentLedger))
  keeping ``--concurrency`` jobs in flight.

Printed: a checkpoint every 100 jobs (completed, failed, the resident memory of every process),
then completed jobs, failures by reason, sats paid vs owed (and the double-payment check on both
books), peak memory per process, and memory growth after warm-up (the first checkpoint).

Run: ``python bench/soak.py [--jobs 1000] [--concurrency 20] [--drop-rate 0.02]
[--cut-every 10] [--fail-rate 0.02]``. Figures depend on machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from websockets.asyncio.client import connect  # noqa: E402

from client.customer.swarm import SwarmClient  # noqa: E402
from client.nostr.errors import NostrSwarmError, PublishError, QuorumNotReached  # noqa: E402
from client.nostr.keys import Keys  # noqa: E402
from client.wallet import Payer, PaymentLedger, SwarmPayHook  # noqa: E402
from relay_mock.lightning.ledger import Ledger  # noqa: E402
from relay_mock.lightning.wallet import LedgerWallet  # noqa: E402

MODEL = "m1"
CUSTOMER_MSATS = 10**9
PRICING = {"msats_per_1k_prompt": 1_000, "msats_per_1k_completion": 10_000, "min_msats": 2_000}


# --- child processes -------------------------------------------------------------------------


def relay_main(args: argparse.Namespace) -> None:
    from relay_mock import Faults, Limits, Relay

    async def run() -> None:
        faults = Faults(drop_rate=args.drop_rate, latency=args.latency_ms / 1000)
        relay = Relay(limits=Limits(max_subscriptions=5000), faults=faults, seed=1)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with relay:
            print(relay.url, flush=True)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.cut_every)
                if not stop.is_set() and args.cut_every > 0:
                    await relay.disconnect_all(abort=True)  # every client reconnects
            stats = relay.stats()
            print(
                json.dumps(
                    {
                        "cuts": stats.disconnects_forced,
                        "dropped": stats.messages_dropped,
                        "stored": stats.stored_events,
                    }
                ),
                flush=True,
            )

    asyncio.run(run())


def provider_main(args: argparse.Namespace) -> None:
    from provider import Limits, Pricing, ProviderNode
    from router.backends import MockBackend

    async def run() -> None:
        backend = MockBackend("mock").with_model(MODEL).with_response("4").with_usage(5, 3)
        if args.fail_rate:
            backend = backend.with_failure(args.fail_rate)
        ledger = Ledger(args.ledger)
        node = ProviderNode(
            Keys.from_secret(args.secret),
            [args.relay],
            backend,
            pricing=Pricing(**PRICING),
            payment="after",
            wallet=LedgerWallet(ledger, args.account),
            limits=Limits(rate_per_minute=None, max_concurrent=16, queue_size=256),
            store=args.store,
            announce=False,
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with node:
            for conn in node.pool.relays:  # reconnect fast after each cut
                conn.backoff_min, conn.backoff_max = 0.05, 0.5
            print("ready", flush=True)
            await stop.wait()
        stats = node.stats
        print(
            json.dumps(
                {
                    "completed": stats.completed,
                    "failed": dict(stats.failed),
                    "refused": dict(stats.refused),
                    "duplicates": stats.duplicates,
                    "publish_failures": stats.publish_failures,
                }
            ),
            flush=True,
        )
        ledger.close()

    # Lost OKs are expected here (faults); the node counts them (publish_failures, below).
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run())


# --- memory ----------------------------------------------------------------------------------


def memory_kb(pid: int | str = "self") -> tuple[int, int]:
    """(resident, peak resident) in kB, from /proc."""
    rss = peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return rss, peak


@dataclass
class Soak:
    relay_pid: int
    provider_pids: list[int]
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    owed_msats: int = 0
    # Timings only: keeping every SwarmResult (events and all) would be the soak's own leak.
    to_quorum: list[float] = field(default_factory=list)
    paying: list[float] = field(default_factory=list)
    checkpoints: list[tuple[int, list[int], int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    trace: bool = False
    snapshots: list[tracemalloc.Snapshot] = field(default_factory=list)

    @property
    def pids(self) -> list[int | str]:
        return [self.relay_pid, *self.provider_pids, "self"]

    def checkpoint(self, done: int, elapsed: float, stored: int) -> None:
        if self.trace and tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot()
            self.snapshots = [self.snapshots[0] if self.snapshots else snap, snap]
        rss = [memory_kb(p)[0] for p in self.pids]
        self.checkpoints.append((done, rss, stored))
        mb = "".join(f"{r / 1024:>9.1f}" for r in rss)
        print(
            f"{done:>6}{self.completed:>7}{sum(self.failed.values()):>6}{elapsed:>8.1f}"
            f"{stored:>8}{mb}",
            flush=True,
        )


def why(exc: BaseException) -> str:
    if isinstance(exc, QuorumNotReached):
        text = str(exc)
        return "quorum: " + text[text.index("(") + 1 : text.index(")")].split(" after")[0]
    if isinstance(exc, PublishError):
        return "publish: no relay accepted the request"
    return f"{type(exc).__name__}"


async def stored_events(url: str) -> int:
    with contextlib.suppress(Exception):
        async with connect(url, compression=None) as ws:
            await ws.send('["COUNT","n",{}]')
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if msg[0] == "COUNT":
                    return int(msg[2]["count"])
    return -1


async def run_jobs(
    args: argparse.Namespace, soak: Soak, url: str, targets: list[str], swarm: SwarmClient
) -> None:
    counter = iter(range(args.jobs))
    done = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done
        for i in counter:
            t0 = time.perf_counter()
            try:
                result = await swarm.complete(
                    f"job {i}: what is 2+2?",
                    model=MODEL,
                    quorum=2,
                    targets=targets,
                    timeout=args.timeout,
                    max_sats=100,
                )
            except NostrSwarmError as exc:
                soak.failed[why(exc)] += 1
            except Exception as exc:  # counted, not fatal: the soak is looking for these
                soak.failed[f"unexpected {type(exc).__name__}: {exc}"] += 1
            else:
                soak.completed += 1
                soak.latencies.append((time.perf_counter() - t0) * 1000)
                t = result.timings
                soak.to_quorum.append(t.quorum_ms or 0.0)
                soak.paying.append(t.total_ms - (t.quorum_ms or 0.0))
                soak.owed_msats += sum(
                    inv.msats
                    for p, inv in result.invoices.items()
                    if p in result.agreeing and inv.bolt11
                )
            done += 1
            if done % 100 == 0:
                stored = await stored_events(url)
                soak.checkpoint(done, time.perf_counter() - started, stored)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))


def spawn(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *argv],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    ledger = Ledger(tmp / "network.db")
    customer_acc = ledger.create_account("customer", msats=CUSTOMER_MSATS)
    relay = spawn(
        "--role",
        "relay",
        "--drop-rate",
        str(args.drop_rate),
        "--latency-ms",
        str(args.latency_ms),
        "--cut-every",
        str(args.cut_every),
    )
    assert relay.stdout is not None
    url = relay.stdout.readline().strip()
    providers: list[subprocess.Popen[str]] = []
    keys = [Keys.generate() for _ in range(3)]
    accounts = [ledger.create_account(f"provider{i}").id for i in range(3)]
    for i, k in enumerate(keys):
        providers.append(
            spawn(
                "--role",
                "provider",
                "--relay",
                url,
                "--ledger",
                str(tmp / "network.db"),
                "--account",
                str(accounts[i]),
                "--store",
                str(tmp / f"provider{i}.db"),
                "--secret",
                k.secret_hex,
                "--fail-rate",
                str(args.fail_rate),
            )
        )
    for p in providers:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    soak = Soak(relay.pid, [p.pid for p in providers], trace=args.tracemalloc)
    if args.tracemalloc:
        tracemalloc.start(8)
    payments = PaymentLedger(tmp / "payments.db")
    hook = SwarmPayHook(Payer(LedgerWallet(ledger, customer_acc.id), payments))
    print(
        f"soak: {args.jobs} jobs, quorum 2 of 3 providers, concurrency {args.concurrency}, "
        f"timeout {args.timeout:g} s; faults: {args.drop_rate:.0%} of relay messages dropped, "
        f"{args.latency_ms:g} ms added per message, every connection cut every "
        f"{args.cut_every:g} s, {args.fail_rate:.0%} of model calls fail"
    )
    print(
        f"{'jobs':>6}{'done':>7}{'fail':>6}{'time s':>8}{'stored':>8}"
        f"{'relay MB':>9}{'prov1':>9}{'prov2':>9}{'prov3':>9}{'cust MB':>9}"
    )
    t0 = time.perf_counter()
    try:
        async with SwarmClient(Keys.generate(), [url], pay=hook) as swarm:
            for conn in swarm.pool.relays:
                conn.backoff_min, conn.backoff_max = 0.05, 0.5
            await run_jobs(args, soak, url, [k.public_key for k in keys], swarm)
        wall = time.perf_counter() - t0
        peaks = [memory_kb(p)[1] for p in soak.pids]
    finally:
        for p in [*providers, relay]:
            p.send_signal(signal.SIGTERM)
        tails = [p.communicate(timeout=60)[0].strip().splitlines() for p in [relay, *providers]]
    report(soak, args, wall, peaks, ledger, payments, customer_acc.id, accounts, tails)
    return 0


def report(
    soak: Soak,
    args: argparse.Namespace,
    wall: float,
    peaks: list[int],
    ledger: Ledger,
    payments: PaymentLedger,
    customer: int,
    accounts: list[int],
    tails: list[list[str]],
) -> None:
    lat = sorted(soak.latencies)
    p50 = lat[len(lat) // 2] if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    quorum, paying = sorted(soak.to_quorum), sorted(soak.paying)
    mid = len(quorum) // 2
    print(
        f"\ncompleted {soak.completed} of {args.jobs} in {wall:.1f} s "
        f"({soak.completed / wall:.1f} jobs/s; p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
        f"p50 to quorum {quorum[mid] if quorum else 0:.0f} ms, "
        f"then paying {paying[mid] if paying else 0:.0f} ms)"
    )
    print(f"failed    {sum(soak.failed.values())}")
    for reason, n in soak.failed.most_common():
        print(f"  {n:>5}  {reason}")
    records = payments.history()
    paid = [r for r in records if r.state == "paid"]
    per_pair = Counter((r.job_id, r.provider) for r in paid)
    twice = sum(1 for n in per_pair.values() if n > 1)
    paid_msats = sum(r.amount_msats for r in paid)
    spent = CUSTOMER_MSATS - ledger.balance(customer)
    received = sum(ledger.balance(a) for a in accounts)
    print(
        f"sats paid {paid_msats / 1000:g} vs owed {soak.owed_msats / 1000:g} "
        f"(agreeing providers' invoices of completed jobs); {len(paid)} payments, "
        f"{len(payments.open_payments())} open, refused/failed "
        f"{sum(1 for r in records if r.state == 'failed')}"
    )
    print(
        f"paid twice: {twice} (customer's payment ledger); ledger: customer spent "
        f"{spent / 1000:g} sats, providers received {received / 1000:g} sats, "
        f"conserved={ledger.total_msats() == ledger.deposits_msats()}"
    )
    names = ["relay", "provider 1", "provider 2", "provider 3", "customer"]
    print(
        "peak memory (VmHWM): "
        + ", ".join(f"{n} {kb / 1024:.1f} MB" for n, kb in zip(names, peaks, strict=True))
    )
    if len(soak.checkpoints) >= 2:
        (j0, first, s0), (j1, last, s1) = soak.checkpoints[0], soak.checkpoints[-1]
        mid = soak.checkpoints[len(soak.checkpoints) // 2]
        print(f"memory from job {j0} (after warm-up) to job {mid[0]} and job {j1}:")
        for n, a, m, b in zip(names, first, mid[1], last, strict=True):
            print(
                f"  {n:<11}{a / 1024:>7.1f} -> {m / 1024:>7.1f} -> {b / 1024:>7.1f} MB  "
                f"(first half {(m - a) / 1024:+.1f} MB, second half {(b - m) / 1024:+.1f} MB)"
            )
        if s1 > s0 >= 0:
            per_event = (last[0] - first[0]) / (s1 - s0)
            print(
                f"  the relay keeps every event in memory: {per_event:.1f} kB per stored event "
                f"({s1 - s0} events added)"
            )
    if len(soak.snapshots) == 2:
        first, last = soak.snapshots
        print("customer: where the memory added after warm-up was allocated (tracemalloc)")
        for stat in last.compare_to(first, "traceback")[:6]:
            frames = [f for f in stat.traceback if "site-packages" not in f.filename][:3]
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames)
            print(f"  {stat.size_diff / 1024:>+9.1f} kB {stat.count_diff:>+7} blocks  {where}")
    for name, tail in zip(names, tails, strict=False):
        if tail:
            print(f"{name} says: {tail[-1]}")


def cli() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=("main", "relay", "provider"), default="main")
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--timeout", type=float, default=8.0, help="seconds per job")
    p.add_argument("--drop-rate", type=float, default=0.02)
    p.add_argument("--latency-ms", type=float, default=1.0)
    p.add_argument("--cut-every", type=float, default=10.0, help="seconds between connection cuts")
    p.add_argument("--fail-rate", type=float, default=0.02, help="share of failing model calls")
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="show where the customer's memory grew after warm-up (slower)",
    )
    p.add_argument("--relay")
    p.add_argument("--ledger")
    p.add_argument("--account", type=int)
    p.add_argument("--store")
    p.add_argument("--secret")
    return p.parse_args()


if __name__ == "__main__":
    ns = cli()
    if ns.role == "relay":
        relay_main(ns)
    elif ns.role == "provider":
        provider_main(ns)
    else:
        sys.exit(asyncio.run(main(ns)))
