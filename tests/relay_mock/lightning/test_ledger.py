"""The SQLite ledger: balances in exact msats, settle once, expiry, conservation of the total."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.nostr.errors import (
    InsufficientBalance,
    InvoiceError,
    InvoiceNotFound,
    PaymentFailed,
    WalletError,
    WalletUnauthorized,
    WrongNetwork,
)
from client.nostr.keys import Keys
from client.wallet.invoices import decode_invoice, make_invoice, preimage_matches
from relay_mock.lightning.ledger import Ledger


class Clock:
    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Ledger:
    with Ledger(tmp_path / "ledger.db", clock=clock) as led:
        yield led


def test_pay_moves_exact_msats_and_reveals_the_preimage(ledger: Ledger) -> None:
    alice = ledger.create_account("alice", msats=100_000)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 21_001, "job", 600)
    assert tx.state == "pending" and tx.preimage is None
    paid = ledger.pay_invoice(alice.id, tx.invoice or "")
    assert preimage_matches(paid.preimage, tx.payment_hash)
    assert ledger.balance(alice.id) == 78_999
    assert ledger.balance(bob.id) == 21_001
    assert ledger.lookup(bob.id, tx.payment_hash).state == "settled"
    out = ledger.lookup(alice.id, tx.payment_hash)
    assert (out.type, out.state, out.amount, out.preimage) == (
        "outgoing",
        "settled",
        21_001,
        paid.preimage,
    )
    assert ledger.check_conservation() == 100_000


def test_invoice_is_real_bolt11_signed_by_the_node(ledger: Ledger) -> None:
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 5_000, "hello", 60)
    inv = decode_invoice(tx.invoice)
    assert (inv.network, inv.amount_msats, inv.description) == ("regtest", 5_000, "hello")
    assert inv.payee == ledger.node_pubkey


def test_paying_twice_from_the_same_account_pays_once(ledger: Ledger) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 10_000)
    first = ledger.pay_invoice(alice.id, tx.invoice or "")
    again = ledger.pay_invoice(alice.id, tx.invoice or "")
    assert again.repeated and not first.repeated
    assert again.preimage == first.preimage
    assert ledger.balance(alice.id) == 40_000
    assert ledger.balance(bob.id) == 10_000


def test_another_account_cannot_pay_a_settled_invoice(ledger: Ledger) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    carol = ledger.create_account("carol", msats=50_000)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 10_000)
    ledger.pay_invoice(alice.id, tx.invoice or "")
    with pytest.raises(PaymentFailed, match="already paid"):
        ledger.pay_invoice(carol.id, tx.invoice or "")
    assert ledger.balance(carol.id) == 50_000


def test_database_refuses_a_second_payment_row(ledger: Ledger, tmp_path: Path) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 10_000)
    ledger.pay_invoice(alice.id, tx.invoice or "")
    raw = sqlite3.connect(tmp_path / "ledger.db")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute(
            "INSERT INTO payments (account_id, payment_hash, bolt11, amount_msats, preimage,"
            " created_at, settled_at) VALUES (1, ?, 'x', 1, 'y', 0, 0)",
            (tx.payment_hash,),
        )
    raw.close()


def test_insufficient_balance_moves_nothing(ledger: Ledger) -> None:
    alice = ledger.create_account("alice", msats=9_999)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 10_000)
    with pytest.raises(InsufficientBalance):
        ledger.pay_invoice(alice.id, tx.invoice or "")
    assert ledger.balance(alice.id) == 9_999
    assert ledger.lookup(bob.id, tx.payment_hash).state == "pending"
    with pytest.raises(InvoiceNotFound):
        ledger.lookup(alice.id, tx.payment_hash)


def test_expired_invoice_cannot_be_paid(ledger: Ledger, clock: Clock) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 10_000, expiry=60)
    clock.now += 60
    with pytest.raises(PaymentFailed, match="expired"):
        ledger.pay_invoice(alice.id, tx.invoice or "")
    assert ledger.lookup(bob.id, tx.payment_hash).state == "expired"
    assert ledger.balance(alice.id) == 50_000


def test_foreign_invoices_are_refused(ledger: Ledger, clock: Clock) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    bob = ledger.create_account("bob")
    stranger = make_invoice(
        Keys.generate().secret_hex, amount_msats=1_000, created_at=int(clock.now)
    )
    with pytest.raises(PaymentFailed, match="no route"):
        ledger.pay_invoice(alice.id, stranger.bolt11)
    mainnet = make_invoice(
        ledger.node_keys.secret_hex,
        amount_msats=1_000,
        created_at=int(clock.now),
        network="bitcoin",
    )
    with pytest.raises(WrongNetwork):
        ledger.pay_invoice(alice.id, mainnet.bolt11)
    with pytest.raises(InvoiceError):
        ledger.pay_invoice(alice.id, "lnbcrt1garbage")
    own = ledger.make_invoice(alice.id, 1_000)
    with pytest.raises(PaymentFailed, match="own invoice"):
        ledger.pay_invoice(alice.id, own.invoice or "")
    # A forged invoice reusing a ledger payment hash but signed by another node: not ours.
    real = ledger.make_invoice(bob.id, 1_000)
    forged = make_invoice(Keys.generate().secret_hex, amount_msats=1_000, created_at=int(clock.now))
    assert forged.payment_hash != real.payment_hash
    assert ledger.balance(alice.id) == 50_000


def test_amount_parameter_must_match(ledger: Ledger) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    bob = ledger.create_account("bob")
    tx = ledger.make_invoice(bob.id, 10_000)
    with pytest.raises(PaymentFailed, match="differs"):
        ledger.pay_invoice(alice.id, tx.invoice or "", amount_msats=9_000)
    assert (
        ledger.pay_invoice(alice.id, tx.invoice or "", amount_msats=10_000).amount_msats == 10_000
    )


@pytest.mark.parametrize("amount", [0, -5, 1.0, True])
def test_bad_amounts(ledger: Ledger, amount: object) -> None:
    bob = ledger.create_account("bob")
    with pytest.raises(InvoiceError):
        ledger.make_invoice(bob.id, amount)  # type: ignore[arg-type]
    with pytest.raises(InvoiceError):
        ledger.deposit(bob.id, amount)  # type: ignore[arg-type]


def test_unknown_account_and_connections(ledger: Ledger) -> None:
    with pytest.raises(WalletUnauthorized):
        ledger.make_invoice(99, 1_000)
    alice = ledger.create_account("alice")
    keys = ledger.new_connection(alice.id)
    assert ledger.account_for_client(keys.public_key) == alice.id
    ledger.revoke_connection(keys.public_key)
    assert ledger.account_for_client(keys.public_key) is None


def test_state_survives_reopen_and_network_is_fixed(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, clock=clock) as led:
        a = led.create_account("a", msats=1_000)
        node, service = led.node_pubkey, led.service_keys.public_key
    with Ledger(path, clock=clock) as led:
        assert led.balance(a.id) == 1_000
        assert (led.node_pubkey, led.service_keys.public_key) == (node, service)
    with pytest.raises(WalletError, match="regtest"):
        Ledger(path, network="bitcoin", clock=clock)


def test_transactions_newest_first(ledger: Ledger, clock: Clock) -> None:
    alice = ledger.create_account("alice", msats=50_000)
    bob = ledger.create_account("bob")
    first = ledger.make_invoice(bob.id, 1_000)
    clock.now += 1
    second = ledger.make_invoice(bob.id, 2_000)
    ledger.pay_invoice(alice.id, first.invoice or "")
    assert [t.payment_hash for t in ledger.transactions(bob.id)] == [first.payment_hash]
    assert [t.payment_hash for t in ledger.transactions(bob.id, unpaid=True)] == [
        second.payment_hash,
        first.payment_hash,
    ]
    assert [t.type for t in ledger.transactions(alice.id)] == ["outgoing"]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 40_000), st.booleans()),
        max_size=12,
    )
)
def test_total_is_conserved_under_any_payments(
    tmp_path_factory: pytest.TempPathFactory, ops: list
) -> None:
    clock = Clock()
    with Ledger(tmp_path_factory.mktemp("c") / "l.db", clock=clock) as led:
        ids = [led.create_account(str(i), msats=50_000).id for i in range(4)]
        for payer, payee, msats, twice in ops:
            tx = led.make_invoice(ids[payee], msats, expiry=30)
            for _ in range(2 if twice else 1):
                try:
                    led.pay_invoice(ids[payer], tx.invoice or "")
                except (PaymentFailed, InsufficientBalance):
                    pass
            clock.now += 7  # some invoices expire before later attempts
            assert led.check_conservation() == 200_000
        assert all(a.balance_msats >= 0 for a in led.accounts())
