"""Pricing: quotes from max_tokens, charges from usage capped at the quote, bid comparison; the
quote and a charge without reported usage count tokens with the same estimate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from client.dvm.nip90 import JobSpec
from client.dvm.tokens import estimate_tokens
from provider.pricing import Price, Pricing, bid_refusal, sats
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory


def test_cost_rounds_up_and_respects_minimum() -> None:
    p = Price(msats_per_1k_prompt=1000, msats_per_1k_completion=3000, min_msats=500)
    assert p.cost(0, 0) == 500
    assert p.cost(1000, 1000) == 4000
    assert p.cost(1, 0) == 500  # 1 msat < minimum
    assert Price(msats_per_1k_prompt=1).cost(1, 0) == 1  # 0.001 msat rounds up to 1
    assert Price(msats_per_1k_completion=1500).cost(0, 3) == 5  # 4.5 -> 5


def test_quote_uses_model_override_and_max_tokens() -> None:
    pricing = Pricing(
        msats_per_1k_prompt=1000,
        msats_per_1k_completion=2000,
        min_msats=0,
        models={"big": Price(msats_per_1k_prompt=10_000, msats_per_1k_completion=20_000)},
    )
    assert pricing.quote("small", 500, 1000) == 500 + 2000
    assert pricing.quote("big", 500, 1000) == 5000 + 20_000
    assert not pricing.is_free
    assert Pricing().is_free
    assert not Pricing(models={"x": Price(min_msats=1)}).is_free


def test_charge_never_exceeds_quote() -> None:
    pricing = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=1000)
    quote = pricing.quote("m", 100, 100)
    assert pricing.charge("m", 100, 20, quote) == 120
    # The backend counted more prompt tokens than our estimate: still capped.
    assert pricing.charge("m", 5000, 100, quote) == quote


def test_bid_refusal_is_polite_and_actionable() -> None:
    assert bid_refusal(None, 5000, "m", 256) is None
    assert bid_refusal(5000, 5000, "m", 256) is None
    text = bid_refusal(4999, 5000, "m", 256)
    assert text is not None
    assert "4999" in text and "at least 5000 msats" in text and "max_tokens 256" in text


def test_negative_prices_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Price(min_msats=-1)
    with pytest.raises(ValidationError):
        Pricing(bogus=1)  # type: ignore[call-arg]


def test_helpers() -> None:
    assert sats(1999) == 1


async def test_quote_and_charge_count_the_prompt_with_the_same_estimate(
    start_node: NodeFactory, customer: Customer
) -> None:
    """The backend reports no usage, so the node estimates it. A prompt token costs 1,000 msats
    and a completion token 1 msat: had the charge counted the prompt even one token differently
    from the quote, the two would differ by at least 1,000 msats more than the completion does."""
    pricing = Pricing(msats_per_1k_prompt=1_000_000, msats_per_1k_completion=1_000)
    answer = "Paris."  # 2 tokens, fewer than max_tokens: the charge stays below the quote
    backend = MockBackend("silent").with_model("m1").with_response(answer).with_usage(0, 0)
    prompt = "Which city is the capital of France? " * 100 + "x"  # 3701 characters
    max_tokens = 40
    quote = pricing.quote("m1", estimate_tokens(prompt), max_tokens)
    ledger = Ledger(":memory:")
    wallet = LedgerWallet(ledger, ledger.create_account("node").id)
    async with start_node(backend, pricing=pricing, payment="after", wallet=wallet):
        low = await customer.submit(JobSpec(prompt=prompt, max_tokens=max_tokens, bid_msats=1))
        refused = await customer.error(low)
        job = await customer.submit(JobSpec(prompt=prompt, max_tokens=max_tokens, bid_msats=quote))
        result = await customer.result(job)
    assert refused.amount is not None and refused.amount.msats == quote  # the node's quote
    assert result.amount is not None
    charge = result.amount.msats
    assert charge == pricing.charge("m1", estimate_tokens(prompt), estimate_tokens(answer), quote)
    # Same prompt count on both sides: what is left is the completion tokens not used.
    assert quote - charge == (max_tokens - estimate_tokens(answer)) * 1
