"""Our BOLT11 codec (client.wallet.invoices, whole integers instead of bit strings) against the
``bolt11`` package: the same fields from the same strings, the same refusals, the same strings
from the same fields; and importing client.wallet leaves the package as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import bolt11
import pytest
from bech32 import CHARSET, bech32_decode, bech32_encode
from bolt11.models.features import Feature, FeatureExtra, Features, FeatureState
from bolt11.models.tags import TagChar, Tags
from coincurve import PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.nostr.errors import InvoiceError
from client.wallet.invoices import NETWORKS, decode_invoice, make_invoice

EXAMPLES = json.loads((Path(__file__).parent / "vectors" / "bolt11.examples.json").read_text())[
    "examples"
]
KNOWN_EVEN_FEATURES = {8, 14, 16, 24, 48}


def package_fields(text: str) -> tuple[Any, ...] | None:
    """What the package reads, in the shape of our Invoice; None when it refuses the string."""
    try:
        inv = bolt11.decode(text)
    except Exception:
        return None
    return (
        inv.currency,
        inv.amount_msat,
        inv.payment_hash,
        inv.payment_secret,
        inv.description,
        inv.description_hash,
        inv.date,
        inv.expiry,
        inv.payee,
    )


def our_fields(text: str) -> tuple[Any, ...] | InvoiceError:
    try:
        inv = decode_invoice(text)
    except InvoiceError as exc:
        return exc
    return (
        NETWORKS[inv.network],
        inv.amount_msats,
        inv.payment_hash,
        inv.payment_secret,
        inv.description,
        inv.description_hash,
        inv.created_at,
        inv.expiry,
        inv.payee,
    )


def tags_present(text: str) -> set[str]:
    """The tag characters of the string's tagged fields (a walk independent of both codecs)."""
    _, groups = bech32_decode(text.lower())
    assert groups is not None
    data, i, found = groups[:-104], 7, set()
    while i + 3 <= len(data):
        found.add(CHARSET[data[i]])
        i += 3 + data[i + 1] * 32 + data[i + 2]
    return found


def our_extra_refusal(text: str) -> bool:
    """Whether a string the package accepts breaks one of the reader rules we add on top."""
    inv = bolt11.decode(text)
    hrp = text[: text.lower().rfind("1")].lower()
    if hrp.endswith("p") and int(hrp.lstrip("lnbcrtsp")[:-1] or 0) % 10:
        return True  # sub-millisatoshi amount
    if inv.amount_msat == 0 and any(c.isdigit() for c in hrp):
        return True  # a zero amount
    # The package's feature_list keeps one state per feature; its bits keep both.
    bits = inv.features.data.uint if inv.features and inv.features.data.len else 0
    return any(
        bits >> b & 1 for b in range(0, bits.bit_length(), 2) if b not in KNOWN_EVEN_FEATURES
    )


def assert_same_reading(text: str) -> None:
    ours, theirs = our_fields(text), package_fields(text)
    if isinstance(ours, InvoiceError):
        assert theirs is None or our_extra_refusal(text), (text, ours, theirs)
    elif theirs is None:
        # The package also parses fallback addresses (f) and route hints (r), which a payer
        # does not need, and refuses a malformed one; we skip them.
        assert tags_present(text) & {"f", "r"}, (text, ours)
    else:
        assert ours == theirs


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["title"][:40] for e in EXAMPLES])
def test_every_bolt11_example_reads_the_same(example: dict[str, Any]) -> None:
    assert_same_reading(example["invoice"])
    assert isinstance(our_fields(example["invoice"]), tuple) is example["valid"]


def _feature(bit: int) -> Feature | FeatureExtra:
    return Feature(bit) if bit < len(Feature) else FeatureExtra(bit)


@st.composite
def package_invoices(draw: st.DrawFn) -> str:
    """Invoices the package writes and signs, with fields in any order, of odd lengths, twice,
    missing, or unknown to us."""
    key = PrivateKey(draw(st.binary(min_size=32, max_size=32).filter(lambda b: any(b))))
    hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
    odd_hex = st.binary(min_size=0, max_size=40).map(bytes.hex)
    field = st.one_of(
        st.tuples(st.just(TagChar.payment_hash), st.one_of(hex32, odd_hex)),
        st.tuples(st.just(TagChar.payment_secret), st.one_of(hex32, odd_hex)),
        st.tuples(st.just(TagChar.description), st.text(max_size=60)),
        st.tuples(st.just(TagChar.description_hash), st.one_of(hex32, odd_hex)),
        st.tuples(st.just(TagChar.expire_time), st.integers(0, 2**40)),
        st.tuples(st.just(TagChar.min_final_cltv_expiry), st.integers(0, 2**20)),
        st.tuples(st.just(TagChar.metadata), odd_hex),
        st.tuples(
            st.just(TagChar.features),
            st.dictionaries(
                st.integers(0, 60).map(_feature),
                st.sampled_from([FeatureState.required, FeatureState.supported]),
                min_size=1,
                max_size=4,
            ).map(Features.from_feature_list),
        ),
        st.tuples(
            st.just(TagChar.payee),
            st.one_of(
                st.just(key.public_key.format().hex()),
                st.just(PrivateKey().public_key.format().hex()),
                odd_hex,
            ),
        ),
    )
    must = [
        (TagChar.payment_hash, draw(hex32)),
        (TagChar.payment_secret, draw(hex32)),
        (TagChar.description, draw(st.text(max_size=30))),
    ]
    extra = draw(st.lists(field, max_size=6))
    fields = draw(st.permutations(must + extra))
    tags = Tags()
    for char, value in fields:
        tags.add(char, value)
    amount = draw(st.none() | st.integers(1, 21 * 10**17))
    draft = bolt11.Bolt11(
        currency=draw(st.sampled_from(sorted(NETWORKS.values()))),
        date=draw(st.integers(0, 2**35 - 1)),
        tags=tags,
        amount_msat=None if amount is None else bolt11.MilliSatoshi(amount),
    )
    return str(
        bolt11.encode(draft, private_key=key.to_hex(), ignore_exceptions=True, keep_payee=True)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(package_invoices())
def test_package_invoices_read_the_same(text: str) -> None:
    assert_same_reading(text)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 10**12),
    st.sampled_from(sorted(NETWORKS)),
    st.data(),
)
def test_changed_invoices_read_the_same(amount: int, network: str, data: st.DataObject) -> None:
    """Any five-bit group of the data part changed, under a valid checksum: a field's tag, its
    length, its content, the timestamp or the signature. Most still verify (the key is recovered
    from the signature), for another payee or not at all."""
    made = make_invoice(PrivateKey().to_hex(), amount_msats=amount, created_at=0, network=network)
    hrp, groups = bech32_decode(made.bolt11)
    assert hrp is not None and groups is not None
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(groups) - 1))
        groups[at] = data.draw(st.integers(0, 31))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(groups)))
        groups = groups[:cut] + groups[cut + data.draw(st.integers(0, 8)) :]
    assert_same_reading(bech32_encode(hrp, groups))


@settings(max_examples=200, deadline=None)
@given(
    # Whole thousands of BTC: the package writes them 1000 times too small (next test).
    amount=st.integers(1, 21 * 10**17).filter(lambda msats: msats % 10**14 != 0),
    network=st.sampled_from(sorted(NETWORKS)),
    created_at=st.integers(0, 2**35 - 1),
    expiry=st.integers(1, 2**32),
    description=st.one_of(st.none(), st.text(max_size=80).filter(lambda t: len(t.encode()) <= 639)),
    description_hash=st.binary(min_size=32, max_size=32).map(bytes.hex),
)
def test_made_invoices_are_what_the_package_writes(
    amount: int,
    network: str,
    created_at: int,
    expiry: int,
    description: str | None,
    description_hash: str,
) -> None:
    """Byte for byte: the package, given the fields we wrote, writes the same string (the
    signature is deterministic, RFC 6979)."""
    key = PrivateKey()
    made = make_invoice(
        key.to_hex(),
        amount_msats=amount,
        network=network,
        created_at=created_at,
        expiry=expiry,
        description=description or "",
        description_hash=None if description is not None else description_hash,
    )
    tags = Tags()
    tags.add(TagChar.payment_hash, made.payment_hash)
    tags.add(TagChar.payment_secret, made.invoice.payment_secret)
    if description is not None:
        tags.add(TagChar.description, description)
    else:
        tags.add(TagChar.description_hash, description_hash)
    tags.add(TagChar.expire_time, expiry)
    tags.add(TagChar.min_final_cltv_expiry, 18)
    tags.add(
        TagChar.features,
        Features.from_feature_list(
            {
                Feature.var_onion_optin: FeatureState.required,
                Feature.payment_secret: FeatureState.required,
            }
        ),
    )
    draft = bolt11.Bolt11(
        currency=NETWORKS[network],
        date=created_at,
        tags=tags,
        amount_msat=bolt11.MilliSatoshi(amount),
    )
    assert bolt11.encode(draft, private_key=key.to_hex()) == made.bolt11
    assert our_fields(made.bolt11) == package_fields(made.bolt11)


@pytest.mark.parametrize("btc", [1000, 21_000, 2_625_000])
def test_whole_thousands_of_btc_keep_their_amount(btc: int) -> None:
    """bolt11.encode writes 1000 BTC as `lnbc1` (its amount shortening divides once too often);
    ours writes `lnbc1000`, which every reader, the package included, reads as 1000 BTC."""
    msats = btc * 10**11
    made = make_invoice(PrivateKey().to_hex(), amount_msats=msats, created_at=0, network="bitcoin")
    assert made.bolt11.startswith(f"lnbc{btc}1")
    assert decode_invoice(made.bolt11).amount_msats == msats
    assert bolt11.decode(made.bolt11).amount_msat == msats


def test_importing_the_wallet_leaves_the_bolt11_package_alone() -> None:
    """client.wallet uses its own codec; the package's helpers stay the package's."""
    code = (
        "import bolt11, sys\n"
        "names = ('bolt11.decode', 'bolt11.encode', 'bolt11.models.fallback')\n"
        "before = {(m, n): getattr(sys.modules[m], n) for m in names\n"
        "          for n in ('u5_to_bitarray', 'bitarray_to_u5') if hasattr(sys.modules[m], n)}\n"
        "import client.wallet, client.wallet.invoices\n"
        "after = {k: getattr(sys.modules[k[0]], k[1]) for k in before}\n"
        "assert before and after == before, (before, after)\n"
        "assert all(f.__module__ == 'bolt11.bit_utils' for f in after.values())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_wallet_does_not_import_the_bolt11_package() -> None:
    code = (
        "import sys, client.wallet, client.wallet.invoices\n"
        "assert 'bolt11' not in sys.modules and 'bitstring' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
