"""Pay-before-work decisions (client/customer/prepay.py), pure: which payment-required feedback a
customer pays in advance, within which limits, and that a prepaid provider is not paid again."""

from __future__ import annotations

import time

import pytest

from client.customer.prepay import Decline, Prepay, PrepayBook, PrepayPolicy
from client.dvm.nip90 import Job, JobFeedback, JobSpec, build_job, parse_feedback
from client.nostr.event import Event
from client.nostr.keys import Keys

NOW = int(time.time())
CUSTOMER = Keys.generate()
INVOICE = "lnbc210n1fake"


def _job(*targets: str) -> Job:
    return build_job(CUSTOMER, JobSpec(prompt="hi", targets=targets), created_at=NOW)


def _asks(
    job: Job,
    provider: Keys,
    msats: int | None,
    *,
    status: str = "payment-required",
    invoice: str | None = INVOICE,
) -> JobFeedback:
    tags = [["status", status], ["e", job.id], ["p", CUSTOMER.public_key]]
    if msats is not None:
        tags.append(["amount", str(msats), invoice] if invoice else ["amount", str(msats)])
    return parse_feedback(Event.create(provider, 7000, "", tags, created_at=NOW), job, CUSTOMER)


def test_a_priced_dvms_invoice_within_the_bid_is_paid_once() -> None:
    dvm = Keys.generate()
    job = _job()
    book = PrepayBook(PrepayPolicy(), quorum=1, bid_msats=21_000)
    decision = book.consider(_asks(job, dvm, 21_000))
    assert decision == Prepay(dvm.public_key, INVOICE, 21_000)
    assert book.consider(_asks(job, dvm, 21_000)) == Decline(dvm.public_key, "already")
    book.settle(dvm.public_key, paid=True)
    assert book.paid == {dvm.public_key: 21_000} and book.paid_msats == 21_000
    bills = {dvm.public_key: "its result's invoice", "other": "bill"}
    assert book.unpaid_bills(bills) == {"other": "bill"}


@pytest.mark.parametrize(
    ("msats", "bid", "policy", "kw", "reason"),
    [
        (21_000, 21_000, PrepayPolicy(), {"status": "processing"}, "not_asked"),
        (21_000, 21_000, PrepayPolicy(), {"invoice": None}, "no_invoice"),
        (None, 21_000, PrepayPolicy(), {}, "no_invoice"),
        (21_000, None, PrepayPolicy(), {}, "no_limit"),
        (21_001, 21_000, PrepayPolicy(), {}, "over_bid"),
        (21_000, 50_000, PrepayPolicy(max_msats=20_000), {}, "over_cap"),
    ],
)
def test_what_is_never_paid_in_advance(
    msats: int | None, bid: int | None, policy: PrepayPolicy, kw: dict[str, object], reason: str
) -> None:
    dvm = Keys.generate()
    book = PrepayBook(policy, quorum=1, bid_msats=bid)
    fb = _asks(_job(), dvm, msats, **kw)  # type: ignore[arg-type]
    assert book.consider(fb) == Decline(dvm.public_key, reason)
    assert not book.pending and not book.paid


def test_a_cap_alone_is_a_ceiling_and_strangers_to_a_targeted_job_are_not_paid() -> None:
    dvm, stranger = Keys.generate(), Keys.generate()
    job = _job(dvm.public_key)
    book = PrepayBook(
        PrepayPolicy(max_msats=5_000), quorum=1, bid_msats=None, targets=[dvm.public_key]
    )
    assert book.consider(_asks(job, stranger, 1_000)) == Decline(stranger.public_key, "not_target")
    assert isinstance(book.consider(_asks(job, dvm, 5_000)), Prepay)


def test_at_most_the_quorum_is_paid_in_advance_and_a_failed_payment_frees_its_place() -> None:
    a, b, c = Keys.generate(), Keys.generate(), Keys.generate()
    job = _job()
    book = PrepayBook(PrepayPolicy(), quorum=2, bid_msats=10_000)
    assert isinstance(book.consider(_asks(job, a, 10_000)), Prepay)
    assert isinstance(book.consider(_asks(job, b, 10_000)), Prepay)
    assert book.consider(_asks(job, c, 10_000)) == Decline(c.public_key, "full")
    book.settle(b.public_key, paid=False)  # refused or failed: its place is free
    assert isinstance(book.consider(_asks(job, c, 10_000)), Prepay)
    book.settle(c.public_key, paid=False, unknown=True)  # may have left: never billed again
    assert book.unknown == {c.public_key: 10_000}
    assert book.unpaid_bills({c.public_key: 1, a.public_key: 2}) == {}
    assert book.consider(_asks(job, b, 10_000)) == Decline(b.public_key, "full")
    assert book.consider(_asks(job, b, 10_000), decided=True) == Decline(b.public_key, "decided")


def test_policy_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        PrepayPolicy(max_providers=0)
    with pytest.raises(ValueError):
        PrepayPolicy(max_msats=-1)
