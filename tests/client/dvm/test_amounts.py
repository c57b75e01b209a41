"""The amount rules of every DVM builder (client/dvm/amounts.py): integer msats >= 0, at most the
bid, an invoice whose amount is the amount tag's; and the result's full tag layout (usage,
model, sealed, salt) as the customer's strict parser reads it. No I/O."""

from __future__ import annotations

import functools
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.dvm.amounts import (
    AMOUNT_REASON,
    Amount,
    check_amount,
    hrp_amount,
    invoice_amount,
)
from client.dvm.nip90 import (
    JobSpec,
    build_feedback,
    build_job,
    build_result,
    parse_feedback,
    parse_request,
    parse_result,
)
from client.dvm.sealing import commit, new_salt, salt_of, verify_reveal
from client.nostr.errors import InvoiceError, JobRejected
from client.nostr.keys import Keys
from client.wallet.invoices import decode_invoice, make_invoice
from router.types import LmUsage

CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()
NODE_SECRET = hashlib.sha256(b"a lightning node").hexdigest()
USAGE = LmUsage(7, 3, 10)


@functools.cache
def invoice(msats: int) -> str:
    preimage = hashlib.sha256(str(msats).encode()).hexdigest()
    return make_invoice(
        NODE_SECRET, amount_msats=msats, created_at=1_700_000_000, preimage=preimage
    ).bolt11


def request(bid: int | None = 10_000, **kw: object):  # type: ignore[no-untyped-def]
    job = build_job(CUSTOMER, JobSpec(prompt="2+2?", bid_msats=bid, **kw))  # type: ignore[arg-type]
    return job, parse_request(job.requests[0], keys=PROVIDER)


def rejected(exc: pytest.ExceptionInfo[JobRejected]) -> str:
    return exc.value.reason


# --- what the builders refuse ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, 2000.0, True, "2000", 10**18])
def test_amount_must_be_a_non_negative_integer(bad: object) -> None:
    _, req = request(bid=None)
    with pytest.raises(JobRejected) as exc:
        build_result(PROVIDER, req, "4", amount_msats=bad)  # type: ignore[arg-type]
    assert rejected(exc) == AMOUNT_REASON
    with pytest.raises(JobRejected):
        build_feedback(PROVIDER, req, "payment-required", amount_msats=bad)  # type: ignore[arg-type]


def test_amount_above_the_bid_is_refused_except_as_a_quote_in_an_error() -> None:
    _, req = request(bid=2_000)
    with pytest.raises(JobRejected, match="above the customer's bid") as exc:
        build_result(PROVIDER, req, "4", amount_msats=2_001)
    assert rejected(exc) == AMOUNT_REASON
    for status in ("payment-required", "success", "processing"):
        with pytest.raises(JobRejected, match="bid"):
            build_feedback(PROVIDER, req, status, amount_msats=2_001)
    # A refusal names the price the bid did not reach: that is not asking for payment.
    quote = build_feedback(PROVIDER, req, "error", extra="bid too low", amount_msats=5_000)
    assert quote.tags_named("amount") == [["amount", "5000"]]
    assert build_result(PROVIDER, req, "4", amount_msats=2_000).tags_named("amount")


def test_invoice_must_name_the_amount_of_the_tag() -> None:
    _, req = request()
    with pytest.raises(JobRejected, match="asks for 3000 msats, the amount tag says 2000"):
        build_result(PROVIDER, req, "4", amount_msats=2_000, bolt11=invoice(3_000))
    with pytest.raises(JobRejected, match="needs an amount"):
        build_result(PROVIDER, req, "4", bolt11=invoice(2_000))
    with pytest.raises(JobRejected, match="any amount"):
        build_result(PROVIDER, req, "4", amount_msats=2_000, bolt11="lnbcrt1pjq8z5m")
    with pytest.raises(JobRejected, match="not BOLT11"):
        build_result(PROVIDER, req, "4", amount_msats=2_000, bolt11="not an invoice")
    with pytest.raises(JobRejected, match="not BOLT11"):
        build_feedback(PROVIDER, req, "payment-required", amount_msats=10, bolt11="lnxx1")
    ok = build_result(PROVIDER, req, "4", amount_msats=2_000, bolt11=invoice(2_000))
    assert ok.tags_named("amount") == [["amount", "2000", invoice(2_000)]]


def test_check_amount_values() -> None:
    assert check_amount(None) is None
    assert check_amount(0) == Amount(0)
    assert check_amount(5_000, bid_msats=5_000) == Amount(5_000)
    bolt11 = invoice(5_000).upper()  # BOLT11 may be all upper case
    assert check_amount(5_000, bolt11) == Amount(5_000, bolt11)
    assert check_amount(5_000, "lightning:" + invoice(5_000)) is not None
    with pytest.raises(JobRejected, match="mixes upper and lower"):
        check_amount(5_000, "lnBCrt50n1xyz")


@settings(max_examples=200, deadline=None)
@given(msats=st.integers(min_value=1, max_value=10**12))
def test_the_invoice_amount_is_read_as_the_wallet_reads_it(msats: int) -> None:
    bolt11 = invoice(msats)
    assert invoice_amount(bolt11) == decode_invoice(bolt11).amount_msats == msats
    assert check_amount(msats, bolt11) == Amount(msats, bolt11)
    with pytest.raises(JobRejected):
        check_amount(msats + 1, bolt11)


@pytest.mark.parametrize(
    ("hrp", "want"),
    [("lnbc", ("bc", None)), ("lnbcrt25u", ("bcrt", 2_500_000)), ("lntb10p", ("tb", 1))],
)
def test_hrp_amounts(hrp: str, want: tuple[str, int | None]) -> None:
    assert hrp_amount(hrp) == want


@pytest.mark.parametrize("hrp", ["lnbc0u", "lnbc15p", "lnxx10u", "bc10u"])
def test_bad_hrp_amounts(hrp: str) -> None:
    with pytest.raises(InvoiceError):
        hrp_amount(hrp)


# --- the result's tags, as the customer reads them ---------------------------------------------


def test_result_tag_order_and_round_trip() -> None:
    job, req = request(bid=None)
    salt = new_salt()
    ev = build_result(
        PROVIDER,
        req,
        "4",
        amount_msats=2_000,
        bolt11=invoice(2_000),
        usage=USAGE,
        model="m1",
        seal="nip44",
        salt=salt,
    )
    assert [t[0] for t in ev.tags] == [
        "request",
        "e",
        "p",
        "i",
        "sealed",
        "amount",
        "usage",
        "model",
        "salt",
    ]
    assert ev.tags_named("usage") == [["usage", "7", "3", "10"]]
    assert ev.tag_value("model") == "m1" and ev.content != "4"
    result = parse_result(ev, job, CUSTOMER)
    assert (
        result.content == "4" and result.sealed and result.amount == Amount(2_000, invoice(2_000))
    )
    found = salt_of(ev)
    assert found == salt
    assert verify_reveal(
        commit(job.id, PROVIDER.public_key, "4", salt), job.id, PROVIDER.public_key, "4", found
    )


def test_usage_without_a_total_is_summed_and_bad_options_are_refused() -> None:
    _, req = request()
    ev = build_result(PROVIDER, req, "4", usage=LmUsage(5, 2, 0))
    assert ev.tags_named("usage") == [["usage", "5", "2", "7"]]
    with pytest.raises(JobRejected, match="seal scheme"):
        build_result(PROVIDER, req, "4", seal="rot13")
    with pytest.raises(JobRejected, match="salt"):
        build_result(PROVIDER, req, "4", salt="xyz")
    with pytest.raises(JobRejected, match="usage"):
        build_result(PROVIDER, req, "4", usage=LmUsage(-1, 2, 1))


def test_an_encrypted_job_ignores_seal_and_keeps_its_amount_sealed_in_feedback() -> None:
    job, req = request(targets=(PROVIDER.public_key,), encryption="nip44")
    ev = build_result(PROVIDER, req, "4", seal="nip44", usage=USAGE, model="m1")
    assert ["encrypted"] in ev.tags and not ev.tags_named("sealed") and not ev.tags_named("i")
    assert parse_result(ev, job, CUSTOMER).content == "4"
    fb = build_feedback(
        PROVIDER, req, "payment-required", amount_msats=2_000, bolt11=invoice(2_000)
    )
    parsed = parse_feedback(fb, job, CUSTOMER)
    assert parsed.amount == Amount(2_000, invoice(2_000)) and parsed.encrypted
