"""`NwcWallet`: a NIP-47 (Nostr Wallet Connect) client implementing :class:`Wallet`.

Works with any NIP-47 wallet service: it reads the wallet's info event (kind 13194) for methods
and encryption, speaks NIP-44 v2 (NIP-04 when that is all the wallet offers), subscribes for the
response (kind 23195) before it publishes the request (kind 23194), maps NIP-47 error codes to
typed errors, and gives up after ``timeout`` seconds with :class:`WalletTimeout` (or
:class:`WalletUnavailable` when no relay is connected): the outcome of that request is then
unknown, and :class:`~client.wallet.payments.Payer` resolves it with ``lookup_invoice``.

Each request carries an ``expiration`` tag (its deadline), so a conforming wallet ignores a
request that arrives after the client has given up on it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from client.net.pool import RelayPool
from client.nostr.errors import (
    PublishError,
    RelayError,
    WalletError,
    WalletTimeout,
    WalletUnavailable,
)
from client.nostr.filter import Filter

from . import nip47
from .interface import Transaction, Wallet

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


class NwcWallet(Wallet):
    """A wallet reached over Nostr. Use ``async with NwcWallet(uri) as w`` (or it connects on first
    use; call :meth:`close` when done). ``pool``: share an open RelayPool for the URI's relays."""

    def __init__(
        self,
        connection_uri: str | nip47.NwcUri,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        info_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        pool: RelayPool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.uri = (
            connection_uri
            if isinstance(connection_uri, nip47.NwcUri)
            else nip47.NwcUri.parse(connection_uri)
        )
        self.timeout = timeout
        self.info_timeout = info_timeout
        self._keys = self.uri.client_keys
        self._clock = clock
        self._own_pool = pool is None
        self._pool = pool or RelayPool(self.uri.relays, connect_timeout=connect_timeout)
        self._started = False
        self._start_lock = asyncio.Lock()
        self.info: nip47.WalletInfo | None = None
        self.encryption: str = nip47.NIP04

    @property
    def wallet_pubkey(self) -> str:
        return self.uri.wallet_pubkey

    @property
    def client_pubkey(self) -> str:
        return self._keys.public_key

    # --- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> NwcWallet:
        """Connect to the relays and read the wallet's info event (idempotent)."""
        async with self._start_lock:
            if self._started:
                return self
            if self._own_pool:
                await self._pool.start()
            self.info = await self._fetch_info()
            self.encryption = nip47.choose_encryption(self.info)
            self._started = True
            log.debug(
                "NWC wallet %s: encryption %s, methods %s",
                self.wallet_pubkey[:12],
                self.encryption,
                sorted(self.info.methods) if self.info else "unknown (no info event)",
            )
        return self

    async def close(self) -> None:
        if self._own_pool:
            await self._pool.close()
        self._started = False

    async def __aenter__(self) -> NwcWallet:
        return await self.connect()

    async def _fetch_info(self) -> nip47.WalletInfo | None:
        flt = Filter(kinds=[nip47.INFO_KIND], authors=[self.wallet_pubkey], limit=1)
        newest = None
        sub = self._pool.subscribe(flt)
        try:
            await asyncio.wait_for(sub.wait_eose(), self.info_timeout)
        except TimeoutError:
            log.warning("NWC: no EOSE for the info event within %ss", self.info_timeout)
        finally:
            sub.close()
        while (event := sub.get_nowait()) is not None:
            if newest is None or event.created_at > newest.created_at:
                newest = event
        if newest is None:
            log.info("NWC wallet %s has no info event; assuming NIP-04", self.wallet_pubkey[:12])
            return None
        return nip47.parse_info_event(newest)

    # --- one request -------------------------------------------------------------------------

    async def request(
        self, method: str, params: dict[str, Any], *, within: float | None = None
    ) -> dict[str, Any]:
        """Send one NIP-47 request and return its ``result`` (or raise the typed error).
        ``within``: seconds to wait for the answer (default: the wallet's ``timeout``)."""
        await self.connect()
        if self.info is not None and method not in self.info.methods:
            raise WalletError(f"wallet does not offer {method}", code="NOT_IMPLEMENTED")
        limit = self.timeout if within is None else within
        now = int(self._clock())
        req = nip47.build_request(
            self._keys,
            self.wallet_pubkey,
            method,
            params,
            scheme=self.encryption,
            created_at=now,
            expiration=now + math.ceil(limit) + 1,
        )
        # Match on author and `e` only: NIP-47's `p` on a response is a SHOULD, and Alby's
        # wallet service SDK leaves it out. Only our key can decrypt the answer anyway.
        flt = Filter(
            kinds=[nip47.RESPONSE_KIND],
            authors=[self.wallet_pubkey],
            tags={"e": [req.id]},
        )
        # Subscribe first: the response is ephemeral, a relay forwards it only to live listeners.
        sub = self._pool.subscribe(flt)
        try:
            async with asyncio.timeout(limit):
                await sub.wait_eose()
                try:
                    await self._pool.publish(req)
                except PublishError as exc:
                    raise WalletUnavailable(f"no relay took the {method} request: {exc}") from None
                async for event in sub:
                    try:
                        response = nip47.parse_response(
                            event, self._keys.secret_hex, self.wallet_pubkey, self.encryption
                        )
                    except WalletError as exc:  # unreadable: keep waiting for a real answer
                        log.warning("NWC: ignoring a bad response to %s: %s", method, exc)
                        continue
                    return response.raise_for_error()
        except TimeoutError:
            if not self._pool.connected_urls():
                raise WalletUnavailable(
                    f"{method}: no relay connected to the wallet after {limit:g}s; outcome unknown"
                ) from None
            raise WalletTimeout(
                f"{method}: the wallet did not answer within {limit:g}s; outcome unknown"
            ) from None
        except RelayError as exc:
            raise WalletUnavailable(
                f"{method}: relays went away ({exc}); outcome unknown"
            ) from None
        finally:
            sub.close()
        raise WalletUnavailable(f"{method}: subscription ended without an answer")

    # --- the Wallet interface ----------------------------------------------------------------

    async def pay_invoice(self, invoice: str, amount_msats: int | None = None) -> str:
        params: dict[str, Any] = {"invoice": invoice}
        if amount_msats is not None:
            params["amount"] = amount_msats
        result = await self.request("pay_invoice", params)
        preimage = result.get("preimage")
        if not isinstance(preimage, str) or not preimage:
            raise WalletError("wallet answered pay_invoice without a preimage")
        return preimage.lower()

    async def make_invoice(
        self, msats: int, description: str = "", expiry: int | None = None
    ) -> str:
        tx = await self.make_invoice_tx(msats, description, expiry)
        if not tx.invoice:
            raise WalletError("wallet answered make_invoice without an invoice")
        return tx.invoice

    async def make_invoice_tx(
        self, msats: int, description: str = "", expiry: int | None = None
    ) -> Transaction:
        params: dict[str, Any] = {"amount": msats, "description": description}
        if expiry is not None:
            params["expiry"] = expiry
        return _transaction(await self.request("make_invoice", params), "make_invoice")

    async def lookup_invoice(self, payment_hash: str) -> Transaction:
        result = await self.request("lookup_invoice", {"payment_hash": payment_hash})
        return _transaction(result, "lookup_invoice")

    async def get_balance(self) -> int:
        balance = (await self.request("get_balance", {})).get("balance")
        if isinstance(balance, bool) or not isinstance(balance, int) or balance < 0:
            raise WalletError(f"wallet answered get_balance with {balance!r}")
        return balance

    async def get_info(self) -> dict[str, Any]:
        return await self.request("get_info", {})

    async def list_transactions(
        self, *, limit: int | None = None, unpaid: bool = False, type: str | None = None
    ) -> list[Transaction]:
        params: dict[str, Any] = {"unpaid": unpaid}
        if limit is not None:
            params["limit"] = limit
        if type is not None:
            params["type"] = type
        items = (await self.request("list_transactions", params)).get("transactions")
        if not isinstance(items, list):
            raise WalletError("wallet answered list_transactions without a list")
        return [_transaction(t, "list_transactions") for t in items]


def _transaction(result: object, method: str) -> Transaction:
    try:
        return Transaction.model_validate(result)
    except ValidationError as exc:
        raise WalletError(f"wallet answered {method} with a malformed transaction: {exc}") from None
