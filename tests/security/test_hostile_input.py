"""Hostile input at each parser that takes it from the network, found by the fuzzers
(tests/fuzz) and fixed: absurdly nested JSON raised RecursionError (past every handler that
expects the module's typed error), and a Unicode digit passed the guard's digit check and then
broke ``int()``. Each now gets the module's typed error."""

from __future__ import annotations

import json

import pytest

from client.dvm.nip90 import JobSpec, build_job, parse_request, parse_result
from client.nostr import nip44
from client.nostr.errors import InvalidEvent, InvalidMessage, JobRejected, PaymentError, WalletError
from client.nostr.event import Event
from client.nostr.keys import Keys
from client.nostr.messages import parse_client_message, parse_relay_message
from client.wallet import nip47
from client.wallet.guard import PaymentGuard
from client.wallet.invoices import make_invoice

DEEP = "[" * 100_000 + "]" * 100_000
NESTED = "[" * 5_000 + "]" * 5_000  # small enough to encrypt (NIP-44 takes 64 KB at most)
CUSTOMER, PROVIDER = Keys.generate(), Keys.generate()


def test_nested_wire_messages_and_events_are_typed_errors() -> None:
    with pytest.raises(InvalidMessage):
        parse_relay_message(DEEP)
    with pytest.raises(InvalidMessage):
        parse_client_message(DEEP)
    with pytest.raises(InvalidEvent):
        Event.from_json(DEEP)


def test_result_with_a_nested_request_tag_is_rejected() -> None:
    job = build_job(CUSTOMER, JobSpec(prompt="2+2?"))
    tags = [["request", DEEP], ["e", job.id], ["p", CUSTOMER.public_key]]
    with pytest.raises(JobRejected) as err:
        parse_result(Event.create(PROVIDER, 6050, "4", tags), job, CUSTOMER)
    assert err.value.reason == "bad_request_tag"


def test_sealed_request_hiding_nested_json_is_malformed() -> None:
    ck = nip44.conversation_key(CUSTOMER.secret_hex, PROVIDER.public_key)
    tags = [["p", PROVIDER.public_key], ["encrypted"]]
    event = Event.create(CUSTOMER, 5050, nip44.encrypt(NESTED, ck), tags)
    with pytest.raises(JobRejected) as err:
        parse_request(event, keys=PROVIDER)
    assert err.value.reason == "malformed"


def test_wallet_request_and_response_hiding_nested_json() -> None:
    wallet, client = Keys.generate(), Keys.generate()
    ck = nip44.conversation_key(client.secret_hex, wallet.public_key)
    tags = [["p", wallet.public_key], ["encryption", "nip44_v2"]]
    request = Event.create(client, nip47.REQUEST_KIND, nip44.encrypt(NESTED, ck), tags)
    with pytest.raises(WalletError):
        nip47.parse_request(request, wallet.secret_hex)
    response = Event.create(wallet, nip47.RESPONSE_KIND, nip44.encrypt(NESTED, ck), [])
    with pytest.raises(WalletError):
        nip47.parse_response(response, client.secret_hex, wallet.public_key, scheme="nip44_v2")


@pytest.mark.parametrize("odd", ["²", "٢١٠٠٠", "２１０００"])
def test_guard_refuses_non_ascii_digits(odd: str) -> None:
    inv = make_invoice(
        PROVIDER.secret_hex, amount_msats=21_000, created_at=1_800_000_000, network="regtest"
    ).bolt11
    guard = PaymentGuard(network="regtest")
    with pytest.raises(PaymentError, match="positive whole number"):
        guard.check(inv, quote_msats=odd, bid_msats=None, now=1_800_000_000)
    with pytest.raises(PaymentError, match="positive whole number"):
        guard.check(inv, quote_msats=21_000, bid_msats=odd, now=1_800_000_000)
    assert json.dumps(odd)  # the tags that carry these are ordinary JSON strings
