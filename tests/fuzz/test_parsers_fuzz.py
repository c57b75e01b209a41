"""Parsers of what arrives from the network, under near-miss inputs. Each either returns a value
that holds up (verifies, round-trips, decrypts to the original) or raises the module's typed
error; nothing else escapes. Round trips of *valid* inputs are in
tests/client/nostr/test_properties.py.

Targets: event JSON (and the relay's own parser agreeing with the client's), wire messages and
filters, NIP-19, NIP-44 (tampered payloads, and well-MACed payloads with arbitrary padding),
NIP-04, BOLT11 invoices and the payment guard's checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable

import bech32
import pytest
from hypothesis import given

from client.nostr import nip04, nip19, nip44
from client.nostr.errors import InvalidEvent, PaymentError, ProtocolError
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.messages import parse_client_message, parse_relay_message
from client.wallet.guard import Budget, PaymentGuard
from client.wallet.invoices import decode_invoice, make_invoice
from relay_mock.record import parse_record

from .mutate import EVENTS, KEYS, Mutator
from .profiles import DEEP, QUICK, seeds

# --- events --------------------------------------------------------------------------------


def event_case(seed: int) -> None:
    m = Mutator(seed)
    obj = m.mutate(m.event().to_dict())
    text = m.dumps(obj)
    try:
        ev = Event.from_json(text, verify=True)
    except InvalidEvent:
        ev = None
    if ev is not None:
        assert ev.verify()
        assert Event.from_json(ev.to_json()) == ev
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return
    # The relay's fast parser and the client's parser agree on every object.
    try:
        parse_record(decoded, text, verify=True)
        relay_ok = True
    except InvalidEvent:
        relay_ok = False
    try:
        unverified = Event.from_dict(decoded, verify=False)
    except InvalidEvent:
        unverified = None
    client_ok = unverified is not None and unverified.verify()
    assert relay_ok == client_ok, text


# --- wire messages and filters -----------------------------------------------------------


def message_case(seed: int) -> None:
    m = Mutator(seed)
    for parse, msg in (
        (parse_client_message, m.client_message()),
        (parse_relay_message, m.relay_message()),
    ):
        text = m.dumps(msg)
        try:
            parsed = parse(text, verify=m.r.random() < 0.5)
        except ProtocolError:
            continue
        except RecursionError:  # json's own limit on nesting, reached before any of ours
            continue
        assert type(parsed).__name__.startswith(("Client", "Relay"))
        for f in getattr(parsed, "filters", ()):
            assert Filter.from_dict(f.to_dict()).to_dict() == f.to_dict()
            for ev in EVENTS[:6]:
                assert f.matches(ev) in (True, False)


# --- NIP-19 --------------------------------------------------------------------------------

BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
HRPS = ["npub", "nsec", "note", "nprofile", "nevent", "naddr", "nrelay", "lnbc", "npub2"]


def _tlv(m: Mutator) -> bytes:
    r = m.r
    out = b""
    for _ in range(r.randrange(5)):
        t = r.choice([0, 1, 2, 3, 7, 255])
        n = r.choice([0, 1, 4, 31, 32, 33, r.randrange(256)])
        out += bytes([t, n]) + bytes(r.randrange(256) for _ in range(n))
    if r.random() < 0.2:
        out = out[: r.randrange(len(out) + 1)]
    return out


def nip19_case(seed: int) -> None:
    m = Mutator(seed)
    r = m.r
    hrp = r.choice(HRPS)
    if r.random() < 0.5:  # a valid checksum around an arbitrary payload: the TLV parser's turn
        payload = bytes(r.randrange(256) for _ in range(r.choice([0, 31, 32, 33, 64])))
        if hrp in ("nprofile", "nevent", "naddr", "nrelay"):
            payload = _tlv(m)
        words = bech32.convertbits(list(payload), 8, 5, True) or []
        text = bech32.bech32_encode(hrp, words)
    else:
        text = nip19.encode("nevent", nip19.EventPointer(EVENTS[0].id, ("wss://r",), None, 1))
        text = m.edit_chars(text, BECH32 + "1BI O:")
    if r.random() < 0.1:
        text = "nostr:" + text
    if r.random() < 0.05:
        text = text.upper()
    try:
        got_hrp, value = nip19.decode(text)
    except ProtocolError:
        return
    again = nip19.encode(got_hrp, value)
    assert nip19.decode(again) == (got_hrp, value)


# --- NIP-44 and NIP-04 -----------------------------------------------------------------------

CK = nip44.conversation_key(KEYS[0].secret_hex, KEYS[1].public_key)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _well_maced(m: Mutator) -> str:
    """Version 2, a MAC that verifies, and plaintext padding of any shape."""
    r = m.r
    nonce = bytes(r.randrange(256) for _ in range(32))
    size = r.choice([32, 34, 64, 66, 96, r.randrange(2, 200)])
    padded = bytes(r.randrange(256) for _ in range(size))
    if r.random() < 0.7:  # a plausible length prefix
        n = r.randrange(0, size)
        padded = n.to_bytes(2, "big") + padded[2:]
    chacha_key, chacha_nonce, hmac_key = nip44.message_keys(CK, nonce)
    ciphertext = nip44._chacha(chacha_key, chacha_nonce, padded)
    mac = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(bytes([2]) + nonce + ciphertext + mac).decode()


def nip44_case(seed: int) -> None:
    m = Mutator(seed)
    r = m.r
    plain = m.text(40) or "x"
    try:
        payload = nip44.encrypt(plain, CK)
    except ProtocolError:  # lone surrogates cannot be encrypted
        return
    pick = r.random()
    if pick < 0.4:
        tampered = m.edit_chars(payload, B64)
    elif pick < 0.7:
        tampered = _well_maced(m)
    else:
        raw = bytearray(base64.b64decode(payload))
        raw[r.randrange(len(raw))] ^= 1 << r.randrange(8)
        tampered = base64.b64encode(bytes(raw)).decode()
    try:
        out = nip44.decrypt(tampered, CK)
    except ProtocolError:
        return
    if pick >= 0.4 and pick < 0.7:
        assert isinstance(out, str)
    else:  # a change the MAC did not catch can only be one base64 ignores
        assert out == plain
    # NIP-04: any string in, a typed error or text out.
    try:
        nip04.decrypt(
            m.edit_chars(nip04.encrypt(plain, KEYS[0].secret_hex, KEYS[1].public_key), B64 + "?iv"),
            KEYS[1].secret_hex,
            KEYS[0].public_key,
        )
    except ProtocolError:
        pass


# --- BOLT11 and the payment guard ------------------------------------------------------------

NODE = KEYS[2].secret_hex
NOW = 1_800_000_000
INVOICE = make_invoice(
    NODE, amount_msats=21_000, description="job", created_at=NOW, network="regtest"
).bolt11
GUARD = PaymentGuard(network="regtest", budget=Budget(per_job_msats=50_000, per_day_msats=10**6))


def bolt11_case(seed: int) -> None:
    m = Mutator(seed)
    r = m.r
    text = INVOICE if r.random() < 0.2 else m.edit_chars(INVOICE, BECH32 + "1")
    if r.random() < 0.05:
        text = text.upper()
    quote = r.choice([None, 0, -5, 20_999, 21_000, "21000", "²", "٢١٠٠٠", True, 1.5, 10**30])
    bid = r.choice([None, 21_000, "21000", "abc", 10, "1" * 40])
    try:
        inv = decode_invoice(text)
    except PaymentError:
        return
    assert inv.payment_hash and len(inv.payment_hash) == 64
    try:
        ok = GUARD.check(
            inv,
            quote_msats=quote,
            bid_msats=bid,
            now=NOW + r.choice([0, 599, 10**6]),
            spent_job_msats=r.choice([0, 30_000]),
        )
    except PaymentError:
        return
    # Whatever got through is within every limit.
    assert ok.amount_msats is not None and ok.amount_msats <= int(quote)  # type: ignore[arg-type]


# --- wiring: each target quick by default, 10,000 cases under -m fuzz ----------------------

CASES: dict[str, Callable[[int], None]] = {
    "event": event_case,
    "messages": message_case,
    "nip19": nip19_case,
    "nip44": nip44_case,
    "bolt11": bolt11_case,
}


@pytest.mark.parametrize("target", list(CASES))
@QUICK
@given(seed=seeds)
def test_parser_survives_near_misses(target: str, seed: int) -> None:
    CASES[target](seed)


@pytest.mark.fuzz
@pytest.mark.parametrize("target", list(CASES))
@DEEP
@given(seed=seeds)
def test_fuzz_parser_survives_near_misses(target: str, seed: int) -> None:
    CASES[target](seed)
