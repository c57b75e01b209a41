"""Our NIP-47 client (`NwcWallet`) against Alby's wallet service (`@getalby/sdk`
NWCWalletService), over relay_mock on 127.0.0.1.

Alby's service answers with an ``e`` tag and no ``p`` tag (NIP-47 says SHOULD), so a client that
subscribes with ``#p`` never hears it: every call timed out before `NwcWallet` matched on author
and ``e`` only.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from client.net.pool import RelayPool
from client.nostr.errors import InvoiceNotFound
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from client.wallet import NwcWallet, nip47
from relay_mock import Relay
from tests.interop.peers import require_js, run_node

PACKAGE = "@getalby/sdk"


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_js(PACKAGE)


async def test_nwc_wallet_is_answered_by_alby_wallet_service(relay: Relay) -> None:
    wallet_keys, client_keys = Keys.generate(), Keys.generate()
    async with run_node(
        "alby_wallet_service.mjs", relay.url, wallet_keys.secret_hex, client_keys.public_key
    ) as alby:
        await alby.expect("ready")
        uri = nip47.NwcUri(wallet_keys.public_key, (relay.url,), client_keys.secret_hex, None)
        async with NwcWallet(uri, timeout=10) as wallet:
            # Its info event offers "nip04 nip44_v2": we pick NIP-44, and it answers in kind.
            assert wallet.encryption == nip47.NIP44
            assert await wallet.get_balance() == 21_000_000
            tx = await wallet.make_invoice_tx(5_000, "job 1234")
            assert (tx.invoice, tx.amount, tx.type) == ("lnbcrt1fakeinvoice", 5_000, "incoming")
            assert (await wallet.lookup_invoice(tx.payment_hash)).payment_hash == tx.payment_hash
            with pytest.raises(InvoiceNotFound):
                await wallet.lookup_invoice("ef" * 32)
            assert await wallet.pay_invoice("lnbcrt1fakeinvoice") == "cd" * 32
        methods = [(await alby.expect("request"))["method"] for _ in range(5)]
    assert methods == [
        "get_balance",
        "make_invoice",
        "lookup_invoice",
        "lookup_invoice",
        "pay_invoice",
    ]


async def test_alby_wallet_service_responses_carry_no_p_tag(relay: Relay) -> None:
    """Why the fix is needed: the response names the request (``e``) but not the client."""
    wallet_keys, client_keys = Keys.generate(), Keys.generate()
    async with run_node(
        "alby_wallet_service.mjs", relay.url, wallet_keys.secret_hex, client_keys.public_key
    ) as alby:
        await alby.expect("ready")
        async with RelayPool([relay.url]) as pool:
            sub = pool.subscribe(
                Filter(kinds=[nip47.RESPONSE_KIND], authors=[wallet_keys.public_key])
            )
            await sub.wait_eose()
            request = nip47.build_request(
                client_keys,
                wallet_keys.public_key,
                "get_balance",
                {},
                scheme=nip47.NIP44,
                created_at=int(time.time()),
            )
            await pool.publish(request)
            response = await asyncio.wait_for(anext(aiter(sub)), 10)
    assert response.tag_value("e") == request.id
    assert response.tag_value("p") is None
