"""The payment guard checks invoices against the network the wallet itself reports (NIP-47
get_info), so a mainnet wallet pays mainnet invoices without anyone naming the network; the
gateway does the same with `swarm.network: auto`."""

from __future__ import annotations

from pathlib import Path

from client.wallet import NwcWallet
from client.wallet.network import network_name, wallet_network
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from router.gateway.app import Gateway
from router.gateway.config import parse_config


def test_network_names() -> None:
    assert network_name("mainnet") == network_name("bitcoin") == "bitcoin"
    assert network_name("testnet4") == "testnet"
    assert network_name("moon") is None and network_name(None) is None


async def test_the_wallet_says_its_network_and_the_gateway_takes_it(
    relay: Relay, tmp_path: Path
) -> None:
    with Ledger(tmp_path / "net.db", network="bitcoin") as ledger:
        account = ledger.create_account("c", msats=10_000).id
        async with WalletService(ledger, [relay.url]) as service:
            uri = service.connection_uri(account)
            async with NwcWallet(uri, timeout=5) as wallet:
                assert await wallet_network(wallet) == "bitcoin"
            cfg = parse_config(
                {
                    "swarm": {"relays": [relay.url], "nwc_uri": uri, "wallet_timeout_s": 5},
                    "state": {"url": f"sqlite:///{tmp_path / 's.sqlite'}"},
                    "server": {"port": 0},
                    "refresh_interval": 0,
                },
                env={},
            )
            gw = Gateway(cfg)
            await gw.start()
            try:
                swarm = gw.router.backends["swarm"]
                assert swarm.client.payer.guard.network == "bitcoin"  # type: ignore[attr-defined]
            finally:
                await gw.stop(grace_s=1)
