"""Relay benchmark: relay_mock against the PyPI `nostr-relay` package, same load, one run.

Each relay runs in its own process on 127.0.0.1 (so the load generator here does not share its
core); this script is the clients. For each relay it prints:

- ingest: events/s accepted (each one id- and signature-checked by the relay) from several
  concurrent publishers, each keeping a window of events in flight;
- publish -> OK: p50/p99 of one publisher sending one event at a time;
- publish -> delivery: p50/p99 from sending an event to its arrival on another connection's
  live subscription;

then the ratios. Run: `python bench/relay.py [--events 8000] [--publishers 4]`. If nostr-relay
is not installed (`pip install nostr-relay==1.14`) or does not start, it says why and still
prints relay_mock's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import connect

from client.event import Event
from client.keys import Keys
from relay_mock import Relay

START_TIMEOUT = 20.0


@dataclass
class Figures:
    name: str
    ingest_per_s: float = 0.0
    cpu_us_per_event: float = 0.0
    accepted: int = 0
    refused: int = 0
    ok_p50_ms: float = 0.0
    ok_p99_ms: float = 0.0
    delivery_p50_ms: float = 0.0
    delivery_p99_ms: float = 0.0
    error: str = ""


# --- starting the relays -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"not listening on port {port} after {timeout:.0f} s")


def start_ours() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay_mock", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, proc, START_TIMEOUT)
    return proc, f"ws://127.0.0.1:{port}"


def start_nostr_relay(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("nostr-relay") or str(Path(sys.executable).with_name("nostr-relay"))
    if not Path(exe).exists():
        raise RuntimeError("not installed (pip install nostr-relay==1.14)")
    port = free_port()
    db = workdir / "nostr-relay.sqlite3"
    # Its defaults, with our port, an absolute database path, quiet logs, no NIP-05 lookups.
    config = {
        "DEBUG": False,
        "relay_name": "bench",
        "storage": {
            "sqlalchemy.url": f"sqlite+aiosqlite:///{db}",
            "num_concurrent_reqs": 10,
            "num_concurrent_adds": 2,
            "validators": [
                "nostr_relay.validators.is_not_too_large",
                "nostr_relay.validators.is_signed",
                "nostr_relay.validators.is_recent",
                "nostr_relay.validators.is_not_hellthread",
            ],
        },
        "verification": {"nip05_verification": "disabled"},
        "gunicorn": {"bind": f"127.0.0.1:{port}", "workers": 1, "loglevel": "warning"},
        "authentication": {"enabled": False},
        "message_timeout": 1800,
        "subscription_limit": 32,
        "max_limit": 6000,
        "hellthread_limit": 100,
    }
    path = workdir / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    proc = subprocess.Popen(
        [exe, "-c", str(path), "serve"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "stderr.log", "wb"),
    )
    wait_listening(port, proc, START_TIMEOUT)
    return proc, f"ws://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if entry.name == str(pid) or fields[1] == str(pid):  # fields[1] is the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- load ----------------------------------------------------------------------------------


def make_events(n: int, keys: list[Keys], tag: str) -> list[list[str]]:
    """Per publisher, EVENT messages ready to send (signed now, so `is_recent` accepts them)."""
    now = int(time.time())
    out: list[list[str]] = [[] for _ in keys]
    for i in range(n):
        k = i % len(keys)
        ev = Event.create(keys[k], 1, f"bench {tag} {i}", [["t", tag]], created_at=now)
        out[k].append('["EVENT",' + ev.to_json() + "]")
    return out


async def publisher(url: str, messages: list[str], window: int) -> tuple[int, int]:
    accepted = refused = 0
    async with connect(url, compression=None, max_size=None) as ws:
        slots = asyncio.Semaphore(window)
        done = asyncio.Event()
        expected = len(messages)

        async def read() -> None:
            nonlocal accepted, refused
            seen = 0
            async for text in ws:
                msg = json.loads(text)
                if msg[0] != "OK":
                    continue
                seen += 1
                if msg[2]:
                    accepted += 1
                else:
                    refused += 1
                slots.release()
                if seen == expected:
                    done.set()
                    return

        reader = asyncio.create_task(read())
        for m in messages:
            await slots.acquire()
            await ws.send(m)
        await asyncio.wait_for(done.wait(), 120)
        await reader
    return accepted, refused


async def ingest(url: str, batches: list[list[str]], window: int) -> tuple[float, int, int]:
    start = time.perf_counter()
    results = await asyncio.gather(*(publisher(url, b, window) for b in batches))
    elapsed = time.perf_counter() - start
    accepted = sum(a for a, _ in results)
    refused = sum(r for _, r in results)
    return accepted / elapsed, accepted, refused


async def ok_latency(url: str, keys: Keys, n: int, tag: str) -> list[float]:
    out: list[float] = []
    async with connect(url, compression=None) as ws:
        for i in range(n):
            ev = Event.create(keys, 1, f"ok {tag} {i}", [["t", tag]])
            msg = '["EVENT",' + ev.to_json() + "]"
            t0 = time.perf_counter()
            await ws.send(msg)
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if reply[0] == "OK" and reply[1] == ev.id:
                    break
            out.append(time.perf_counter() - t0)
    return out


async def delivery_latency(url: str, keys: Keys, n: int, tag: str) -> list[float]:
    out: list[float] = []
    async with (
        connect(url, compression=None) as sub,
        connect(url, compression=None) as pub,
    ):
        await sub.send(json.dumps(["REQ", "live", {"kinds": [1], "#t": [tag], "limit": 0}]))
        while json.loads(await asyncio.wait_for(sub.recv(), 30))[0] != "EOSE":
            pass
        for i in range(n):
            ev = Event.create(keys, 1, f"live {tag} {i}", [["t", tag]])
            msg = '["EVENT",' + ev.to_json() + "]"
            t0 = time.perf_counter()
            await pub.send(msg)
            while True:
                got = json.loads(await asyncio.wait_for(sub.recv(), 30))
                if got[0] == "EVENT" and got[2]["id"] == ev.id:
                    break
            out.append(time.perf_counter() - t0)
            # Drain the publisher's OK so its socket buffer does not fill.
            while json.loads(await asyncio.wait_for(pub.recv(), 30))[0] != "OK":
                pass
    return out


async def startup_times(n: int) -> list[float]:
    """Seconds from constructing a relay in this process to it accepting a websocket."""
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        relay = Relay()
        await relay.start()
        out.append(time.perf_counter() - t0)
        async with connect(relay.url, compression=None):
            pass
        await relay.close()
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(name: str, url: str, pid: int, args: argparse.Namespace) -> Figures:
    fig = Figures(name)
    keys = [Keys.generate() for _ in range(args.publishers)]
    tag = f"{name}-{os.getpid()}"
    batches = make_events(args.events, keys, tag)
    # Warm up (connections, caches, the peer's database) before timing.
    await ingest(url, [b[:20] for b in make_events(20 * args.publishers, keys, tag + "w")], 8)
    cpu0 = cpu_seconds(pid)
    fig.ingest_per_s, fig.accepted, fig.refused = await ingest(url, batches, args.window)
    fig.cpu_us_per_event = (cpu_seconds(pid) - cpu0) / max(1, fig.accepted) * 1e6
    oks = await ok_latency(url, keys[0], args.latency_samples, tag)
    fig.ok_p50_ms, fig.ok_p99_ms = pct(oks, 0.5), pct(oks, 0.99)
    lives = await delivery_latency(url, keys[1 % len(keys)], args.latency_samples, tag)
    fig.delivery_p50_ms, fig.delivery_p99_ms = pct(lives, 0.5), pct(lives, 0.99)
    return fig


def run_one(name: str, starter, args: argparse.Namespace, workdir: Path) -> Figures:  # type: ignore[no-untyped-def]
    try:
        proc, url = starter(workdir) if name == "nostr-relay" else starter()
    except Exception as exc:  # report and go on with the other relay
        return Figures(name, error=f"could not start: {exc}")
    try:
        return asyncio.run(measure(name, url, proc.pid, args))
    except Exception as exc:
        return Figures(name, error=f"failed during the run: {type(exc).__name__}: {exc}")
    finally:
        stop(proc)


def report(figs: list[Figures], args: argparse.Namespace) -> None:
    print(
        f"\nrelay benchmark: {args.events} events from {args.publishers} concurrent publishers "
        f"(window {args.window}), {args.latency_samples} latency samples; "
        f"{os.cpu_count()} cores\n"
    )
    header = (
        f"{'relay':<14}{'ingest ev/s':>12}{'CPU us/ev':>10}{'accepted':>10}{'refused':>9}"
        f"{'OK p50':>9}{'OK p99':>9}{'deliv p50':>11}{'deliv p99':>11}"
    )
    print(header)
    print("-" * len(header))
    for f in figs:
        if f.error:
            print(f"{f.name:<14}{f.error}")
            continue
        print(
            f"{f.name:<14}{f.ingest_per_s:>12,.0f}{f.cpu_us_per_event:>10.0f}"
            f"{f.accepted:>10}{f.refused:>9}"
            f"{f.ok_p50_ms:>7.2f}ms{f.ok_p99_ms:>7.2f}ms"
            f"{f.delivery_p50_ms:>9.2f}ms{f.delivery_p99_ms:>9.2f}ms"
        )
    ours, peer = figs[0], figs[1] if len(figs) > 1 else None
    if peer is not None and not ours.error and not peer.error and peer.ingest_per_s > 0:
        print(
            "\nratios relay_mock / nostr-relay: "
            f"ingest x{ours.ingest_per_s / peer.ingest_per_s:.1f}"
            f" (target >= 3), OK p50 x{peer.ok_p50_ms / ours.ok_p50_ms:.1f} faster,"
            f" delivery p50 x{peer.delivery_p50_ms / ours.delivery_p50_ms:.1f} faster"
        )
    if not ours.error and ours.cpu_us_per_event > 0:
        print(
            f"relay_mock CPU per verified event {ours.cpu_us_per_event:.0f} us: "
            f"{1e6 / ours.cpu_us_per_event:,.0f} ev/s per fully available core"
        )
    if not ours.error:
        verdict = "meets" if ours.ingest_per_s >= 3000 else "BELOW"
        print(f"relay_mock ingest {ours.ingest_per_s:,.0f} ev/s {verdict} the 3,000 ev/s target")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=8000, help="events for the ingest phase")
    parser.add_argument("--publishers", type=int, default=4, help="concurrent publishers")
    parser.add_argument("--window", type=int, default=64, help="events in flight per publisher")
    parser.add_argument("--latency-samples", type=int, default=400)
    parser.add_argument("--only-ours", action="store_true", help="skip nostr-relay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        figs = [run_one("relay_mock", start_ours, args, Path(tmp))]
        if not args.only_ours:
            figs.append(run_one("nostr-relay", start_nostr_relay, args, Path(tmp)))
    report(figs, args)
    starts = asyncio.run(startup_times(20))
    print(
        f"relay_mock in-process start to listening: median {pct(starts, 0.5):.2f} ms, "
        f"max {max(starts) * 1000:.2f} ms over {len(starts)} starts (target < 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
