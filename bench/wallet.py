"""Wallet benchmark, side by side with the named peers, in one run:

- BOLT11: invoices decoded and made per second by `client.wallet.invoices` (its own codec on
  whole integers; decode = checksum, fields, signature recovery and our reader checks; make =
  encode and sign) against the `bolt11` package (peer), which reads and writes bit by bit.
- NWC round trips against `swarm wallet serve` (its own process) over `swarm relay` (its own
  process): `get_balance` latency and a make-invoice + pay-invoice pair, from our `NwcWallet`
  against rust-nostr's NWC client (`nostr-sdk`, peer), same service, same relay.

Run: `python bench/wallet.py [--rounds 200]`. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import bolt11

from client.nostr.keys import Keys
from client.wallet.invoices import decode_invoice, make_invoice
from client.wallet.nwc import NwcWallet

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_bolt11(rounds: int) -> None:
    key = Keys.generate().secret_hex

    def rate(fn: Callable[[int], object]) -> float:
        start = time.perf_counter()
        for i in range(rounds):
            fn(i)
        return rounds / (time.perf_counter() - start)

    ours_make = rate(lambda i: make_invoice(key, amount_msats=1000 + i, created_at=1_800_000_000))
    # Distinct invoices, so the decode cache never hits in the "decode" row.
    texts = [
        make_invoice(key, amount_msats=5000 + i, created_at=1_800_000_000).bolt11
        for i in range(rounds)
    ]
    peer_texts = [
        make_invoice(key, amount_msats=9000 + i, created_at=1_800_000_000).bolt11
        for i in range(rounds)
    ]
    ours_dec = rate(lambda i: decode_invoice(texts[i]))
    again = rate(lambda i: decode_invoice(texts[i]))
    peer_dec = rate(lambda i: bolt11.decode(peer_texts[i]))

    def peer_make(i: int) -> object:
        inv = bolt11.decode(peer_texts[i])
        inv.signature = None
        return bolt11.encode(inv, private_key=key)

    peer_make_rate = rate(peer_make)
    print(f"BOLT11 ({rounds} invoices; per second, higher is better)")
    print(f"  {'':<30}{'client.wallet':>14}{'bolt11 pkg':>12}{'ratio':>8}")
    for label, ours, peer in (
        ("decode + verify (first time)", ours_dec, peer_dec),
        ("decode the same again (cached)", again, peer_dec),
        ("make (sign)", ours_make, peer_make_rate),
    ):
        print(f"  {label:<30}{ours:>14.0f}{peer:>12.0f}{ours / peer:>8.2f}")
    print("  (peer 'make' = bolt11.encode of a decoded invoice, so it includes one decode)")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(rounds: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """A `swarm` subcommand in its own process; returns once it printed its first line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
    return proc


async def new_account(db: str, url: str, sats: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "wallet",
        "new-account",
        "--db",
        db,
        "--relay",
        url,
        "--sats",
        str(sats),
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return str(json.loads(out)["uri"])


def row(name: str, r: dict[str, list[float]]) -> str:
    bal, pair = r["get_balance"], r["make + pay"]
    return (
        f"  {name:<26}{statistics.median(bal):>16.2f}{pct(bal, 0.99):>8.2f}"
        f"{statistics.median(pair):>14.2f}{pct(pair, 0.99):>8.2f}"
    )


async def bench_nwc(rounds: int) -> None:
    import nostr_sdk

    tmp = Path(tempfile.mkdtemp(prefix="bench-wallet-"))
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    db = str(tmp / "ledger.db")
    procs = [await spawn("relay", "--port", str(port))]
    try:
        uris = [await new_account(db, url, sats) for sats in (100_000_000, 0, 100_000_000, 0)]
        procs.append(await spawn("wallet", "serve", "--relay", url, "--db", db))
        results: dict[str, dict[str, list[float]]] = {}
        async with NwcWallet(uris[0], timeout=10) as payer, NwcWallet(uris[1], timeout=10) as payee:
            await payer.get_balance()  # warm up

            async def ours_pair() -> None:
                await payer.pay_invoice(await payee.make_invoice(1000, "bench"))

            results["client.wallet.NwcWallet"] = {
                "get_balance": await timed(rounds, payer.get_balance),
                "make + pay": await timed(rounds, ours_pair),
            }
        sdk_payer = nostr_sdk.NostrWalletConnect(nostr_sdk.NostrWalletConnectUri.parse(uris[2]))
        sdk_payee = nostr_sdk.NostrWalletConnect(nostr_sdk.NostrWalletConnectUri.parse(uris[3]))
        await sdk_payer.get_balance()

        async def sdk_pair() -> None:
            made = await sdk_payee.make_invoice(
                nostr_sdk.MakeInvoiceRequest(
                    amount=1000, description="bench", description_hash=None, expiry=None
                )
            )
            await sdk_payer.pay_invoice(
                nostr_sdk.PayInvoiceRequest(id=None, invoice=made.invoice, amount=None)
            )

        results["nostr-sdk NWC"] = {
            "get_balance": await timed(rounds, sdk_payer.get_balance),
            "make + pay": await timed(rounds, sdk_pair),
        }
        print(f"\nNWC round trips via relay_mock to `swarm wallet serve` ({rounds} rounds, ms)")
        print(f"  {'':<26}{'get_balance p50':>16}{'p99':>8}{'make+pay p50':>14}{'p99':>8}")
        for name, r in results.items():
            print(row(name, r))
        ours, peer = results["client.wallet.NwcWallet"], results["nostr-sdk NWC"]
        bal = statistics.median(ours["get_balance"]) / statistics.median(peer["get_balance"])
        pair = statistics.median(ours["make + pay"]) / statistics.median(peer["make + pay"])
        print(f"  ratio ours/peer (p50): get_balance {bal:.2f}, make+pay {pair:.2f}")
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200, help="operations per measurement")
    args = parser.parse_args()
    bench_bolt11(args.rounds)
    asyncio.run(bench_nwc(args.rounds))


if __name__ == "__main__":
    main()
