"""The conventions of deployed DVM software that our parsers follow (wire profile §9), checked
without a peer: events built here the way nostrdvm, NDK and ezdvm build them."""

from __future__ import annotations

import json
import time

import pytest

from client.dvm.nip90 import (
    Job,
    JobSpec,
    build_feedback,
    build_job,
    build_result,
    parse_feedback,
    parse_request,
    parse_result,
)
from client.nostr import nip44
from client.nostr.errors import JobRejected
from client.nostr.event import Event, Tags
from client.nostr.keys import Keys

NOW = int(time.time())


def _sealed_request(customer: Keys, provider: Keys, hidden: Tags, visible: Tags) -> Event:
    content = nip44.encrypt(
        json.dumps(hidden), nip44.conversation_key(customer.secret_hex, provider.public_key)
    )
    tags = [["p", provider.public_key], ["encrypted"], *visible]
    return Event.create(customer, 5050, content, tags, created_at=NOW)


@pytest.mark.parametrize(
    ("visible", "sealed", "bid"),
    [(None, "1", 1), ("5000", "10", 10), ("10", "5000", 10), ("7", None, 7)],
)
def test_the_lower_of_a_visible_and_a_sealed_bid_wins(
    visible: str | None, sealed: str | None, bid: int
) -> None:
    customer, provider = Keys.generate(), Keys.generate()
    hidden = [["i", "hi", "text"], *([["bid", sealed]] if sealed else [])]
    shown = [["bid", visible]] if visible else []
    req = parse_request(_sealed_request(customer, provider, hidden, shown), keys=provider, now=NOW)
    assert req.bid_msats == bid


def test_the_earlier_expiration_wins_and_a_sealed_one_can_expire_the_job() -> None:
    customer, provider = Keys.generate(), Keys.generate()
    hidden = [["i", "hi", "text"], ["expiration", str(NOW + 30)]]
    event = _sealed_request(customer, provider, hidden, [["expiration", str(NOW + 600)]])
    assert parse_request(event, keys=provider, now=NOW).expiration == NOW + 30
    with pytest.raises(JobRejected) as err:
        parse_request(event, keys=provider, now=NOW + 31)
    assert err.value.reason == "expired"


def test_sealed_relays_and_output_are_read_and_two_sealed_bids_are_refused() -> None:
    customer, provider = Keys.generate(), Keys.generate()
    hidden = [["i", "hi", "text"], ["relays", "ws://r1"], ["output", "text/markdown"]]
    req = parse_request(_sealed_request(customer, provider, hidden, []), keys=provider, now=NOW)
    assert (req.relays, req.output) == (("ws://r1",), "text/markdown")
    twice = [["i", "hi", "text"], ["bid", "1"], ["bid", "2"]]
    with pytest.raises(JobRejected) as err:
        parse_request(_sealed_request(customer, provider, twice, []), keys=provider, now=NOW)
    assert err.value.reason == "malformed"


def _encrypted_job() -> tuple[Keys, Keys, Job]:
    customer, provider = Keys.generate(), Keys.generate()
    job = build_job(
        customer,
        JobSpec(prompt="hi", targets=(provider.public_key,), encryption="nip44"),
        created_at=NOW,
    )
    return customer, provider, job


def _nostrdvm_feedback(provider: Keys, customer: Keys, request_id: str, hidden: Tags) -> Event:
    """nostrdvm's shape: visible encrypted/p/e/expiration only, every other tag sealed."""
    content = nip44.encrypt(
        json.dumps(hidden), nip44.conversation_key(provider.secret_hex, customer.public_key)
    )
    tags = [
        ["encrypted"],
        ["p", customer.public_key],
        ["e", request_id],
        ["expiration", str(NOW + 60)],
    ]
    return Event.create(provider, 7000, content, tags, created_at=NOW)


def test_feedback_whose_tags_are_all_sealed_is_read() -> None:
    customer, provider, job = _encrypted_job()
    hidden = [
        ["e", job.id],
        ["alt", "status"],
        ["status", "payment-required"],
        ["amount", "21000"],
        ["content", "pay first"],
    ]
    fb = parse_feedback(_nostrdvm_feedback(provider, customer, job.id, hidden), job, customer)
    assert (fb.status, fb.amount and fb.amount.msats, fb.content, fb.encrypted) == (
        "payment-required",
        21000,
        "pay first",
        True,
    )


def test_a_sealed_amount_that_differs_from_the_visible_one_is_refused() -> None:
    customer, provider, job = _encrypted_job()
    event = _nostrdvm_feedback(
        provider, customer, job.id, [["status", "processing"], ["amount", "5000"]]
    )
    tampered = Event.create(
        provider, 7000, event.content, [*event.tags, ["amount", "1"]], created_at=NOW
    )
    with pytest.raises(JobRejected) as err:
        parse_feedback(tampered, job, customer)
    assert err.value.reason == "malformed"


def test_our_feedback_to_an_encrypted_job_seals_its_tags_and_keeps_them_visible() -> None:
    customer, provider, job = _encrypted_job()
    req = parse_request(job.requests[0], keys=provider, now=NOW)
    event = build_feedback(
        provider, req, "partial", extra="half way", amount_msats=3000, content="Par"
    )
    sealed = json.loads(
        nip44.decrypt(
            event.content, nip44.conversation_key(customer.secret_hex, provider.public_key)
        )
    )
    assert sealed == [["content", "Par"], ["status", "partial", "half way"], ["amount", "3000"]]
    assert event.tag_value("status") == "partial" and event.tag_value("amount") == "3000"
    fb = parse_feedback(event, job, customer)
    assert (fb.status, fb.extra, fb.content, fb.amount and fb.amount.msats) == (
        "partial",
        "half way",
        "Par",
        3000,
    )


def test_feedback_without_p_is_read_but_a_foreign_p_and_a_result_without_p_are_not() -> None:
    customer = Keys.generate()
    provider = Keys.generate()
    job = build_job(customer, JobSpec(prompt="hi"), created_at=NOW)
    ezdvm = Event.create(
        provider, 7000, "", [["status", "processing"], ["e", job.id]], created_at=NOW
    )
    assert parse_feedback(ezdvm, job, customer).status == "processing"
    other = Event.create(
        provider,
        7000,
        "",
        [["status", "processing"], ["e", job.id], ["p", Keys.generate().public_key]],
        created_at=NOW,
    )
    with pytest.raises(JobRejected) as err:
        parse_feedback(other, job, customer)
    assert err.value.reason == "other_customer"
    req = parse_request(job.requests[0], keys=provider, now=NOW)
    result = build_result(provider, req, "4", created_at=NOW)
    no_p = Event.create(
        provider, 6050, "4", [t for t in result.tags if t[0] != "p"], created_at=NOW
    )
    with pytest.raises(JobRejected) as err:
        parse_result(no_p, job, customer)
    assert err.value.reason == "other_customer"
