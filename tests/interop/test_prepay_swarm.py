"""Buying from a DVM that works only once paid (a priced nostrdvm DVM does this: it answers
``payment-required`` with a BOLT11 and waits). Our own provider with ``payment = "before"`` plays
that DVM here: nostrdvm's invoices come from LNbits or a Lightning address over HTTP, which a test
on 127.0.0.1 cannot reach."""

from __future__ import annotations

import pytest

from client.errors import QuorumNotReached
from client.keys import Keys
from client.prepay import PrepayPolicy
from client.swarm import SwarmClient
from client.wallet.ledger import Ledger
from client.wallet.local import LedgerWallet
from provider.node import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from tests.provider.conftest import mock_backend

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


async def test_swarm_client_prepays_a_pay_before_work_provider_and_pays_once(
    relay: Relay, tmp_path: object
) -> None:
    ledger = Ledger(":memory:")
    node_wallet = LedgerWallet(ledger, ledger.create_account("dvm").id)
    customer_wallet = LedgerWallet(ledger, ledger.create_account("me", msats=100_000).id)
    node = ProviderNode(
        Keys.generate(), [relay.url], mock_backend(), pricing=PRICING, payment="before",
        wallet=node_wallet, payment_poll_s=0.01, connect_timeout=3.0,
    )
    async with node, SwarmClient(
        Keys.generate(), [relay.url], wallet=customer_wallet,
        payments_db=str(tmp_path) + "/payments.db",  # type: ignore[operator]
    ) as swarm:
        targets = [node.keys.public_key]
        with pytest.raises(QuorumNotReached):  # without prepay: it waits for money, we time out
            await swarm.complete("hello", quorum=1, targets=targets, bid_msats=10_000,
                                 max_tokens=100, timeout=1.0)
        result = await swarm.complete(
            "hello", quorum=1, targets=targets, bid_msats=10_000, max_tokens=100, timeout=10.0,
            prepay=PrepayPolicy(),
        )
    quote = 2000  # 2 prompt + 100 completion tokens cost 1,002 msats: the minimum, 2,000
    assert result.text == "Echo: hello"
    assert result.msats_paid == quote
    assert ledger.balance(node_wallet.account_id) == quote  # once: not again after the quorum
    assert ledger.balance(customer_wallet.account_id) == 100_000 - quote


async def test_prepay_never_pays_above_the_bid(relay: Relay, tmp_path: object) -> None:
    ledger = Ledger(":memory:")
    node_wallet = LedgerWallet(ledger, ledger.create_account("dvm").id)
    customer_wallet = LedgerWallet(ledger, ledger.create_account("me", msats=100_000).id)
    node = ProviderNode(
        Keys.generate(), [relay.url], mock_backend(), pricing=PRICING, payment="before",
        wallet=node_wallet, payment_poll_s=0.01, connect_timeout=3.0,
    )
    async with node, SwarmClient(
        Keys.generate(), [relay.url], wallet=customer_wallet,
        payments_db=str(tmp_path) + "/payments.db",  # type: ignore[operator]
    ) as swarm:
        # The invoice asks 2,000 msats; max_msats 1,000 caps what we pay in advance: nothing is.
        with pytest.raises(QuorumNotReached):
            await swarm.complete(
                "hello", quorum=1, targets=[node.keys.public_key], bid_msats=10_000,
                max_tokens=100, timeout=1.0, prepay=PrepayPolicy(max_msats=1000),
            )
    assert ledger.balance(node_wallet.account_id) == 0
    assert ledger.balance(customer_wallet.account_id) == 100_000
