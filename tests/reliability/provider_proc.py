"""A paid provider node in its own process, so a test can kill it (SIGKILL: a real crash).

    python -m tests.reliability.provider_proc --relay URL --ledger PATH --account ID \
        --store PATH --secret HEX [--reply TEXT] [--latency-ms N]

Prints ``ready`` once it serves, then runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio

from client.nostr.keys import Keys
from provider import Limits, ProviderNode
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from tests.support.market import PRICING, mock


async def serve(args: argparse.Namespace) -> None:
    ledger = Ledger(args.ledger)
    node = ProviderNode(
        Keys.from_secret(args.secret),
        [args.relay],
        mock(args.reply, latency_ms=args.latency_ms),
        pricing=PRICING,
        payment="after",
        wallet=LedgerWallet(ledger, args.account),
        limits=Limits(rate_per_minute=None),
        store=args.store,
        announce=False,
    )
    async with node:
        print("ready", flush=True)
        await node.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--relay", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--account", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--reply", default="4")
    p.add_argument("--latency-ms", type=float, default=0.0)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
