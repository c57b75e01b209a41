"""The local NIP-47 wallet service: answers Nostr Wallet Connect requests over any relay for the
accounts of a :class:`~relay_mock.lightning.ledger.Ledger`.

One service key (kept in the ledger file) for every account; each connection has its own client
key, which the ledger maps to an account (NIP-47: the service stores only the client's public
key). Any standard NWC client works: NIP-44 v2 and NIP-04 requests are both answered, in the
scheme they came in.

:class:`RequestHandler` is the whole protocol side (event in, response event out, ledger calls in
between) and is tested without sockets; :class:`WalletService` is the thin relay loop around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from client.net.pool import RelayPool
from client.nostr.errors import InvoiceError, NostrSwarmError, PublishError, RelayError, WalletError
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.wallet import nip47
from relay_mock.lightning.ledger import Ledger

log = logging.getLogger(__name__)

METHODS = (
    "pay_invoice",
    "make_invoice",
    "lookup_invoice",
    "get_balance",
    "get_info",
    "list_transactions",
)
REPLAY_CACHE = 10_000
CLOCK_SKEW_S = 600


class RequestHandler:
    """Turns one kind-23194 request event into its kind-23195 response (or None to stay silent)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        encryptions: Iterable[str] = nip47.SUPPORTED_ENCRYPTIONS,
        clock: Callable[[], float] = time.time,
        alias: str = "nostr-swarm local ledger",
    ) -> None:
        self.ledger = ledger
        self.keys = ledger.service_keys
        self.encryptions = tuple(encryptions)
        self.alias = alias
        self._clock = clock
        # Answers by request id: the same request seen again (several relays) gets the same
        # answer without running twice.
        self._answered: OrderedDict[str, Event] = OrderedDict()

    @property
    def pubkey(self) -> str:
        return self.keys.public_key

    def info_event(self) -> Event:
        return nip47.build_info_event(
            self.keys, METHODS, encryptions=self.encryptions, created_at=int(self._clock())
        )

    def handle(self, event: Event) -> Event | None:
        if event.kind != nip47.REQUEST_KIND or event.tag_value("p") != self.pubkey:
            return None
        if event.id in self._answered:
            return self._answered[event.id]
        now = int(self._clock())
        expiration = event.tag_value("expiration")
        if expiration is not None and expiration.isdigit() and int(expiration) < now:
            log.info("ignoring expired NWC request %s", event.id[:12])
            return None
        scheme = nip47.request_scheme(event)
        reply_scheme = scheme if scheme in self.encryptions else nip47.NIP04
        method = ""
        try:
            if scheme not in self.encryptions:
                raise WalletError(
                    f"encryption {scheme!r} not offered (we offer {' '.join(self.encryptions)})",
                    code="UNSUPPORTED_ENCRYPTION",
                )
            request, scheme = nip47.parse_request(event, self.keys.secret_hex)
            method = request.method
            account = self.ledger.account_for_client(event.pubkey)
            if account is None:
                raise WalletError("no wallet is connected to this key", code="UNAUTHORIZED")
            result = self._dispatch(account, request)
            response = nip47.build_response(
                self.keys,
                event,
                scheme=reply_scheme,
                result_type=method,
                result=result,
                created_at=now,
            )
        except NostrSwarmError as exc:
            error = exc if isinstance(exc, WalletError) else WalletError(str(exc), code="OTHER")
            if isinstance(exc, InvoiceError) and method == "pay_invoice":
                error = WalletError(f"cannot pay: {exc}", code="PAYMENT_FAILED")
            response = nip47.build_response(
                self.keys,
                event,
                scheme=reply_scheme,
                result_type=method,
                error=error,
                created_at=now,
            )
        except Exception as exc:  # a bug must not take the service down; the client hears INTERNAL
            log.exception("NWC request %s failed", event.id[:12])
            error = WalletError(f"internal error: {type(exc).__name__}", code="INTERNAL")
            response = nip47.build_response(
                self.keys,
                event,
                scheme=reply_scheme,
                result_type=method,
                error=error,
                created_at=now,
            )
        self._answered[event.id] = response
        if len(self._answered) > REPLAY_CACHE:
            self._answered.popitem(last=False)
        return response

    def _dispatch(self, account: int, req: nip47.Request) -> dict[str, Any]:
        p = req.params
        led = self.ledger
        if req.method == "pay_invoice":
            invoice = _param(p, "invoice", str)
            amount = _opt_int(p, "amount")
            paid = led.pay_invoice(account, invoice, amount)
            return {"preimage": paid.preimage, "fees_paid": paid.fees_msats}
        if req.method == "make_invoice":
            amount = _opt_int(p, "amount")
            if amount is None:
                raise WalletError("make_invoice needs an amount (msats)", code="OTHER")
            desc = p.get("description") or ""
            desc_hash = p.get("description_hash") or None
            if not isinstance(desc, str) or (
                desc_hash is not None and not isinstance(desc_hash, str)
            ):
                raise WalletError("description and description_hash must be strings", code="OTHER")
            tx = led.make_invoice(
                account, amount, desc, _opt_int(p, "expiry"), description_hash=desc_hash
            )
            return tx.to_nip47()
        if req.method == "lookup_invoice":
            payment_hash = p.get("payment_hash")
            if payment_hash is None and isinstance(p.get("invoice"), str):
                from client.wallet.invoices import decode_invoice

                payment_hash = decode_invoice(p["invoice"]).payment_hash
            if not isinstance(payment_hash, str):
                raise WalletError("lookup_invoice needs payment_hash or invoice", code="OTHER")
            return led.lookup(account, payment_hash.lower()).to_nip47()
        if req.method == "get_balance":
            return {"balance": led.balance(account)}
        if req.method == "get_info":
            return {
                "alias": self.alias,
                "color": "#f7931a",
                "pubkey": led.node_pubkey,
                "network": led.network,
                "block_height": 0,
                "block_hash": "00" * 32,
                "methods": list(METHODS),
                "notifications": [],
            }
        if req.method == "list_transactions":
            txs = led.transactions(
                account,
                since=_opt_int(p, "from") or 0,
                until=_opt_int(p, "until"),
                limit=_opt_int(p, "limit"),
                offset=_opt_int(p, "offset") or 0,
                unpaid=bool(p.get("unpaid", False)),
                type=p.get("type") if p.get("type") in ("incoming", "outgoing") else None,
            )
            return {"transactions": [t.to_nip47() for t in txs]}
        raise WalletError(f"method {req.method!r} is not implemented", code="NOT_IMPLEMENTED")


def _param(params: dict[str, Any], name: str, kind: type) -> Any:
    value = params.get(name)
    if not isinstance(value, kind):
        raise WalletError(f"parameter {name!r} missing or not a {kind.__name__}", code="OTHER")
    return value


def _opt_int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WalletError(f"parameter {name!r} must be a non-negative integer", code="OTHER")
    return value


class WalletService:
    """Serves a ledger's accounts over NWC on ``relays``; an async context manager."""

    def __init__(
        self,
        ledger: Ledger,
        relays: Iterable[str],
        *,
        encryptions: Iterable[str] = nip47.SUPPORTED_ENCRYPTIONS,
        clock: Callable[[], float] = time.time,
        handler: RequestHandler | None = None,
        announce: bool = True,
    ) -> None:
        self.ledger = ledger
        self.announce = announce  # publish the kind-13194 info event (off: test legacy clients)
        self.relays = tuple(relays)
        self.handler = handler or RequestHandler(ledger, encryptions=encryptions, clock=clock)
        self._clock = clock
        self._pool = RelayPool(self.relays)
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self.served = 0

    @property
    def pubkey(self) -> str:
        return self.handler.pubkey

    @property
    def pool(self) -> RelayPool:
        return self._pool

    def connection_uri(self, account_id: int, *, lud16: str | None = None) -> str:
        """A new connection (fresh client key) to ``account_id``, as a URI to hand to a client."""
        return connection_uri(self.ledger, account_id, self.relays, lud16=lud16)

    async def start(self) -> None:
        await self._pool.start()
        # Subscribe before announcing: a client that reads the info event may ask at once.
        # `since` keeps a relay that (wrongly) stores ephemeral requests from replaying old ones at
        # start-up, with room for clients whose clocks run behind.
        flt = Filter(
            kinds=[nip47.REQUEST_KIND],
            tags={"p": [self.pubkey]},
            since=int(self._clock()) - CLOCK_SKEW_S,
        )
        sub = self._pool.subscribe(flt)
        await sub.wait_eose()
        if self.announce:
            try:
                await self._pool.publish(self.handler.info_event())
            except PublishError as exc:
                log.warning("could not publish the NWC info event: %s", exc)
        self._task = asyncio.create_task(self._serve(sub), name="nwc-service")
        log.info("NWC wallet service %s on %s", self.pubkey[:12], ", ".join(self.relays))

    async def _serve(self, sub: Any) -> None:
        try:
            async for event in sub:
                response = self.handler.handle(event)
                if response is None:
                    continue
                self.served += 1
                task = asyncio.create_task(self._publish(response))
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)
        except RelayError as exc:
            log.error("NWC service subscription ended: %s", exc)
        finally:
            sub.close()

    async def _publish(self, response: Event) -> None:
        try:
            await self._pool.publish(response)
        except PublishError as exc:
            log.warning("could not deliver NWC response %s: %s", response.id[:12], exc)

    async def serve_forever(self) -> None:
        if self._task is None:
            await self.start()
        assert self._task is not None
        await self._task

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        await self._pool.close()

    async def __aenter__(self) -> WalletService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def connection_uri(
    ledger: Ledger, account_id: int, relays: Iterable[str], *, lud16: str | None = None
) -> str:
    """Register a fresh client key for ``account_id`` and return its NWC URI (works offline: the
    service, wherever it runs on this ledger file, will answer it)."""
    keys = ledger.new_connection(account_id)
    return nip47.NwcUri(
        ledger.service_keys.public_key, tuple(relays), keys.secret_hex, lud16
    ).to_string()
