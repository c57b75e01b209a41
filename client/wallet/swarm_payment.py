"""Glue between :class:`~client.customer.swarm.SwarmClient`'s payment seam and :class:`Payer`.

``SwarmClient(keys, relays, pay=SwarmPayHook(payer))`` pays the agreeing providers of every
reached quorum and nobody else. The hook reads what the result carries (duck-typed, so this module
does not import ``client.customer.swarm``): ``job_id``, ``agreeing``, ``invoices`` (provider ->
``amount`` tag with msats and BOLT11), ``quotes`` (provider -> msats quoted in feedback) and the
job's ``bid`` tag. A provider's quote is the lowest amount it named (feedback quote, result
``amount`` tag): the invoice may ask for no more than that.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .guard import Bill
from .payments import Payer, PaymentGate, QuorumPayment

KEEP = 1_000  # recent jobs' per-provider outcomes kept for reporting


class _AmountTag(Protocol):
    @property
    def msats(self) -> int: ...
    @property
    def bolt11(self) -> str | None: ...


class _SwarmResult(Protocol):
    @property
    def job_id(self) -> str: ...
    @property
    def agreeing(self) -> Sequence[str]: ...
    @property
    def invoices(self) -> Mapping[str, _AmountTag]: ...
    @property
    def quotes(self) -> Mapping[str, int]: ...


def bills_from(invoices: Mapping[str, _AmountTag], quotes: Mapping[str, int]) -> dict[str, Bill]:
    """One :class:`Bill` per provider that sent a BOLT11; its quote is the lowest amount named."""
    bills: dict[str, Bill] = {}
    for provider, tag in invoices.items():
        if not tag.bolt11:
            continue
        named = [q for q in (quotes.get(provider), tag.msats) if isinstance(q, int) and q > 0]
        bills[provider] = Bill(tag.bolt11, min(named) if named else None)
    return bills


def job_bid(result: Any) -> str | None:
    """The ``bid`` tag of the job's (first) request, if any."""
    try:
        return result.job.requests[0].tag_value("bid")
    except (AttributeError, IndexError):
        return None


class SwarmPayHook:
    """A ``pay`` hook for SwarmClient: ``await hook(result, max_sats, gate) -> QuorumPayment``.

    ``outcomes[job_id]`` keeps the per-provider :class:`QuorumPayment` of recent jobs.
    """

    def __init__(self, payer: Payer) -> None:
        self.payer = payer
        self.outcomes: OrderedDict[str, QuorumPayment] = OrderedDict()

    async def __call__(
        self, result: _SwarmResult, max_sats: int | None, gate: PaymentGate | None = None
    ) -> QuorumPayment:
        paid = await self.payer.pay_quorum(
            result.job_id,
            result.agreeing,
            bills_from(result.invoices, result.quotes),
            bid_msats=job_bid(result),
            job_budget_msats=None if max_sats is None else max_sats * 1000,
            gate=gate,
        )
        self.outcomes[result.job_id] = paid
        while len(self.outcomes) > KEEP:
            self.outcomes.popitem(last=False)
        return paid
