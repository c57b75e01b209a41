"""BOLT11: the BOLT #11 examples (valid and invalid), our own invoices, network and expiry."""

from __future__ import annotations

import json
from pathlib import Path

import bolt11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.nostr.errors import InvoiceError, InvoiceExpired, WrongNetwork
from client.nostr.keys import Keys
from client.wallet import invoices
from client.wallet.invoices import (
    check_invoice,
    decode_invoice,
    make_invoice,
    payment_hash_of,
    preimage_matches,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bolt11.examples.json").read_text())
EXAMPLES = VECTORS["examples"]
VALID = [e for e in EXAMPLES if e["valid"]]
INVALID = [e for e in EXAMPLES if not e["valid"]]
# The node key of priv_key in the vector file (BOLT #11 examples are all signed with it).
SPEC_PAYEE = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
NOW = 1_800_000_000


def test_vector_file_has_both_kinds() -> None:
    assert len(VALID) == 16
    assert len(INVALID) == 10


@pytest.mark.parametrize("example", VALID, ids=[e["title"][:40] for e in VALID])
def test_valid_examples_decode(example: dict) -> None:
    inv = decode_invoice(example["invoice"])
    assert inv.amount_msats == example["amount_msat_from_hrp"]
    assert inv.network == (
        "testnet" if example["invoice"].lower().startswith("lntb") else "bitcoin"
    )
    assert len(inv.payment_hash) == 64
    assert len(inv.payee) == 66
    if "high-S" not in example["title"]:
        assert inv.payee == SPEC_PAYEE
    # Exactly one of description and description hash.
    assert (inv.description is None) != (inv.description_hash is None)


@pytest.mark.parametrize("example", INVALID, ids=[e["title"][:40] for e in INVALID])
def test_invalid_examples_are_refused_with_a_typed_error(example: dict) -> None:
    with pytest.raises(InvoiceError):
        decode_invoice(example["invoice"])


def test_spec_examples_are_mainnet_so_a_regtest_wallet_refuses_them() -> None:
    coffee = next(e for e in VALID if e["title"].startswith("Please send $3"))
    with pytest.raises(WrongNetwork):
        check_invoice(coffee["invoice"], network="regtest", now=0)


def test_spec_example_expires_after_its_x_field() -> None:
    coffee = decode_invoice(
        next(e for e in VALID if e["title"].startswith("Please send $3"))["invoice"]
    )
    assert coffee.expiry == 60  # "within one minute"
    check_invoice(coffee, network="bitcoin", now=coffee.created_at + 59)
    with pytest.raises(InvoiceExpired):
        check_invoice(coffee, network="bitcoin", now=coffee.created_at + 60)


def test_amountless_invoice_is_refused_unless_allowed() -> None:
    donation = VALID[0]["invoice"]
    with pytest.raises(InvoiceError, match="no amount"):
        check_invoice(donation, network="bitcoin", now=0)
    assert (
        check_invoice(donation, network="bitcoin", now=0, require_amount=False).amount_msats is None
    )


def test_made_invoice_round_trips_with_exact_fields() -> None:
    node = Keys.generate()
    made = make_invoice(
        node.secret_hex, amount_msats=21_001, description="job 42", expiry=600, created_at=NOW
    )
    inv = decode_invoice(made.bolt11)
    assert made.bolt11.startswith("lnbcrt210010p1")  # regtest by default, exact p amount
    assert inv == made.invoice
    assert (inv.network, inv.amount_msats, inv.description, inv.expiry) == (
        "regtest",
        21_001,
        "job 42",
        600,
    )
    assert inv.created_at == NOW and inv.expires_at == NOW + 600
    assert inv.payment_hash == payment_hash_of(made.preimage)
    assert preimage_matches(made.preimage, inv.payment_hash)
    assert not preimage_matches("00" * 32, inv.payment_hash)
    assert not preimage_matches(None, inv.payment_hash)
    # Upper case is the same invoice (QR codes use it); the signature still verifies.
    assert decode_invoice(made.bolt11.upper()).payment_hash == inv.payment_hash


@pytest.mark.parametrize(
    "kw", [{"description": ""}, {"description": "ナンセンス"}, {"description_hash": "ab" * 32}]
)
def test_made_fields_equal_what_any_decoder_reads(kw: dict) -> None:
    made = make_invoice(Keys.generate().secret_hex, amount_msats=1_234_560, created_at=NOW, **kw)
    assert decode_invoice(made.bolt11) == made.invoice
    raw = bolt11.decode(made.bolt11)  # the package on its own, without our checks
    assert (raw.payment_hash, raw.payee, raw.amount_msat) == (
        made.payment_hash,
        made.invoice.payee,
        1_234_560,
    )


def test_made_invoice_is_signed_by_the_node_key() -> None:
    a = make_invoice(Keys.generate().secret_hex, amount_msats=1000, created_at=NOW)
    b = make_invoice(Keys.generate().secret_hex, amount_msats=1000, created_at=NOW)
    assert a.invoice.payee != b.invoice.payee
    assert a.payment_hash != b.payment_hash  # fresh random preimage each time


@pytest.mark.parametrize(
    "network,prefix",
    [("bitcoin", "lnbc"), ("testnet", "lntb"), ("signet", "lntbs"), ("regtest", "lnbcrt")],
)
def test_network_prefixes(network: str, prefix: str) -> None:
    made = make_invoice(
        Keys.generate().secret_hex, amount_msats=5000, created_at=NOW, network=network
    )
    assert made.bolt11.startswith(prefix + "50n1")
    assert check_invoice(made.bolt11, network=network, now=NOW).network == network
    other = "bitcoin" if network != "bitcoin" else "regtest"
    with pytest.raises(WrongNetwork):
        check_invoice(made.bolt11, network=other, now=NOW)


def test_expiry_uses_the_injected_clock_and_margin() -> None:
    made = make_invoice(Keys.generate().secret_hex, amount_msats=1000, expiry=100, created_at=NOW)
    check_invoice(made.bolt11, network="regtest", now=NOW + 89, min_remaining=10)
    with pytest.raises(InvoiceExpired, match="under"):
        check_invoice(made.bolt11, network="regtest", now=NOW + 91, min_remaining=10)
    with pytest.raises(InvoiceExpired, match="expired"):
        check_invoice(made.bolt11, network="regtest", now=NOW + 100)


def test_tampered_invoice_is_refused() -> None:
    made = make_invoice(Keys.generate().secret_hex, amount_msats=1000, created_at=NOW)
    s = made.bolt11
    flipped = s[:30] + ("q" if s[30] != "q" else "p") + s[31:]
    with pytest.raises(InvoiceError):
        decode_invoice(flipped)
    # Raising the amount in the human-readable part breaks the checksum too.
    with pytest.raises(InvoiceError):
        decode_invoice(s.replace("lnbcrt10n1", "lnbcrt20n1", 1))


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "lightning:", "hello", "lnbc1", "x" * 10_000, "lnxx10n1qqqqqq", 42, None, b"lnbc"],
)
def test_garbage_is_an_invoice_error(bad: object) -> None:
    with pytest.raises(InvoiceError):
        decode_invoice(bad)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "100"])
def test_make_refuses_bad_amounts(amount: object) -> None:
    with pytest.raises(InvoiceError):
        make_invoice(Keys.generate().secret_hex, amount_msats=amount, created_at=NOW)  # type: ignore[arg-type]


def test_make_refuses_overlong_description_and_bad_expiry() -> None:
    key = Keys.generate().secret_hex
    with pytest.raises(InvoiceError, match="description"):
        make_invoice(key, amount_msats=1000, created_at=NOW, description="é" * 400)
    with pytest.raises(InvoiceError, match="expiry"):
        make_invoice(key, amount_msats=1000, created_at=NOW, expiry=0)


@pytest.mark.parametrize(
    "hrp,msats",
    [
        ("lnbc", None),
        ("lnbc1", 10**11),
        ("lnbc2500u", 250_000_000),
        ("lnbc20m", 2_000_000_000),
        ("lnbc9678785340p", 967_878_534),
        ("lnbcrt10n", 1000),
        ("lntbs1p0", None),
    ],
)
def test_hrp_amounts_are_exact(hrp: str, msats: int | None) -> None:
    if hrp == "lntbs1p0":
        with pytest.raises(InvoiceError):
            invoices.amount_from_hrp(hrp)
        return
    assert invoices.amount_from_hrp(hrp)[1] == msats


@given(st.integers(min_value=1, max_value=21_000_000 * 10**11))
def test_hrp_amount_round_trip(msats: int) -> None:
    text = invoices.msats_to_hrp_amount(msats)
    assert invoices.amount_from_hrp("lnbcrt" + text) == ("regtest", msats)
