"""Gateways whose ``state.url`` is PostgreSQL keep the swarm's payment ledger and reputation
ledger there, shared: an invoice one gateway paid is never paid by another, and both see the
same record of every provider; with PostgreSQL away nothing is paid, and both recover by
themselves. Real provider nodes paid through a real NWC wallet service."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import openai
import pytest

from client.nostr.keys import Keys
from provider.node import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from router.gateway.swarm import ServedSwarm
from tests.support.gateway import client, gateway, user
from tests.support.servers import Postgres

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


def swarm_of(gw: Any) -> ServedSwarm:
    served = gw.router.backends["swarm"]
    assert isinstance(served, ServedSwarm)
    return served


async def test_gateways_on_postgres_share_the_swarms_ledgers(
    relay: Relay, tmp_path: Path, postgres: Postgres, pg_url: str
) -> None:
    with Ledger(tmp_path / "network.db") as ledger:
        customer = ledger.create_account("gateway", msats=1_000_000)
        async with WalletService(ledger, [relay.url]) as service, contextlib.AsyncExitStack() as st:
            providers = []
            for i in range(2):
                wallet = LedgerWallet(ledger, ledger.create_account(f"provider{i}").id)
                backend = MockBackend("m").with_model("m1").with_response("4").with_usage(5, 2)
                node = ProviderNode(
                    Keys.generate(),
                    [relay.url],
                    backend,
                    pricing=PRICING,
                    payment="after",
                    wallet=wallet,
                )
                providers.append(await st.enter_async_context(node))
            data = {
                "backends": [{"name": "local", "type": "mock", "models": ["m1"]}],
                "default_backend": "local",
                "state": {"url": pg_url},
                "swarm": {
                    "relays": [relay.url],
                    "quorum": 2,
                    "bid_sats": 5,
                    "models": ["m1"],
                    "job_timeout_s": 10,
                    "nwc_uri": "${NWC}",
                    "secret_key": Keys.generate().secret_hex,
                },
            }
            env = {"NWC": service.connection_uri(customer.id)}
            async with gateway(data, env=env) as a, gateway(data, env=env) as b:
                answer = await client(a).chat.completions.create(
                    model="swarm/m1", messages=user("2+2?"), max_tokens=50
                )
                assert answer.choices[0].message.content == "4"
                assert ledger.balance(customer.id) == 1_000_000 - 4000
                payer_b = swarm_of(b).client.payer
                assert payer_b.ledger.shared
                paid = payer_b.ledger.history()
                assert [r.state for r in paid] == ["paid", "paid"]  # a's payments, seen by b
                for rec in paid:  # b, handed the same invoices, does not pay them again
                    again = await payer_b.pay(
                        rec.job_id,
                        rec.provider,
                        rec.invoice,
                        quote_msats=rec.amount_msats,
                        bid_msats=5000,
                    )
                    assert again.status == "paid" and again.repeated
                assert ledger.balance(customer.id) == 1_000_000 - 4000
                reputation_b = swarm_of(b).client.reputation
                assert reputation_b is not None and reputation_b.shared
                reputation_b.refresh()
                for node in providers:
                    rec = reputation_b.get(node.keys.public_key)
                    assert rec is not None and rec.jobs == 1 and rec.agreed == pytest.approx(1)
                # PostgreSQL away: a swarm request is refused before anything is paid; once it
                # is back, the same gateway pays again (its stores reconnect by themselves).
                postgres.kill()
                try:
                    with pytest.raises(openai.APIStatusError) as refused:
                        await client(b).chat.completions.create(
                            model="swarm/m1", messages=user("3+1?"), max_tokens=50
                        )
                    assert refused.value.status_code == 503
                    assert refused.value.code == "state_unavailable"
                finally:
                    postgres.start()
                assert ledger.balance(customer.id) == 1_000_000 - 4000
                again = await client(b).chat.completions.create(
                    model="swarm/m1", messages=user("3+1?"), max_tokens=50
                )
                assert again.choices[0].message.content == "4"
                assert ledger.balance(customer.id) == 1_000_000 - 8000
                assert [r.state for r in payer_b.ledger.history()] == ["paid"] * 4
