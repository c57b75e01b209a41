"""Every result a real node publishes, under each payment policy and each way of answering
(plain, sealed, commit-reveal, encrypted), over relay_mock: the customer's strict parser
accepts it, and its amount (and every feedback's) obeys the builder's rules
(client/dvm/amounts.py: at most the bid, the invoice's amount equal to the tag's)."""

from __future__ import annotations

import pytest

from client.dvm.amounts import check_amount
from client.dvm.nip90 import Job, JobSpec, parse_result
from client.dvm.sealing import build_reveal_call, commitment_of, salt_of, verify_reveal
from client.wallet import decode_invoice
from provider.pricing import Pricing
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)
BID = 50_000


def amounts_obey_the_rules(job: Job, customer: Customer, bid: int | None) -> None:
    replies = customer.replies(job)
    assert replies.rejected == []  # nothing the node sent failed the strict parsers
    for reply in [*replies.results, *replies.feedback]:
        if reply.amount is None:
            continue
        limit = None if getattr(reply, "status", "") == "error" else bid
        assert (
            check_amount(reply.amount.msats, reply.amount.bolt11, bid_msats=limit) == reply.amount
        )
        if reply.amount.bolt11 is not None:
            assert decode_invoice(reply.amount.bolt11).amount_msats == reply.amount.msats


@pytest.mark.parametrize("payment", ["free", "after", "before"])
@pytest.mark.parametrize("mode", ["plain", "sealed", "commit", "encrypted"])
@pytest.mark.parametrize("bid", [None, BID])
async def test_every_result_passes_the_parser_and_the_amount_rules(
    start_node: NodeFactory, customer: Customer, payment: str, mode: str, bid: int | None
) -> None:
    ledger = Ledger(":memory:")
    node_wallet = LedgerWallet(ledger, ledger.create_account("node").id)
    payer = LedgerWallet(ledger, ledger.create_account("customer", msats=10_000_000).id)
    async with start_node(
        pricing=PRICING,
        payment=payment,
        wallet=node_wallet,
        payment_poll_s=0.01,
        announce=False,
    ) as node:
        params = {"sealed": "nip44"} if mode == "sealed" else {}
        if mode == "commit":
            params = {"commit": "sha256"}
        spec = JobSpec(
            prompt="What is 2+2?",
            model="m1",
            max_tokens=200,
            bid_msats=bid,
            params=params,
            targets=(node.public_key,) if mode == "encrypted" else (),
            encryption="nip44" if mode == "encrypted" else None,
        )
        job = await customer.submit(spec)
        if payment == "before":
            asked = await customer.feedback(job, "payment-required")
            assert asked.amount is not None and asked.amount.bolt11 is not None
            await payer.pay_invoice(asked.amount.bolt11)
        if mode == "commit":
            replies = customer.replies(job)
            await customer.wait_for(lambda: any(commitment_of(f.event) for f in replies.feedback))
            value = next(c for f in replies.feedback if (c := commitment_of(f.event)))
            await customer.pool.publish(build_reveal_call(customer.keys, job, [node.public_key]))
        result = await customer.result(job)
        await customer.feedback(job, "success")
    # The strict parser once more, on the event as published.
    again = parse_result(result.event, job, customer.keys)
    assert again.content == result.content == "Echo: What is 2+2?"
    assert result.provider == node.public_key
    assert result.sealed == (mode == "sealed") and result.encrypted == (mode == "encrypted")
    if mode == "commit":
        salt = salt_of(result.event)
        assert salt is not None
        assert verify_reveal(value, job.id, node.public_key, result.content, salt)
    if payment == "after":
        assert result.amount is not None and result.amount.bolt11 is not None
    else:
        assert result.amount is None  # free, or paid before the work
    amounts_obey_the_rules(job, customer, bid)


async def test_a_refusal_may_quote_above_the_bid(
    start_node: NodeFactory, customer: Customer
) -> None:
    ledger = Ledger(":memory:")
    wallet = LedgerWallet(ledger, ledger.create_account("node").id)
    async with start_node(pricing=PRICING, payment="after", wallet=wallet, announce=False):
        job = await customer.submit(JobSpec(prompt="hi", max_tokens=200, bid_msats=10))
        refusal = await customer.error(job)
    assert refusal.amount is not None and refusal.amount.msats > 10  # the quote, as a price
    amounts_obey_the_rules(job, customer, 10)
