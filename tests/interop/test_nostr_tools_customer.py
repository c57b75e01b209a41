"""A customer written with nostr-tools alone, buying from our provider node: a bid given both
visibly and sealed (the lower wins), and our replies verified and decrypted by nostr-tools."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from client.nostr.keys import Keys
from provider.node import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from tests.interop.peers import require_js, run_node
from tests.support.nodes import mock_backend

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_js("nostr-tools")


@pytest.fixture
async def node(relay: Relay) -> AsyncIterator[ProviderNode]:
    ledger = Ledger(":memory:")
    wallet = LedgerWallet(ledger, ledger.create_account("node").id)
    async with ProviderNode(
        Keys.generate(),
        [relay.url],
        mock_backend(),
        pricing=PRICING,
        payment="after",
        wallet=wallet,
        connect_timeout=3.0,
    ) as started:
        yield started


@pytest.mark.parametrize(("visible", "sealed"), [("1000000", "1"), ("1", "1000000")])
async def test_the_lower_of_a_visible_and_a_sealed_bid_decides(
    relay: Relay, node: ProviderNode, visible: str, sealed: str
) -> None:
    customer = Keys.generate()
    async with run_node(
        "nostr_tools_job.mjs",
        relay.url,
        customer.secret_hex,
        node.keys.public_key,
        visible,
        sealed,
        "hello",
    ) as peer:
        feedback = await peer.expect("feedback")
    # nostr-tools verified the event and decrypted its content: our sealed tag list.
    status = next(t for t in feedback["sealed"] if t[0] == "status")
    assert status[:2] == ["status", "error"] and "bid 1 msats" in status[2]
    assert ["status", *status[1:]] in feedback["tags"]  # kept visible as well
    assert node.stats.billed_msats == 0


async def test_a_bid_covering_the_quote_both_ways_is_served(
    relay: Relay, node: ProviderNode
) -> None:
    customer = Keys.generate()
    async with run_node(
        "nostr_tools_job.mjs",
        relay.url,
        customer.secret_hex,
        node.keys.public_key,
        "9000",
        "5000",
        "hello",
    ) as peer:
        result = await peer.expect("result")
        feedback = await peer.expect("feedback")
    assert result["content"] == "Echo: hello"
    assert ["status", "processing"] in feedback["sealed"]
    amount = next(t for t in result["tags"] if t[0] == "amount")
    assert int(amount[1]) <= 5000
