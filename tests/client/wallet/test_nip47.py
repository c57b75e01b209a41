"""NIP-47 without sockets: URIs, info event, requests and responses, errors, the handler."""

from __future__ import annotations

import json

import pytest

from client.nostr import nip04, nip44
from client.nostr.errors import (
    InsufficientBalance,
    InvoiceNotFound,
    PaymentFailed,
    WalletError,
    WalletUnauthorized,
)
from client.nostr.event import Event
from client.nostr.keys import Keys
from client.wallet import nip47
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import METHODS, RequestHandler, connection_uri
from tests.support.lightning import Clock

WALLET = Keys.generate()
CLIENT = Keys.generate()
NOW = 1_800_000_000


def test_uri_round_trip_with_several_relays_and_lud16() -> None:
    uri = nip47.NwcUri(
        WALLET.public_key,
        ("ws://127.0.0.1:1/", "wss://r.example/v1?x=1"),
        CLIENT.secret_hex,
        "me@x.org",
    )
    text = uri.to_string()
    assert text.startswith(f"nostr+walletconnect://{WALLET.public_key}?relay=ws%3A%2F%2F")
    assert nip47.NwcUri.parse(text) == uri
    assert uri.client_keys.public_key == CLIENT.public_key
    assert CLIENT.secret_hex not in repr(uri)


def test_uri_from_the_spec_example_parses() -> None:
    text = (
        "nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"
        "?relay=wss%3A%2F%2Frelay.damus.io&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c"
    )
    uri = nip47.NwcUri.parse(text)
    assert uri.relays == ("wss://relay.damus.io",)
    assert uri.wallet_pubkey.startswith("b889ff5b")


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "https://example.com",
        "nostr+walletconnect://abc?relay=ws%3A%2F%2Fx&secret=" + "11" * 32,
        f"nostr+walletconnect://{'ab' * 32}?secret={'11' * 32}",
        f"nostr+walletconnect://{'ab' * 32}?relay=http%3A%2F%2Fx&secret={'11' * 32}",
        f"nostr+walletconnect://{'ab' * 32}?relay=ws%3A%2F%2Fx",
        f"nostr+walletconnect://{'ab' * 32}?relay=ws%3A%2F%2Fx&secret=zz",
        f"nostr+walletconnect://{'ab' * 32}?relay=ws%3A%2F%2Fx&secret={'00' * 32}",
        f"nostr+walletconnect://{'ab' * 32}?relay=ws%3A%2F%2Fx&secret={'11' * 32}"
        f"&secret={'22' * 32}",
    ],
)
def test_bad_uris_are_refused_with_a_typed_error(text: object) -> None:
    with pytest.raises(WalletError) as err:
        nip47.NwcUri.parse(text)
    assert err.value.code == "INVALID_URI"


def test_info_event_and_encryption_choice() -> None:
    both = nip47.parse_info_event(nip47.build_info_event(WALLET, METHODS, created_at=NOW))
    assert both.methods == frozenset(METHODS)
    assert nip47.choose_encryption(both) == nip47.NIP44
    legacy = nip47.parse_info_event(
        Event.create(WALLET, nip47.INFO_KIND, "pay_invoice", [], created_at=NOW)
    )
    assert legacy.encryptions == (nip47.NIP04,)
    assert nip47.choose_encryption(legacy) == nip47.NIP04
    assert nip47.choose_encryption(None) == nip47.NIP04
    future = nip47.parse_info_event(
        Event.create(
            WALLET, nip47.INFO_KIND, "pay_invoice", [["encryption", "nip44_v3"]], created_at=NOW
        )
    )
    with pytest.raises(WalletError) as err:
        nip47.choose_encryption(future)
    assert err.value.code == "UNSUPPORTED_ENCRYPTION"


@pytest.mark.parametrize("scheme", [nip47.NIP44, nip47.NIP04])
def test_request_round_trip(scheme: str) -> None:
    event = nip47.build_request(
        CLIENT,
        WALLET.public_key,
        "pay_invoice",
        {"invoice": "lnbc1"},
        scheme=scheme,
        created_at=NOW,
        expiration=NOW + 30,
    )
    assert event.kind == nip47.REQUEST_KIND and event.verify()
    assert event.tag_value("p") == WALLET.public_key
    assert event.tag_value("encryption") == scheme
    assert event.tag_value("expiration") == str(NOW + 30)
    assert ("?iv=" in event.content) == (scheme == nip47.NIP04)
    request, got = nip47.parse_request(event, WALLET.secret_hex)
    assert (request.method, request.params, got) == ("pay_invoice", {"invoice": "lnbc1"}, scheme)


def test_legacy_request_without_encryption_tag_is_nip04() -> None:
    body = json.dumps({"method": "get_balance", "params": {}})
    content = nip04.encrypt(body, CLIENT.secret_hex, WALLET.public_key)
    event = Event.create(
        CLIENT, nip47.REQUEST_KIND, content, [["p", WALLET.public_key]], created_at=NOW
    )
    request, scheme = nip47.parse_request(event, WALLET.secret_hex)
    assert (request.method, scheme) == ("get_balance", nip47.NIP04)


@pytest.mark.parametrize(
    "plaintext",
    ["not json", "[]", '{"params": {}}', '{"method": 5}', '{"method": "x", "params": [1]}'],
)
def test_malformed_request_bodies(plaintext: str) -> None:
    content = nip44.encrypt(plaintext, nip44.conversation_key(CLIENT.secret_hex, WALLET.public_key))
    event = Event.create(
        CLIENT,
        nip47.REQUEST_KIND,
        content,
        [["p", WALLET.public_key], ["encryption", "nip44_v2"]],
        created_at=NOW,
    )
    with pytest.raises(WalletError):
        nip47.parse_request(event, WALLET.secret_hex)


def test_response_round_trip_and_error_mapping() -> None:
    req = nip47.build_request(
        CLIENT, WALLET.public_key, "get_balance", {}, scheme=nip47.NIP44, created_at=NOW
    )
    ok = nip47.build_response(
        WALLET,
        req,
        scheme=nip47.NIP44,
        result_type="get_balance",
        result={"balance": 7},
        created_at=NOW,
    )
    assert ok.tag_value("e") == req.id and ok.tag_value("p") == CLIENT.public_key
    parsed = nip47.parse_response(ok, CLIENT.secret_hex, WALLET.public_key, nip47.NIP44)
    assert parsed.raise_for_error() == {"balance": 7}
    # A wallet that answers in NIP-04 although we asked in NIP-44 is still understood.
    legacy = nip47.build_response(
        WALLET,
        req,
        scheme=nip47.NIP04,
        result_type="get_balance",
        result={"balance": 8},
        created_at=NOW,
    )
    assert nip47.parse_response(
        legacy, CLIENT.secret_hex, WALLET.public_key, nip47.NIP44
    ).result == {"balance": 8}
    with pytest.raises(WalletError):
        nip47.parse_response(ok, CLIENT.secret_hex, Keys.generate().public_key, nip47.NIP44)


@pytest.mark.parametrize(
    "code,error_type",
    [
        ("INSUFFICIENT_BALANCE", InsufficientBalance),
        ("PAYMENT_FAILED", PaymentFailed),
        ("NOT_FOUND", InvoiceNotFound),
        ("UNAUTHORIZED", WalletUnauthorized),
        ("RESTRICTED", WalletUnauthorized),
        ("RATE_LIMITED", WalletError),
        ("SOMETHING_NEW", WalletError),
    ],
)
def test_error_codes_map_to_typed_errors(code: str, error_type: type) -> None:
    err = nip47.error_from_code(code, "because")
    assert type(err) is error_type
    assert err.code == code and "because" in str(err)


def test_response_without_result_or_error_is_an_error() -> None:
    with pytest.raises(WalletError, match="neither"):
        nip47.Response("pay_invoice", None).raise_for_error()


# --- the service's request handler, on a real ledger ---------------------------------------


@pytest.fixture
def handler(ledger: Ledger, clock: Clock) -> RequestHandler:
    return RequestHandler(ledger, clock=clock)


def ask(
    handler: RequestHandler,
    keys: Keys,
    method: str,
    params: dict,
    *,
    scheme: str = nip47.NIP44,
    **kw: object,
) -> nip47.Response:
    req = nip47.build_request(
        keys, handler.pubkey, method, params, scheme=scheme, created_at=NOW, **kw
    )  # type: ignore[arg-type]
    resp = handler.handle(req)
    assert resp is not None
    return nip47.parse_response(resp, keys.secret_hex, handler.pubkey, scheme)


def connected(ledger: Ledger, msats: int = 0) -> tuple[int, Keys]:
    account = ledger.create_account(msats=msats)
    uri = nip47.NwcUri.parse(connection_uri(ledger, account.id, ["ws://127.0.0.1:9"]))
    return account.id, uri.client_keys


def test_handler_serves_each_method(handler: RequestHandler, ledger: Ledger) -> None:
    payer_id, payer = connected(ledger, 50_000)
    payee_id, payee = connected(ledger)
    made = ask(
        handler, payee, "make_invoice", {"amount": 12_000, "description": "d", "expiry": 60}
    ).raise_for_error()
    assert made["type"] == "incoming" and made["amount"] == 12_000
    paid = ask(
        handler, payer, "pay_invoice", {"invoice": made["invoice"]}, scheme=nip47.NIP04
    ).raise_for_error()
    assert paid["fees_paid"] == 0 and len(paid["preimage"]) == 64
    looked = ask(handler, payee, "lookup_invoice", {"invoice": made["invoice"]}).raise_for_error()
    assert looked["state"] == "settled" and looked["preimage"] == paid["preimage"]
    assert ask(handler, payer, "get_balance", {}).raise_for_error() == {"balance": 38_000}
    info = ask(handler, payer, "get_info", {}).raise_for_error()
    assert info["network"] == "regtest" and set(info["methods"]) == set(METHODS)
    txs = ask(handler, payer, "list_transactions", {}).raise_for_error()["transactions"]
    assert [t["type"] for t in txs] == ["outgoing"]
    assert ledger.balance(payee_id) == 12_000 and ledger.balance(payer_id) == 38_000


def test_unknown_client_key_is_unauthorized(handler: RequestHandler) -> None:
    resp = ask(handler, Keys.generate(), "get_balance", {})
    with pytest.raises(WalletUnauthorized):
        resp.raise_for_error()


def test_same_request_twice_runs_once(handler: RequestHandler, ledger: Ledger) -> None:
    payer_id, payer = connected(ledger, 50_000)
    payee_id, _ = connected(ledger)
    invoice = ledger.make_invoice(payee_id, 10_000).invoice
    req = nip47.build_request(
        payer,
        handler.pubkey,
        "pay_invoice",
        {"invoice": invoice},
        scheme=nip47.NIP44,
        created_at=NOW,
    )
    first, second = handler.handle(req), handler.handle(req)
    assert first is second
    assert ledger.balance(payer_id) == 40_000


def test_expired_and_misaddressed_requests_are_ignored(
    handler: RequestHandler, ledger: Ledger, clock: Clock
) -> None:
    _, keys = connected(ledger)
    old = nip47.build_request(
        keys,
        handler.pubkey,
        "get_balance",
        {},
        scheme=nip47.NIP44,
        created_at=NOW,
        expiration=int(clock.now) - 1,
    )
    assert handler.handle(old) is None
    other = nip47.build_request(
        keys, Keys.generate().public_key, "get_balance", {}, scheme=nip47.NIP44, created_at=NOW
    )
    assert handler.handle(other) is None


@pytest.mark.parametrize(
    "method,params,code",
    [
        ("pay_keysend", {"amount": 1, "pubkey": "02" * 33}, "NOT_IMPLEMENTED"),
        ("pay_invoice", {}, "OTHER"),
        ("pay_invoice", {"invoice": "lnbcrt1garbage"}, "PAYMENT_FAILED"),
        ("pay_invoice", {"invoice": 42}, "OTHER"),
        ("make_invoice", {}, "OTHER"),
        ("make_invoice", {"amount": -1}, "OTHER"),
        ("make_invoice", {"amount": "100"}, "OTHER"),
        ("make_invoice", {"amount": 0}, "OTHER"),
        ("lookup_invoice", {}, "OTHER"),
        ("lookup_invoice", {"payment_hash": "00" * 32}, "NOT_FOUND"),
    ],
)
def test_bad_requests_get_clear_errors(
    handler: RequestHandler, ledger: Ledger, method: str, params: dict, code: str
) -> None:
    _, keys = connected(ledger, 1_000)
    with pytest.raises(WalletError) as err:
        ask(handler, keys, method, params).raise_for_error()
    assert err.value.code == code


def test_nip04_only_service_refuses_nip44_requests(ledger: Ledger, clock: Clock) -> None:
    legacy = RequestHandler(ledger, encryptions=(nip47.NIP04,), clock=clock)
    assert nip47.parse_info_event(legacy.info_event()).encryptions == (nip47.NIP04,)
    _, keys = connected(ledger)
    req = nip47.build_request(
        keys, legacy.pubkey, "get_balance", {}, scheme=nip47.NIP44, created_at=NOW
    )
    resp = legacy.handle(req)
    assert resp is not None
    with pytest.raises(WalletError) as err:
        nip47.parse_response(resp, keys.secret_hex, legacy.pubkey, None).raise_for_error()
    assert err.value.code == "UNSUPPORTED_ENCRYPTION"


def test_garbage_content_gets_an_error_not_a_crash(handler: RequestHandler, ledger: Ledger) -> None:
    _, keys = connected(ledger)
    event = Event.create(
        keys,
        nip47.REQUEST_KIND,
        "bm90IGVuY3J5cHRlZA==" * 8,
        [["p", handler.pubkey], ["encryption", "nip44_v2"]],
        created_at=NOW,
    )
    resp = handler.handle(event)
    assert resp is not None
    with pytest.raises(WalletError):
        nip47.parse_response(resp, keys.secret_hex, handler.pubkey, nip47.NIP44).raise_for_error()
