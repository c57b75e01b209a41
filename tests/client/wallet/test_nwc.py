"""NWC end to end over relay_mock (real websockets on 127.0.0.1): our client, our service, a
standard third-party client (nostr-sdk), and wallets that time out or go away mid-payment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest

from client.nostr.errors import (
    InsufficientBalance,
    InvoiceNotFound,
    PaymentFailed,
    WalletError,
    WalletTimeout,
    WalletUnauthorized,
    WalletUnavailable,
)
from client.nostr.keys import Keys
from client.wallet import nip47
from client.wallet.guard import Bill
from client.wallet.invoices import decode_invoice, preimage_matches
from client.wallet.nwc import NwcWallet
from client.wallet.payment_ledger import PaymentLedger
from client.wallet.payments import Payer
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import RequestHandler, WalletService
from tests.support.lightning import Crash, SpyWallet

JOB = "c" * 64


@pytest.fixture
def live_ledger(tmp_path: Path) -> Iterator[Ledger]:
    # Real clock: events go through a real relay, which judges created_at.
    with Ledger(tmp_path / "network.db", clock=time.time) as led:
        yield led


@pytest.fixture
async def service(live_ledger: Ledger, relay: Relay) -> AsyncIterator[WalletService]:
    async with WalletService(live_ledger, [relay.url]) as svc:
        yield svc


def fund(ledger: Ledger, service: WalletService, msats: int = 0, name: str = "") -> tuple[int, str]:
    account = ledger.create_account(name, msats=msats)
    return account.id, service.connection_uri(account.id)


async def test_make_pay_lookup_balance_over_a_relay(
    live_ledger: Ledger, service: WalletService
) -> None:
    alice_id, alice_uri = fund(live_ledger, service, 100_000, "alice")
    bob_id, bob_uri = fund(live_ledger, service, 0, "bob")
    async with NwcWallet(alice_uri, timeout=5) as alice, NwcWallet(bob_uri, timeout=5) as bob:
        assert alice.encryption == nip47.NIP44
        assert alice.info is not None and "pay_invoice" in alice.info.methods
        invoice = await bob.make_invoice(21_000, "job", 600)
        inv = decode_invoice(invoice)
        assert (inv.amount_msats, inv.network, inv.payee) == (
            21_000,
            "regtest",
            live_ledger.node_pubkey,
        )
        preimage = await alice.pay_invoice(invoice)
        assert preimage_matches(preimage, inv.payment_hash)
        tx = await bob.lookup_invoice(inv.payment_hash)
        assert (tx.type, tx.state, tx.amount, tx.preimage) == (
            "incoming",
            "settled",
            21_000,
            preimage,
        )
        out = await alice.lookup_invoice(inv.payment_hash)
        assert (out.type, out.settled) == ("outgoing", True)
        assert await alice.get_balance() == 79_000
        assert await bob.get_balance() == 21_000
        assert [t.payment_hash for t in await bob.list_transactions()] == [inv.payment_hash]
        assert (await alice.get_info())["network"] == "regtest"
        # Paying again returns the same proof and moves nothing.
        assert await alice.pay_invoice(invoice) == preimage
    assert live_ledger.balance(alice_id) == 79_000 and live_ledger.balance(bob_id) == 21_000
    assert live_ledger.check_conservation() == 100_000


async def test_wallet_errors_arrive_typed(live_ledger: Ledger, service: WalletService) -> None:
    _, poor_uri = fund(live_ledger, service, 1_000)
    rich_id, _ = fund(live_ledger, service, 0)
    invoice = live_ledger.make_invoice(rich_id, 5_000).invoice or ""
    async with NwcWallet(poor_uri, timeout=5) as poor:
        with pytest.raises(InsufficientBalance):
            await poor.pay_invoice(invoice)
        with pytest.raises(InvoiceNotFound):
            await poor.lookup_invoice("00" * 32)
        with pytest.raises(PaymentFailed):
            await poor.pay_invoice("lnbcrt1notaninvoice")
        live_ledger.revoke_connection(poor.client_pubkey)
        with pytest.raises(WalletUnauthorized):
            await poor.get_balance()
    assert live_ledger.balance(rich_id) == 0


async def test_nip04_only_wallet_is_spoken_to_in_nip04(live_ledger: Ledger, relay: Relay) -> None:
    async with WalletService(live_ledger, [relay.url], encryptions=(nip47.NIP04,)) as svc:
        _, uri = fund(live_ledger, svc, 7_000)
        async with NwcWallet(uri, timeout=5) as wallet:
            assert wallet.encryption == nip47.NIP04
            assert await wallet.get_balance() == 7_000


async def test_wallet_without_info_event_gets_nip04(live_ledger: Ledger, relay: Relay) -> None:
    async with WalletService(live_ledger, [relay.url], announce=False) as svc:
        _, uri = fund(live_ledger, svc, 3_000)
        async with NwcWallet(uri, timeout=5) as wallet:
            assert wallet.info is None and wallet.encryption == nip47.NIP04
            assert await wallet.get_balance() == 3_000


async def test_wallet_offering_only_unknown_encryption_is_refused(
    live_ledger: Ledger, relay: Relay
) -> None:
    async with WalletService(live_ledger, [relay.url], encryptions=("nip44_v3",)) as svc:
        _, uri = fund(live_ledger, svc)
        wallet = NwcWallet(uri, timeout=5)
        with pytest.raises(WalletError) as err:
            await wallet.connect()
        assert err.value.code == "UNSUPPORTED_ENCRYPTION"
        await wallet.close()


async def test_method_the_wallet_does_not_offer_is_refused_locally(
    live_ledger: Ledger, relay: Relay, service: WalletService
) -> None:
    _, uri = fund(live_ledger, service)
    async with NwcWallet(uri, timeout=5) as wallet:
        with pytest.raises(WalletError) as err:
            await wallet.request("pay_keysend", {"amount": 1, "pubkey": "02" * 33})
        assert err.value.code == "NOT_IMPLEMENTED"


async def test_silent_wallet_times_out_cleanly(relay: Relay) -> None:
    uri = nip47.NwcUri(Keys.generate().public_key, (relay.url,), Keys.generate().secret_hex)
    async with NwcWallet(uri, timeout=0.3, info_timeout=1) as wallet:
        with pytest.raises(WalletTimeout):
            await wallet.get_balance()


async def test_unreachable_relay_is_reported_as_unavailable() -> None:
    async with Relay() as gone:
        url = gone.url
    uri = nip47.NwcUri(Keys.generate().public_key, (url,), Keys.generate().secret_hex)
    async with NwcWallet(uri, timeout=0.5, connect_timeout=0.3, info_timeout=0.3) as wallet:
        with pytest.raises(WalletUnavailable):
            await wallet.pay_invoice("lnbcrt1x")


async def test_standard_nwc_client_nostr_sdk_works_with_our_service(
    live_ledger: Ledger, relay: Relay
) -> None:
    schemes: list[str] = []

    class Recording(RequestHandler):
        def handle(self, event: Any) -> Any:
            schemes.append(nip47.request_scheme(event))
            return super().handle(event)

    handler = Recording(live_ledger)
    async with WalletService(live_ledger, [relay.url], handler=handler) as svc:
        payer_id, payer_uri = fund(live_ledger, svc, 100_000)
        payee_id, payee_uri = fund(live_ledger, svc)
        payer = nostr_sdk.NostrWalletConnect(nostr_sdk.NostrWalletConnectUri.parse(payer_uri))
        payee = nostr_sdk.NostrWalletConnect(nostr_sdk.NostrWalletConnectUri.parse(payee_uri))
        assert (await payer.get_balance()).balance == 100_000
        made = await payee.make_invoice(
            nostr_sdk.MakeInvoiceRequest(
                amount=5_000, description="sdk", description_hash=None, expiry=600
            )
        )
        assert decode_invoice(made.invoice).amount_msats == 5_000
        paid = await payer.pay_invoice(
            nostr_sdk.PayInvoiceRequest(id=None, invoice=made.invoice, amount=None)
        )
        assert preimage_matches(paid.preimage, made.payment_hash)
        looked = await payee.lookup_invoice(
            nostr_sdk.LookupInvoiceRequest(payment_hash=made.payment_hash, invoice=None)
        )
        assert looked.amount == 5_000 and looked.preimage == paid.preimage
        with pytest.raises(Exception, match=r"NotFound|not found|NOT_FOUND"):
            await payer.lookup_invoice(
                nostr_sdk.LookupInvoiceRequest(payment_hash="00" * 32, invoice=None)
            )
    assert live_ledger.balance(payer_id) == 95_000 and live_ledger.balance(payee_id) == 5_000
    assert schemes and set(schemes) <= {nip47.NIP44, nip47.NIP04}


# --- payments over NWC: the quorum, a wallet that goes away, a crash ---------------------------


async def test_full_loop_pays_the_two_honest_providers_and_not_the_liar(
    live_ledger: Ledger, service: WalletService, tmp_path: Path
) -> None:
    _, customer_uri = fund(live_ledger, service, 200_000, "customer")
    providers = {f"provider{i}": fund(live_ledger, service, 0, f"provider{i}") for i in range(3)}
    total = live_ledger.check_conservation()
    quotes = {"provider0": 21_000, "provider1": 25_000, "provider2": 30_000}
    bills = {}
    for name, (_, uri) in providers.items():
        async with NwcWallet(uri, timeout=5) as w:
            bills[name] = Bill(
                await w.make_invoice(quotes[name], f"job {JOB[:8]}", 600), quotes[name]
            )
    async with NwcWallet(customer_uri, timeout=5) as customer:
        payer = Payer(customer, PaymentLedger(tmp_path / "payments.db"))
        result = await payer.pay_quorum(JOB, ["provider0", "provider1"], bills, bid_msats=30_000)
    assert result.by_provider_msats() == {"provider0": 21_000, "provider1": 25_000}
    assert result.outcomes["provider2"].status == "skipped"
    balances = {name: live_ledger.balance(acc) for name, (acc, _) in providers.items()}
    assert balances == {"provider0": 21_000, "provider1": 25_000, "provider2": 0}
    assert live_ledger.check_conservation() == total
    assert payer.ledger.paid_msats(job_id=JOB) == 46_000


class GoesAwayAfterPaying(RequestHandler):
    """Executes the first pay_invoice and never answers it (the wallet dies mid-payment)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.swallowed = asyncio.Event()

    def _dispatch(self, account: int, req: nip47.Request) -> dict[str, Any]:
        result = super()._dispatch(account, req)
        if req.method == "pay_invoice" and not self.swallowed.is_set():
            self.swallowed.set()
        return result

    def handle(self, event: Any) -> Any:
        was = self.swallowed.is_set()
        response = super().handle(event)
        if not was and self.swallowed.is_set():
            return None
        return response


async def test_wallet_going_away_mid_payment_is_resolved_without_paying_twice(
    live_ledger: Ledger, relay: Relay, tmp_path: Path
) -> None:
    handler = GoesAwayAfterPaying(live_ledger)
    async with WalletService(live_ledger, [relay.url], handler=handler) as svc:
        customer_id, customer_uri = fund(live_ledger, svc, 50_000)
        provider_id, _ = fund(live_ledger, svc)
        invoice = live_ledger.make_invoice(provider_id, 10_000, "job", 600).invoice or ""
        async with NwcWallet(customer_uri, timeout=0.5) as customer:
            spy = SpyWallet(customer)
            payer = Payer(spy, PaymentLedger(tmp_path / "payments.db"))
            first = await payer.pay(JOB, "p", invoice, quote_msats=10_000, bid_msats=10_000)
            assert first.status == "unknown" and isinstance(first.error, WalletTimeout)
            # The money did leave (the wallet paid before going quiet) ...
            assert live_ledger.balance(customer_id) == 40_000
            # ... and asking again looks it up instead of paying again.
            second = await payer.pay(JOB, "p", invoice, quote_msats=10_000, bid_msats=10_000)
            assert second.status == "paid" and second.repeated
            assert spy.pay_calls == 1
    assert live_ledger.balance(customer_id) == 40_000 and live_ledger.balance(provider_id) == 10_000


async def test_relay_going_away_mid_payment_then_coming_back(
    live_ledger: Ledger, relay: Relay, tmp_path: Path
) -> None:
    class CutsTheRelay(RequestHandler):
        def _dispatch(self, account: int, req: nip47.Request) -> dict[str, Any]:
            result = super()._dispatch(account, req)
            if req.method == "pay_invoice":
                asyncio.get_running_loop().create_task(relay.stop(abort=True))
            return result

    async with WalletService(live_ledger, [relay.url], handler=CutsTheRelay(live_ledger)) as svc:
        customer_id, customer_uri = fund(live_ledger, svc, 50_000)
        provider_id, _ = fund(live_ledger, svc)
        invoice = live_ledger.make_invoice(provider_id, 10_000, "job", 600).invoice or ""
        db = tmp_path / "payments.db"
        async with NwcWallet(customer_uri, timeout=1.0) as customer:
            spy = SpyWallet(customer)
            out = await Payer(spy, PaymentLedger(db)).pay(
                JOB, "p", invoice, quote_msats=10_000, bid_msats=10_000
            )
        assert out.status == "unknown"
        assert isinstance(out.error, WalletTimeout | WalletUnavailable)
        await relay.start()
        await svc.pool.relays[0].wait_connects(2)
        async with NwcWallet(customer_uri, timeout=5) as customer:
            restarted = Payer(SpyWallet(customer), PaymentLedger(db))
            [rec] = await restarted.resolve_open()
            assert rec.state == "paid"
            again = await restarted.pay(JOB, "p", invoice, quote_msats=10_000, bid_msats=10_000)
            assert again.repeated and restarted.wallet.pay_calls == 0  # type: ignore[attr-defined]
    assert spy.pay_calls == 1
    assert live_ledger.balance(customer_id) == 40_000 and live_ledger.balance(provider_id) == 10_000


async def test_customer_killed_between_intent_and_confirmation_restarts_without_second_payment(
    live_ledger: Ledger, service: WalletService, tmp_path: Path
) -> None:
    customer_id, customer_uri = fund(live_ledger, service, 50_000)
    provider_id, _ = fund(live_ledger, service)
    invoice = live_ledger.make_invoice(provider_id, 12_345, "job", 600).invoice or ""
    db = tmp_path / "payments.db"
    async with NwcWallet(customer_uri, timeout=5) as customer:
        spy = SpyWallet(customer)
        spy.fail_after = Crash()  # dies after the wallet paid, before the outcome is written
        with pytest.raises(Crash):
            await Payer(spy, PaymentLedger(db)).pay(
                JOB, "p", invoice, quote_msats=12_345, bid_msats=20_000
            )
    assert live_ledger.balance(customer_id) == 50_000 - 12_345
    async with NwcWallet(customer_uri, timeout=5) as customer:  # the restarted process
        spy2 = SpyWallet(customer)
        restarted = Payer(spy2, PaymentLedger(db))
        [rec] = await restarted.resolve_open()
        assert rec.state == "paid" and preimage_matches(rec.preimage, rec.payment_hash)
        again = await restarted.pay(JOB, "p", invoice, quote_msats=12_345, bid_msats=20_000)
        assert again.status == "paid" and again.repeated
        assert spy2.pay_calls == 0
    assert live_ledger.balance(customer_id) == 50_000 - 12_345
    assert live_ledger.balance(provider_id) == 12_345
