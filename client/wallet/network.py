"""Which Lightning network a wallet pays on, as its NIP-47 ``get_info`` says, so the payment
guard checks invoices against the wallet's own network without the user naming it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .invoices import NETWORKS

log = logging.getLogger(__name__)

# What wallets answer, and the name the guard uses.
_ALIASES = {
    "mainnet": "bitcoin",
    "main": "bitcoin",
    "bitcoin": "bitcoin",
    "testnet": "testnet",
    "testnet3": "testnet",
    "testnet4": "testnet",
    "signet": "signet",
    "regtest": "regtest",
}


def network_name(value: object) -> str | None:
    """A wallet's network name as the guard knows it, or None."""
    if not isinstance(value, str):
        return None
    name = _ALIASES.get(value.strip().lower())
    return name if name in NETWORKS else None


async def wallet_network(wallet: Any, within_s: float = 10.0) -> str | None:
    """The network ``wallet`` reports in ``get_info``; None when it cannot say."""
    get_info = getattr(wallet, "get_info", None)
    if get_info is None:
        return None
    try:
        async with asyncio.timeout(within_s):
            info = await get_info()
    except Exception as exc:  # any failure: the caller keeps its default and says so
        log.info("the wallet did not say its network: %s", exc)
        return None
    return network_name(info.get("network") if isinstance(info, dict) else None)
