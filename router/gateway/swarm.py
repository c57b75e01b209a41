"""The swarm behind the gateway: a ``SwarmBackend`` over a ``SwarmClient`` built from the config,
connected when the gateway starts and closed when it stops.

Requests name swarm models ``swarm/<model>`` (the backend strips the prefix); the gateway turns
a request's ``quorum``, ``bid_sats`` (per provider) and ``comparator`` into the
:class:`~router.request.SwarmTerms` the backend reads: the quorum, the bid (``bid_msats``), the
payment cap (``max_sats = quorum * bid_sats``) and the request's hold on the spend book. With
``nwc_uri`` the agreeing providers are paid
through that wallet, every payment recorded in ``payment_ledger`` (so a restart never pays twice).
With ``prepay`` it also pays providers that ask to be paid before they work, within the bid.

When the gateway's ``state.url`` is PostgreSQL, the swarm client's payment ledger and reputation
ledger live there too, shared by every gateway of the fleet: an invoice one gateway recorded is
never paid by another, and every gateway's outcomes count in one reputation per provider.

With ``judge`` (``swarm.judge``: a backend and model of the gateway's own) the ``auto`` and
``judge`` comparators ask that model whether two paragraph answers make the same claims
(:class:`RouterJudge`; docs/quorum.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path
from typing import Any

from client.customer.agreement.judge import judge_messages, judge_verdict
from client.customer.prepay import PrepayPolicy
from client.customer.reputation import ReputationLedger
from client.customer.swarm import SwarmClient
from client.nostr.keys import Keys
from client.storage import is_postgres_url

from ..backends.base import LmBackend
from ..backends.config import SwarmJudgeSettings
from ..backends.swarm import SwarmBackend
from ..request import LmRequest, Sampling
from ..types import Message
from .adapters import Served
from .config import SWARM_PREFIX, SwarmBackendConfig

log = logging.getLogger("router.gateway.swarm")


class RouterJudge:
    """``judge(question, a, b) -> P(same claims)`` from a backend the gateway serves
    (``swarm.judge``): the judge's messages go to ``backend`` for ``model`` on the gateway's
    event loop, and the calling thread waits for the verdict (the swarm client compares on a
    worker thread when its comparator asks a judge). Called on the loop's own thread it
    raises instead, as it would stall every request. Usable once connected: the gateway's
    builder gives it the backend (:func:`connect_judges`), ``ServedSwarm.open`` the loop."""

    def __init__(self, settings: SwarmJudgeSettings) -> None:
        self.settings = settings
        self.backend: LmBackend | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, question: str, a: str, b: str) -> float:
        backend, loop = self.backend, self.loop
        if backend is None or loop is None:
            raise RuntimeError("the swarm's judge is not connected")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("a judge call would block the gateway's event loop")
        future = asyncio.run_coroutine_threadsafe(self._ask(backend, question, a, b), loop)
        try:
            return future.result(self.settings.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _ask(self, backend: LmBackend, question: str, a: str, b: str) -> float:
        messages: list[Message] = [
            {"role": m["role"], "content": m["content"]} for m in judge_messages(question, a, b)
        ]
        request = LmRequest(
            model=self.settings.model,
            prompt=messages,
            max_tokens=4,
            sampling=Sampling(temperature=0.0),
        )
        response = await backend.send(request)
        return judge_verdict(response.text)


def connect_judges(backends: list[Served]) -> None:
    """Give each swarm's judge the backend its config names (the config check made sure it
    exists and is not a swarm)."""
    by_name = {b.name: b for b in backends}
    for b in backends:
        judge = b.judge if isinstance(b, ServedSwarm) else None
        if judge is not None:
            judge.backend = by_name[judge.settings.backend]


class ServedSwarm(Served):
    """A swarm backend: lists ``swarm/<model>`` for the configured models and owns the client
    (and wallet) lifecycle."""

    def __init__(
        self,
        inner: SwarmBackend,
        client: SwarmClient,
        models: list[str],
        *,
        closers: list[Any] | None = None,
        network: str = "auto",
        judge: RouterJudge | None = None,
    ) -> None:
        super().__init__(inner)
        self.client = client
        self.network = network
        self.judge = judge
        self.listed = [SWARM_PREFIX + m for m in models]
        self._closers = closers or []
        self._open = False

    @property
    def swarm(self) -> SwarmBackend:
        assert isinstance(self.inner, SwarmBackend)
        return self.inner

    def supported_models(self) -> list[str]:
        return list(self.listed)

    async def refresh_models(self) -> list[str]:
        return self.supported_models()

    async def open(self) -> None:
        if self.judge is not None:
            self.judge.loop = asyncio.get_running_loop()
        if not self._open:
            await self.client.__aenter__()
            self._open = True
            payer = getattr(self.client, "payer", None)
            if payer is not None:
                await self._set_network(payer)

    async def _set_network(self, payer: Any) -> None:
        """Invoices are checked against the network the wallet pays on: ``swarm.network``, or
        (``auto``) what the wallet's get_info says, else regtest with a warning."""
        from client.wallet.network import wallet_network

        network = self.network
        if network == "auto":
            found = await wallet_network(payer.wallet)
            if found is None:
                log.warning(
                    "the swarm's wallet did not say its network: paying only regtest invoices "
                    "(set swarm.network to bitcoin for a mainnet wallet)"
                )
                found = "regtest"
            network = found
        payer.guard.network = network
        log.info("swarm payments: invoices on %s", network)

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self.client.close()
        for c in self._closers:
            result = c()
            if hasattr(result, "__await__"):
                await result


def make_swarm_backend(cfg: SwarmBackendConfig, *, state: str | None = None) -> ServedSwarm:
    """The swarm backend for one config entry (not connected yet: see ServedSwarm.open).
    ``state``: the gateway's state store (``state.url``); on PostgreSQL it also holds the swarm
    client's payment ledger (unless ``payment_ledger`` names another) and reputation ledger."""
    keys = Keys.from_secret(cfg.secret_key) if cfg.secret_key else Keys.generate()
    shared = state if state is not None and is_postgres_url(state) else None
    closers: list[Any] = []
    wallet = None
    if cfg.nwc_uri:
        from client.wallet import NwcWallet

        wallet = NwcWallet(cfg.nwc_uri, timeout=cfg.wallet_timeout_s)
        closers.append(wallet.close)
    ledger: str | Path | None = shared
    if cfg.payment_ledger is not None:
        if is_postgres_url(cfg.payment_ledger):
            ledger = cfg.payment_ledger
        else:
            ledger = Path(cfg.payment_ledger).expanduser()
            ledger.parent.mkdir(parents=True, exist_ok=True)
            if shared is not None:
                log.warning(
                    "swarm %s: payment_ledger is a file while state.url is PostgreSQL: this "
                    "gateway's payments are recorded apart from the other gateways'",
                    cfg.name,
                )
    reputation = None
    if shared is not None:
        reputation = ReputationLedger(shared, customer=keys.public_key)
        closers.append(reputation.close)
    # With a wallet the client pays the agreeing providers itself, guarded and recorded in the
    # payment ledger (payments a crash left open are settled when it connects).
    client = SwarmClient(keys, cfg.relays, wallet, payments_db=ledger, reputation=reputation)
    if client.payer is not None:
        closers.append(client.payer.ledger.close)
    judge, bounds = None, None
    if cfg.judge is not None:
        judge = RouterJudge(cfg.judge)
        j = cfg.judge
        bounds = {"threshold": j.threshold, "max_calls": j.max_calls, "timeout_s": j.timeout_s}
    # The gateway keeps the swarm's budget in its durable spend book (account "swarm:NAME"),
    # so the backend's own in-memory budget is off; its limits still bind every request.
    backend = SwarmBackend(
        client,
        name=cfg.backend_name,
        quorum=cfg.quorum,
        max_sats=cfg.bid_sats * cfg.quorum,
        timeout_s=cfg.job_timeout_s,
        budget_sats=None,
        prefix=SWARM_PREFIX,
        max_quorum=cfg.max_quorum,
        max_bid_msats=cfg.bid_limit_sats * 1000,
        bid_msats=cfg.bid_sats * 1000,
        prepay=PrepayPolicy() if cfg.prepay else None,  # opt-in pay-before-work, every job
        judge=judge,
        judge_options=bounds,
    )
    return ServedSwarm(
        backend, client, cfg.models, closers=closers, network=cfg.network, judge=judge
    )
