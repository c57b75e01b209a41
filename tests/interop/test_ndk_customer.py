"""A customer built with NDK (`@nostr-dev-kit/ndk`) buying from our provider node.

NDK's ``NDKDVMRequest.encryption()`` seals ``bid`` (and ``relays``, ``output``) with the inputs;
our provider read the bid from visible tags only, so a 1-msat sealed bid was "no bid" and billed
in full. NDK's ``NDKDVMJobFeedback.from()`` parses an encrypted job's feedback content as a JSON
tag list and threw on our empty content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from client.nostr.keys import Keys
from client.wallet import decode_invoice
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
    require_js("@nostr-dev-kit/ndk")


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


def _named(tags: list[list[str]], name: str) -> list[list[str]]:
    return [t for t in tags if t and t[0] == name]


async def test_sealed_bid_below_the_quote_is_refused_not_billed(
    relay: Relay, node: ProviderNode
) -> None:
    customer = Keys.generate()
    async with run_node(
        "ndk_job.mjs", relay.url, customer.secret_hex, node.keys.public_key, "1", "hello"
    ) as ndk:
        published = await ndk.expect("published")
        feedback = await ndk.expect("feedback")
    # NDK sent the bid sealed only: nothing visible but p, encrypted (and NDK's own extras).
    assert not _named(published["request"]["tags"], "bid")
    assert feedback["status"] == "error"
    # NDK decrypted our content into a second status tag list: the refusal and our quote.
    statuses = _named(feedback["tags"], "status")
    assert len(statuses) == 2 and {s[1] for s in statuses} == {"error"}
    assert "bid" in statuses[1][2]
    amounts = _named(feedback["tags"], "amount")
    assert len(amounts) == 2 and amounts[0] == amounts[1] and int(amounts[0][1]) > 1
    assert node.stats.billed_msats == 0


async def test_sealed_bid_that_covers_the_quote_is_served_and_capped(
    relay: Relay, node: ProviderNode
) -> None:
    customer = Keys.generate()
    async with run_node(
        "ndk_job.mjs", relay.url, customer.secret_hex, node.keys.public_key, "5000", "hello"
    ) as ndk:
        result: dict[str, Any] = await ndk.expect("result")
        # The driver handles events concurrently, so "success" may be printed before
        # "processing": take feedback until the processing one.
        processing = await ndk.expect("feedback")
        while processing["status"] != "processing":
            processing = await ndk.expect("feedback")
    assert len(_named(processing["tags"], "status")) == 2  # visible, and NDK's decrypted copy
    assert result["content"] == "Echo: hello"
    amount = _named(result["tags"], "amount")[0]
    assert int(amount[1]) <= 5000
    assert decode_invoice(amount[2]).amount_msats == int(amount[1])
