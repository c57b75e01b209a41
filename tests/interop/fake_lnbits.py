"""A fake LNbits wallet API on 127.0.0.1, backed by our SQLite Lightning ledger.

A priced nostrdvm DVM makes its invoices through LNbits (or a Lightning address) over HTTP and
answers nothing without one. This serves exactly the two LNbits calls nostrdvm 1.1.8 makes for
that (``nostr_dvm/utils/zap_utils.py``), for one ledger account, with LNbits' request and answer
shapes:

- ``POST /api/v1/payments`` ``{"out": false, "amount": <sats>, "memo": ...}`` with the wallet's
  invoice key in ``X-API-Key`` (``create_bolt11_ln_bits``): a ledger invoice; answers
  ``{"payment_hash", "payment_request", "checking_id"}``;
- ``GET /api/v1/payments/<payment_hash>`` (``check_bolt11_ln_bits_is_paid``, polled every second):
  ``{"paid": bool, "status": ...}`` as the ledger has it.

Paying out (``"out": true``, nostrdvm's refunds with an admin key) is not served: the DVM here has
no admin key, so nostrdvm never asks. Wrong keys get LNbits' 401; unknown hashes its 404.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aiohttp import web

from client.nostr.errors import InvoiceNotFound
from relay_mock.lightning.ledger import Ledger


@dataclass
class FakeLnbits:
    """``async with FakeLnbits(ledger, account) as lnbits``: ``lnbits.url`` and
    ``lnbits.invoice_key`` are what a DVM's LNBITS_URL / LNBITS_INVOICE_KEY take. ``invoices``
    lists the payment hashes made, ``polls`` how often each was checked."""

    ledger: Ledger
    account_id: int
    invoice_key: str = field(default_factory=lambda: secrets.token_hex(16))
    invoices: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeLnbits:
        app = web.Application()
        app.router.add_post("/api/v1/payments", self._create)
        app.router.add_get("/api/v1/payments/{payment_hash}", self._check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        return secrets.compare_digest(request.headers.get("X-API-Key", ""), self.invoice_key)

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"detail": "Invalid invoice key."}, status=401)
        body = await request.json()
        if body.get("out") is not False:
            return web.json_response({"detail": "paying out is not served here"}, status=403)
        sats = body.get("amount")
        if isinstance(sats, bool) or not isinstance(sats, int) or sats <= 0:
            return web.json_response({"detail": "amount must be a positive integer"}, status=400)
        memo = body.get("memo") if isinstance(body.get("memo"), str) else ""
        tx = self.ledger.make_invoice(self.account_id, sats * 1000, memo)
        self.invoices.append(tx.payment_hash)
        return web.json_response(
            {
                "payment_hash": tx.payment_hash,
                "payment_request": tx.invoice,
                "checking_id": tx.payment_hash,
            },
            status=201,
        )

    async def _check(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"detail": "Invalid invoice key."}, status=401)
        payment_hash = request.match_info["payment_hash"]
        self.polls[payment_hash] = self.polls.get(payment_hash, 0) + 1
        try:
            tx = self.ledger.lookup(self.account_id, payment_hash)
        except InvoiceNotFound:
            return web.json_response({"detail": "Payment does not exist."}, status=404)
        status = "success" if tx.settled else ("failed" if tx.state == "expired" else "pending")
        return web.json_response({"paid": tx.settled, "status": status, "preimage": None})


__all__ = ["FakeLnbits"]
