"""ProviderNode: sells completions from a local backend (or an LmRouter over several) on Nostr.

::

    async with ProviderNode(load_config("provider.toml"), backend, wallet) as node:
        await node.serve_forever()          # or do other things; leaving the block shuts down

    # or, without a file:
    async with ProviderNode(keys, ["ws://127.0.0.1:7777"], backend, pricing=prices,
                            payment="after", wallet=wallet) as node:
        ...

Per job request (kind 5050) seen on any relay: screen it (:mod:`provider.intake`: addressed to us,
fresh, parseable, decryptable, known model, within the caps, bid high enough), dedupe it (the
store's claim, so a job seen on another relay, after a restart or by another node of the fleet
is never worked twice), check the customer's rate, and hand it to the job book
(:mod:`provider.jobs`), which decides everything after that: run it now, queue it, refuse it as
busy, ask for payment first, publish its result or commitment, end it. This module is the I/O
around those decisions: it carries out the book's effects (the relay pool, the backend, the
wallet, the store, the timers) and reports each outcome back to the book as an event. Nothing a
customer sends can stop the node.

Copy resistance (``docs/security.md``): a job asking ``["param", "sealed", "nip44"]`` gets its
result sealed to the customer; one asking ``["param", "commit", "sha256"]`` gets a commitment
(``processing`` feedback with ``["commitment", <hex>]``) and its result is held, off the wire and
off the backend's slots, until the customer's reveal call (kind 7001) names this node, or
``reveal_timeout_s`` / the job's expiration passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack, overload

from client.dvm.nip90 import (
    KIND_DELETION,
    KIND_TEXT_GENERATION,
    build_feedback,
    parse_request,
)
from client.dvm.sealing import KIND_REVEAL_CALL, build_commitment, new_salt, parse_reveal_call
from client.net.pool import RelayPool, Subscription
from client.nostr.errors import (
    InvoiceError,
    JobRejected,
    NostrSwarmError,
    PublishError,
    RelayError,
    WalletError,
)
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from client.storage import StateUnavailable
from client.wallet import Wallet, decode_invoice
from provider.kinds import check_kinds, prompt_for
from router.backends.base import LmBackend
from router.request import Sampling

from . import jobs
from .announce import Announcer, Offer, PaymentPolicy
from .config import NodeOptions, ProviderConfig, node_config
from .errors import ConfigError, StoreError
from .intake import Accept, IntakePolicy, ModelCatalog, Refuse, evaluate, screen
from .jobs import JobBook, JobBookError, ProviderStats
from .limits import CustomerRateLimiter, Limits
from .pricing import Pricing
from .store import Earnings, JobRow, JobStore

log = logging.getLogger("provider.node")

Clock = Callable[[], float]
#: Told each batch of job book effects once the node has carried them out (a live view: the
#: dashboard's provider/dashboard.py ``NodeWatch``). It must be quick; an error in it is logged.
JobObserver = Callable[[Sequence[jobs.Effect]], None]
PAYMENT_POLICIES = ("free", "after", "before")
PRUNE_INTERVAL_S = 3600.0
ANNOUNCE_RETRY_S = 15.0
# A backend that does not answer at start is asked again after 1 s, 2 s, 4 s, ... at most 60 s.
BACKEND_RETRY_S = 1.0
BACKEND_RETRY_MAX_S = 60.0
# Long enough for the embedded model to load on a slow machine; a dead server fails at once.
BACKEND_CHECK_TIMEOUT_S = 30.0

# Waits below use asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a
# cancellation that arrives as the awaited thing completes, and a loop that misses its
# cancellation keeps a node from shutting down.


class ProviderNode:
    """A provider on the swarm. An async context manager: entering connects, subscribes and
    announces; leaving shuts down gracefully (see :meth:`close`).

    ``ProviderNode(config, backend, wallet=None)`` runs a validated
    :class:`~provider.config.ProviderConfig` (its ``backends`` are not used: ``backend`` is the
    model); ``ProviderNode(keys, relays, backend, *, wallet=None, **options)`` builds that config
    from the key, the relays and :class:`~provider.config.NodeOptions` (``pricing``,
    ``payment``, ``limits``, ``store``, ...); an unknown option is a ``TypeError``. Test hooks,
    in both forms: ``clock`` (unix seconds) and ``store`` (an open :class:`JobStore`)."""

    @overload
    def __init__(
        self,
        config: ProviderConfig,
        backend: LmBackend,
        wallet: Wallet | None = None,
        *,
        clock: Clock = time.time,
        store: JobStore | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        config: Keys,
        relays: Sequence[str],
        backend: LmBackend,
        *,
        wallet: Wallet | None = None,
        clock: Clock = time.time,
        store: JobStore | str | Path = ":memory:",
        **options: Unpack[NodeOptions],
    ) -> None: ...

    def __init__(self, config: ProviderConfig | Keys, *args: Any, **kwargs: Any) -> None:
        if isinstance(config, ProviderConfig):
            self._setup(*_config_form(config, *args, **kwargs))
        elif isinstance(config, Keys):
            self._setup(*_keys_form(config, *args, **kwargs))
        else:
            raise TypeError(
                "ProviderNode(config, backend, wallet) or ProviderNode(keys, relays, backend, "
                f"**options), not a {type(config).__name__} first"
            )

    def _setup(
        self,
        config: ProviderConfig,
        keys: Keys,
        backend: LmBackend,
        wallet: Wallet | None,
        clock: Clock,
        store: JobStore | None,
    ) -> None:
        payment = config.payment.policy
        if payment != "free" and wallet is None:
            raise ConfigError(f"payment {payment!r} needs a wallet to issue invoices")
        self.config = config
        self.keys = keys
        self.relays = list(config.node.relays)
        self.backend = backend
        self.wallet = wallet
        self.clock = clock
        self.pricing: Pricing = config.pricing
        node = config.node
        self._fixed_models = tuple(node.models) if node.models is not None else None
        #: The NIP-90 kinds served (provider/kinds.py): 5050, and 5000-5002 through templates.
        self.kinds = check_kinds(list(node.kinds))
        self.models: tuple[str, ...] = ()
        self.book = JobBook(
            provider=keys.public_key,
            payment=payment,
            limits=config.limits,
            pricing=self.pricing,
            wallet=wallet is not None,
            invoice_expiry_s=config.payment.invoice_expiry_s,
            reveal_timeout_s=node.reveal_timeout_s,
        )
        self._rate = CustomerRateLimiter(config.limits.rate_per_minute, config.limits.rate_burst)
        self._announcer = Announcer(node.heartbeat_s)
        self._work: dict[str, asyncio.Task[None]] = {}  # what is under way for each job
        self._stopped: set[asyncio.Task[None]] = set()  # cancelled, not finished yet
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._paid_signals: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._publishes: set[asyncio.Task[Any]] = set()
        self._offer_changed = asyncio.Event()
        self._closed = asyncio.Event()
        #: Set once shutdown has begun and no new job will be taken.
        self.intake_stopped = asyncio.Event()
        #: Set once the backend has answered a health check; nothing is announced before.
        self.backend_ready = asyncio.Event()
        self._closing = False
        self._commit_pending = False
        self._started = False
        self._pool: RelayPool | None = None
        self._sub: Subscription | None = None
        self._store_given = store
        self._store: JobStore | None = None
        self._policy: IntakePolicy | None = None
        self.started_at = 0.0
        #: See :data:`JobObserver`; None: nothing is told.
        self.observer: JobObserver | None = None

    # --- configuration, as read while serving ------------------------------------------------

    @property
    def payment(self) -> PaymentPolicy:
        return self.config.payment.policy

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def default_model(self) -> str | None:
        return self.config.node.default_model

    @property
    def stats(self) -> ProviderStats:
        return self.book.stats

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def public_key(self) -> str:
        return self.keys.public_key

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the node is not started")
        return self._store

    @property
    def pool(self) -> RelayPool:
        if self._pool is None:
            raise RuntimeError("the node is not started")
        return self._pool

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        node = self.config.node
        self.started_at = self.clock()
        store = self._store_given
        self._store = (
            store
            if store is not None
            else JobStore(
                self.config.store_target, clock=self.clock, lease_s=self.config.state.lease_s
            )
        )
        # One commit per event-loop turn, however many jobs the turn touched.
        self._store.on_write = self._schedule_commit
        pruned = self._store.prune(node.retention_days * 86400)
        if pruned:
            log.info("forgot %d jobs older than %g days", pruned, node.retention_days)
        await self._load_models()
        if await self._backend_answers() and self._has_models():
            self.backend_ready.set()
        elif await self._backend_answers():
            log.warning(
                "the backend %r has none of the configured models (%s): announcing nothing "
                "until it does (retrying in the background)",
                self.backend,
                ", ".join(self._fixed_models or ()),
            )
        else:
            log.warning(
                "the backend %r does not answer: not announcing %s until it does "
                "(retrying in the background)",
                self.backend,
                ", ".join(self.models) or "any model",
            )
        self._rebuild_policy()
        self._pool = RelayPool(
            self.relays,
            keys=self.keys,
            connect_timeout=node.connect_timeout,
            publish_timeout=node.publish_timeout,
        )
        await self._pool.start()
        self._subscribe()
        self._spawn(self._intake_loop(), "intake")
        if not self.backend_ready.is_set():
            self._spawn(self._watch_backend(), "backend")
        if node.announce:
            self._spawn(self._announce_when_ready(), "announce")
        if self.wallet is not None and self.payment != "free":
            self._spawn(self._settle_loop(), "settle")
        self._spawn(self._prune_loop(), "prune")
        if self.store.shared:
            # Other nodes' open jobs are theirs while their leases hold: only orphans are ours.
            self._spawn(self._lease_loop(), "lease")
        else:
            self._resume()
        log.info(
            "provider %s %s %s on %s (payment %s)",
            self.keys.npub,
            "serving" if self.backend_ready.is_set() else "waiting for its backend to serve",
            ", ".join(self.models) or "any model",
            ", ".join(self.relays),
            self.payment,
        )

    async def __aenter__(self) -> ProviderNode:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Return once the node has been closed (from another task or a signal handler)."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop intake; fail queued and unpaid jobs with feedback; give running jobs
        ``limits.shutdown_grace`` seconds, then fail them too; say offline; close relays."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            await self._shutdown()
        finally:
            self._closed.set()

    async def _shutdown(self) -> None:
        if self._sub is not None:
            self._sub.close()
        self.intake_stopped.set()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._store is not None:
            self._apply(self.book.close(self.clock()))
            await self._finish_running(self.limits.shutdown_grace)
            self._apply(self.book.end_grace(self.clock()))
            await asyncio.gather(*self._stopped, return_exceptions=True)
        node = self.config.node
        if self._pool is not None and node.announce and self._announcer.last_created_at:
            offline = self._announcer.next(self.keys, self._offer(), self.clock(), online=False)
            self._publish_soon(offline)
        pending = [*self._publishes, *self._work.values()]
        if pending:
            await asyncio.wait(pending, timeout=node.publish_timeout)
        for task in list(self._work.values()):  # results that never got out: given up
            task.cancel()
        await asyncio.gather(*self._work.values(), return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        if self._pool is not None:
            await self._pool.close()
        if self._store is not None:
            self._store.on_write = None
            self._commit()
            if self._store_given is None:
                self._store.close()

    async def _finish_running(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the jobs holding the backend's slots (and paid ones
        taking the slots they free)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            tasks = [self._work[i] for i in self.book.slot_holders() if i in self._work]
            remaining = deadline - loop.time()
            if not tasks or remaining <= 0:
                return
            await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    def _schedule_commit(self) -> None:
        if not self._commit_pending:
            self._commit_pending = True
            asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_pending = False
        if self._store is None:
            return
        try:
            self._store.commit()
        except sqlite3.Error as exc:  # a full disk must not stop the node; dedupe degrades
            log.error("job store commit failed: %s", exc)

    # --- configuration that may change while serving -----------------------------------------

    def set_pricing(self, pricing: Pricing) -> None:
        """New prices for jobs from now on; the announcement is re-published."""
        self.pricing = pricing
        self.book.set_pricing(pricing)
        self._rebuild_policy()
        self._offer_changed.set()

    def set_models(self, models: Sequence[str] | None) -> None:
        """Serve exactly ``models`` (None: whatever the backend says); re-announces."""
        self._fixed_models = tuple(models) if models is not None else None
        self._set_catalog(self._fixed_models or tuple(self.backend.supported_models()))

    def notify_paid(self, payment_hash: str) -> None:
        """A wallet notification (e.g. NIP-47 ``payment_received``): check that invoice now
        rather than at the next poll."""
        signal = self._paid_signals.get(payment_hash)
        if signal is not None:
            signal.set()

    def earnings(self) -> Earnings:
        return self.store.earnings()

    async def _load_models(self) -> None:
        if self._fixed_models is not None:
            self.models = self._fixed_models
            if getattr(self.backend, "missing_models", None) is not None:
                # A backend that can tell which configured models it really has (Ollama)
                # is asked, so a model that was never pulled is not offered.
                try:
                    async with asyncio.timeout(self.config.node.connect_timeout):
                        await self.backend.refresh_models()
                except (TimeoutError, NostrSwarmError, OSError):
                    return
                self.models = tuple(self._usable(self._fixed_models))
            return
        try:
            async with asyncio.timeout(self.config.node.connect_timeout):
                found = await self.backend.refresh_models()
        except (TimeoutError, NostrSwarmError, OSError) as exc:
            log.warning("could not list the backend's models (%s); using its configured list", exc)
            found = self.backend.supported_models()
        self.models = tuple(self._usable(found))

    def _has_models(self) -> bool:
        """False when models were configured and the backend has none of them."""
        return self._fixed_models is None or bool(self.models)

    def _usable(self, found: Sequence[str]) -> list[str]:
        """``found`` without the configured models the backend's server does not have (an
        Ollama model not pulled): those are never offered."""
        missing_fn = getattr(self.backend, "missing_models", None)
        missing = set(missing_fn()) if missing_fn is not None else set()
        for m in sorted(missing):
            log.warning(
                "the backend does not have model %s (for Ollama: ollama pull %s); not offered",
                m,
                m,
            )
        return [m for m in found if m not in missing]

    def _set_catalog(self, models: Sequence[str]) -> None:
        if tuple(models) != self.models:
            self.models = tuple(models)
            self._rebuild_policy()
            self._offer_changed.set()

    def _rebuild_policy(self) -> None:
        catalog = ModelCatalog(self.models, self.default_model, any_model=not self.models)
        self._policy = IntakePolicy(
            keys=self.keys,
            limits=self.limits,
            pricing=self.pricing,
            payment=self.payment,
            catalog=catalog,
            not_before=int(self.started_at) - self.config.node.clock_skew_s,
            kinds=self.kinds,
        )

    def _offer(self) -> Offer:
        node = self.config.node
        return Offer(
            models=self.models,
            pricing=self.pricing,
            payment=self.payment,
            max_tokens=self.limits.max_tokens,
            max_prompt_chars=self.limits.max_prompt_chars,
            heartbeat_s=node.heartbeat_s,
            name=node.name,
            about=node.about,
            picture=node.picture,
            lud16=node.lud16,
            default_model=self.default_model or (self.models[0] if self.models else None),
            d_tag=node.d_tag,
            weights=self._weights(),
            kinds=self.kinds,
        )

    def _weights(self) -> tuple[tuple[str, str, str], ...]:
        """The weights claims of the models offered, when the backend knows its files."""
        fn = getattr(self.backend, "weights", None)
        if fn is None:
            return ()
        try:
            claims = fn()
        except Exception as exc:  # a claim is optional: never lose the announcement for it
            log.debug("no weights claim: %s", exc)
            return ()
        return tuple(c for c in claims if c[0] in self.models)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"provider {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _subscribe(self) -> None:
        assert self._policy is not None
        since = self._policy.not_before
        self._sub = self.pool.subscribe(
            [
                Filter(kinds=list(self.kinds), since=since),
                # NIP-09 deletions of 5050 requests: customers cancelling (a quorum was reached).
                Filter(
                    kinds=[KIND_DELETION], tags={"k": [str(k) for k in self.kinds]}, since=since
                ),
                # Reveal calls (commit-reveal): all of them, so a node left out of a call learns
                # at once that its commitment did not count instead of holding until timeout.
                Filter(
                    kinds=[KIND_REVEAL_CALL], tags={"k": [str(KIND_TEXT_GENERATION)]}, since=since
                ),
            ]
        )

    async def _intake_loop(self) -> None:
        delay = 1.0
        while not self._closing:
            sub = self._sub
            assert sub is not None
            try:
                async for event in sub:
                    self._handle(event)
                    delay = 1.0
            except RelayError as exc:
                # Every relay ended the subscription: ask again after a pause. The store
                # catches jobs we see twice.
                log.warning("job subscription ended (%s); resubscribing in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                sub.close()
                self._subscribe()

    async def _backend_answers(self) -> bool:
        try:
            async with asyncio.timeout(BACKEND_CHECK_TIMEOUT_S):
                health: Any = await self.backend.health_check()
        except (TimeoutError, NostrSwarmError, OSError) as exc:
            log.debug("backend health check failed: %s", exc)
            return False
        # An LmRouter answers {backend: bool}: it can serve if any of its backends can.
        return any(health.values()) if isinstance(health, dict) else bool(health)

    async def _watch_backend(self) -> None:
        """Ask the backend again, backing off, until it answers; then serve what it lists."""
        delay = BACKEND_RETRY_S
        while True:
            await asyncio.sleep(delay)
            if await self._backend_answers():
                await self._load_models()
                if self._has_models():
                    break
            delay = min(delay * 2, BACKEND_RETRY_MAX_S)
        self._rebuild_policy()
        self.backend_ready.set()
        log.info("the backend answers now: serving %s", ", ".join(self.models) or "any model")

    async def _announce_when_ready(self) -> None:
        await self.backend_ready.wait()
        await self._announce_loop()

    async def _announce_loop(self) -> None:
        while True:
            offer = self._offer()
            wait: float = self.config.node.heartbeat_s
            if self._announcer.due(offer, self.clock()):
                event = self._announcer.next(self.keys, offer, self.clock())
                if not await self._publish(event):
                    self._announcer.forget()  # no relay took it: try again soon
                    wait = min(wait, ANNOUNCE_RETRY_S)
            self._offer_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._offer_changed.wait()
            if self._fixed_models is None and not self._offer_changed.is_set():
                # A heartbeat: pick up models added to or removed from the backend.
                with contextlib.suppress(TimeoutError, NostrSwarmError, OSError):
                    async with asyncio.timeout(self.config.node.connect_timeout):
                        found = await self.backend.refresh_models()
                    usable = self._usable(found) if found else []
                    if usable:
                        self._set_catalog(usable)

    async def _settle_loop(self) -> None:
        """Watch issued invoices until they are paid or expire (earnings, payment ``after``)."""
        while True:
            await asyncio.sleep(self.config.payment.settle_check_s)
            await self.check_invoices()

    async def _prune_loop(self) -> None:
        """Forget old finished jobs now and then, so weeks of service keep the store small."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            pruned = self.store.prune(self.config.node.retention_days * 86400)
            if pruned:
                log.info(
                    "forgot %d jobs older than %g days", pruned, self.config.node.retention_days
                )

    async def check_invoices(self, limit: int = 200) -> int:
        """Ask the wallet about unpaid invoices; returns how many were found paid."""
        if self.wallet is None:
            return 0
        found = 0
        for job_id, payment_hash in self.store.unpaid_invoices()[:limit]:
            try:
                tx = await self.wallet.lookup_invoice(payment_hash)
            except WalletError as exc:
                log.debug("lookup of invoice for job %s failed: %s", job_id[:12], exc)
                continue
            if tx.settled:
                self._apply([jobs.StorePaid(job_id)])
                found += 1
            elif tx.state in ("expired", "failed"):
                self.store.mark_expired(job_id)
        return found

    # --- publishing -------------------------------------------------------------------------

    async def _publish(self, event: Event) -> bool:
        try:
            await self.pool.publish(event)
            return True
        except (PublishError, RelayError) as exc:
            self.stats.publish_failures += 1
            log.warning("could not publish kind %d %s: %s", event.kind, event.id[:12], exc)
            return False

    def _publish_soon(self, event: Event) -> None:
        task = asyncio.create_task(self._publish(event), name=f"publish {event.id[:12]}")
        self._publishes.add(task)
        task.add_done_callback(self._publishes.discard)

    # --- intake -----------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        """One event from the subscription. Synchronous and quick; never raises."""
        try:
            if event.kind == KIND_DELETION:
                self._cancel(event)
                return
            if event.kind == KIND_REVEAL_CALL:
                self._on_reveal_call(event)
                return
            self.stats.received += 1
            self._screen(event)
        except Exception:  # a bug must cost one job, not the node
            log.exception("error handling event %s", event.id[:12])
            self.stats.refused["internal"] += 1

    def _cancel(self, deletion: Event) -> None:
        """A customer withdrew jobs (the book drops those not paid for)."""
        named = [t[1] for t in deletion.tags if t[0] == "e" and len(t) > 1]
        self._apply(self.book.cancel(named, deletion.pubkey, self.clock()))

    def _on_reveal_call(self, event: Event) -> None:
        """The customer closed a commitment window: the book reveals or gives up."""
        try:
            call = parse_reveal_call(event)
        except JobRejected as exc:
            self.stats.ignored["reveal_call"] += 1
            log.debug("ignored reveal call %s: %s", event.id[:12], exc)
            return
        for request_id in call.request_ids:
            if self.book.knows(request_id):
                named = call.names(self.public_key)
                self._event(request_id, jobs.RevealCalled(call.customer, named))

    def _screen(self, event: Event) -> None:
        assert self._policy is not None
        now = self.clock()
        decision = screen(event, self._policy, now)
        if not isinstance(decision, (Accept, Refuse)):
            self.stats.ignored[decision.reason] += 1
            log.debug("ignored job %s: %s", event.id[:12], decision.reason)
            return
        # A fleet keeps the request with the claim, so another node can finish it if we die.
        request = event.to_json() if self.store.shared else None
        if not self.store.claim(event.id, event.pubkey, event.created_at, request=request):
            self.stats.duplicates += 1
            return
        rate = self._rate.check(event.pubkey, now)
        if not rate.allowed:
            limit = self.limits.rate_per_minute
            refusal = Refuse(
                decision.request,
                "rate_limited",
                f"rate limited: at most {limit:g} jobs per minute per customer; retry in "
                f"{rate.retry_after:.0f} s",
            )
            # Told (and logged) once per customer per window.
            self._event(event.id, jobs.Refused(refusal, notify=rate.notify))
        elif isinstance(decision, Refuse):
            self._event(event.id, jobs.Refused(decision))
        else:
            self._event(event.id, jobs.Offered(decision))

    # --- carrying out the job book's effects -------------------------------------------------

    def _event(self, job_id: str, event: jobs.Event) -> None:
        """Tell the book what happened to a job and carry out what it says."""
        try:
            effects = self.book.on(job_id, event, self.clock())
        except JobBookError:  # a bug must cost one job, not the node
            log.exception("job %s: %s", job_id[:12], type(event).__name__)
            return
        self._apply(effects)

    def _apply(self, effects: list[jobs.Effect]) -> None:
        # Jobs whose store write was refused (another node owns them: ours stalled past the
        # lease) or failed (the store is away): what the store does not hold must not go out,
        # so this node says nothing more about them and leaves them to whichever node holds
        # them in the store.
        lost: set[str] = set()
        for effect in effects:
            if effect.job_id in lost and isinstance(effect, jobs.SendFeedback):
                continue
            try:
                if not self._carry_out(effect):
                    lost.add(effect.job_id)
            except Exception:  # a full disk, a bug: it costs this effect, not the node
                log.exception("job %s: %s failed", effect.job_id[:12], type(effect).__name__)
                if isinstance(effect, jobs.StoreUpdate):
                    lost.add(effect.job_id)
        if self.observer is not None and effects:
            try:
                self.observer(effects)
            except Exception:  # a live view's bug must cost the node nothing
                log.exception("job observer failed")
        for job_id in lost:
            log.warning("job %s: not ours in the store; saying nothing more", job_id[:12])
            self._event(job_id, jobs.LeaseLost())

    def _carry_out(self, effect: jobs.Effect) -> bool:
        """Carry out one effect; False when the store refused a write because the job is
        another node's now."""
        match effect:
            case jobs.StoreUpdate(job_id, state, fields):
                return self.store.update(job_id, state, **fields)
            case jobs.StorePaid(job_id):
                self.store.mark_paid(job_id)
            case jobs.SendFeedback(_, request, status, extra, amount, bolt11):
                try:
                    event = build_feedback(
                        self.keys, request, status, extra=extra, amount_msats=amount, bolt11=bolt11
                    )
                except NostrSwarmError as exc:  # e.g. a customer key we cannot encrypt to
                    log.warning("cannot build feedback for %s: %s", request.id[:12], exc)
                else:
                    self._publish_soon(event)
            case jobs.RunBackend():
                model, timeout = effect.accept.model, self.limits.job_timeout
                self._start_work(
                    effect.job_id,
                    partial(self._complete, effect),
                    lambda exc: jobs.backend_failure(exc, model, timeout),
                )
            case jobs.MakeInvoice():
                self._start_work(
                    effect.job_id,
                    partial(self._make_invoice, effect),
                    lambda exc: jobs.InvoiceFailed(type(exc).__name__),
                )
            case jobs.WatchPayment():
                self._start_work(
                    effect.job_id,
                    partial(self._watch_payment, effect),
                    lambda exc: jobs.PaymentLapsed(),
                )
            case jobs.RecordResult():
                self._start_work(
                    effect.job_id,
                    partial(self._record_result, effect),
                    lambda exc: jobs.RecordFailed(type(exc).__name__),
                )
            case jobs.PublishResult(job_id, recorded):
                self._start_work(
                    job_id,
                    partial(self._publish_recorded, recorded),
                    lambda exc: jobs.PublishFailed(),
                )
            case jobs.PublishCommitment(job_id, request, commitment):
                event = build_commitment(self.keys, request, commitment)
                self._start_work(
                    job_id,
                    partial(self._publish_job_event, event),
                    lambda exc: jobs.PublishFailed(),
                )
            case jobs.CancelWork(job_id):
                task = self._work.pop(job_id, None)
                if task is not None:
                    task.cancel()
                    self._stopped.add(task)
                    task.add_done_callback(self._stopped.discard)
            case jobs.StartTimer(job_id, delay):
                loop = asyncio.get_running_loop()
                self._timers[job_id] = loop.call_later(delay, self._timer_fired, job_id)
            case jobs.StopTimer(job_id):
                timer = self._timers.pop(job_id, None)
                if timer is not None:
                    timer.cancel()
            case jobs.Log(_, message, warning):
                log.log(logging.WARNING if warning else logging.INFO, "%s", message)
        return True

    def _start_work(
        self,
        job_id: str,
        work: Callable[[], Awaitable[jobs.Event]],
        crashed: Callable[[Exception], jobs.Event],
    ) -> None:
        """Run the next piece of a job's work in its own task (one per job at a time)."""
        task = asyncio.create_task(self._report(job_id, work, crashed), name=f"job {job_id[:12]}")
        self._work[job_id] = task
        task.add_done_callback(partial(self._work_done, job_id))

    def _work_done(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._work.get(job_id) is task:
            del self._work[job_id]

    async def _report(
        self,
        job_id: str,
        work: Callable[[], Awaitable[jobs.Event]],
        crashed: Callable[[Exception], jobs.Event],
    ) -> None:
        """Do one piece of a job's work and report its outcome to the book."""
        try:
            outcome = await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must cost one job, not the node
            log.exception("job %s crashed", job_id[:12])
            outcome = crashed(exc)
        self._event(job_id, outcome)

    def _timer_fired(self, job_id: str) -> None:
        if self._timers.pop(job_id, None) is not None:
            self._event(job_id, jobs.RevealTimedOut())

    async def _complete(self, run: jobs.RunBackend) -> jobs.Event:
        """The backend call (the node's only one)."""
        accept = run.accept
        req = accept.request
        # Let the processing feedback's publish queue its message before the result's can (an
        # instant backend would otherwise put the result on the wire first).
        await asyncio.sleep(0)
        timeout = self.limits.job_timeout
        try:
            async with asyncio.timeout(timeout):
                resp = await self.backend.complete(
                    accept.model,
                    prompt_for(req.kind, req.prompt, req.params),
                    accept.max_tokens,
                    sampling=Sampling(**accept.params),
                )
        except (TimeoutError, NostrSwarmError) as exc:
            return jobs.backend_failure(exc, accept.model, timeout)
        salt = new_salt() if run.salt else None
        return jobs.Completed(resp.text, resp.model, resp.usage, salt)

    async def _make_invoice(self, make: jobs.MakeInvoice) -> jobs.Event:
        if self.wallet is None:
            return jobs.InvoiceFailed("no wallet")
        try:
            bolt11 = await self.wallet.make_invoice(
                make.amount_msats, make.memo, self.config.payment.invoice_expiry_s
            )
            return jobs.Invoiced(bolt11, decode_invoice(bolt11).payment_hash)
        except (WalletError, InvoiceError) as exc:
            log.warning("wallet could not issue an invoice for %s: %s", make.job_id[:12], exc)
            return jobs.InvoiceFailed(str(exc))

    async def _watch_payment(self, watch: jobs.WatchPayment) -> jobs.Event:
        paid = await self._await_payment(watch.payment_hash, watch.deadline)
        return jobs.Paid() if paid else jobs.PaymentLapsed()

    async def _record_result(self, record: jobs.RecordResult) -> jobs.Event:
        """Sign the result and record it in the store before any of it goes out: from then on
        it is the job's one answer, whichever node of the fleet publishes it."""
        recorded = record.result.signed(self.keys).to_json()
        try:
            ours = self.store.record_result(record.job_id, recorded, record.state, **record.fields)
            # Committed before the publish that follows (SQLite defers commits to the turn's end).
            self._commit()
        except (StoreError, StateUnavailable, sqlite3.Error) as exc:
            log.warning("cannot record the result of %s: %s", record.job_id[:12], exc)
            return jobs.RecordFailed(str(exc))
        return jobs.ResultRecorded(recorded) if ours else jobs.LeaseLost()

    async def _publish_recorded(self, recorded: str) -> jobs.Event:
        """Publish the result event as the store holds it (signed already)."""
        return await self._publish_job_event(Event.from_json(recorded, verify=False))

    async def _publish_job_event(self, event: Event) -> jobs.Event:
        return jobs.Published() if await self._publish(event) else jobs.PublishFailed()

    # --- payment before work: waiting for the wallet -----------------------------------------

    async def _await_payment(self, payment_hash: str, deadline: float) -> bool:
        """Poll the wallet with growing intervals (woken early by :meth:`notify_paid`)."""
        assert self.wallet is not None
        signal = self._paid_signals.setdefault(payment_hash, asyncio.Event())
        delay = self.config.payment.poll_s
        try:
            while True:
                try:
                    tx = await self.wallet.lookup_invoice(payment_hash)
                except WalletError as exc:
                    log.debug("invoice lookup failed (%s); retrying", exc)
                else:
                    if tx.settled:
                        return True
                    if tx.state in ("expired", "failed"):
                        return False
                if self.clock() >= deadline:
                    return False
                signal.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await signal.wait()
                delay = min(delay * 2, self.config.payment.poll_max_s)
        finally:
            self._paid_signals.pop(payment_hash, None)

    # --- a fleet sharing one store -------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Renew the leases of the jobs we hold (giving up those another node took over); take
        over jobs whose node stopped renewing."""
        while True:
            try:
                held = [job.id for job in self.book.open_jobs()]
                ours = self.store.renew(held)
                for job_id in held:
                    if job_id not in ours:
                        self._event(job_id, jobs.LeaseLost())
                if not self._closing:
                    for orphan in self.store.orphans():
                        # Go on from the row as taken over: its last owner may have written
                        # to it since it was listed.
                        if (row := self.store.take_over(orphan.id)) is not None:
                            self._take_up(row, "taking over job %s from a node that stopped")
            except Exception as exc:  # PostgreSQL away: our leases may lapse, we go on
                log.warning("job store lease round failed: %s", exc)
            await asyncio.sleep(self.store.lease_s / 3)

    # --- restart ------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Jobs left open by the last run (now ours): paid ones are served, ones awaiting
        payment go on waiting, recorded results go out; the rest are closed (their customers
        have moved on)."""
        for row in self.store.adopt():
            if jobs.resumable(row.paid, row.payment_hash, row.request, row.result_event):
                self._take_up(row, "resuming job %s")
            else:
                self.store.update(row.id, "failed", reason="interrupted")

    def _take_up(self, row: JobRow, message: str) -> None:
        """Hand a job the store kept to the book (the price the customer was asked stands)."""
        assert self._policy is not None
        try:
            if row.request is None:
                raise JobRejected("no request kept")
            event = Event.from_json(row.request, verify=False)
            # A price already asked for stands (it was within the bid); a new quote must be.
            decision = evaluate(
                parse_request(event, keys=self.keys, verify=False),
                self._policy,
                check_bid=row.quote_msats is None and row.result_event is None,
            )
        except NostrSwarmError as exc:
            log.warning("cannot take up job %s: %s", row.id[:12], exc)
            decision = None
        if not isinstance(decision, Accept):
            self.store.update(row.id, "failed", reason="interrupted")
            return
        log.info(message, row.id[:12])
        self._event(row.id, jobs.Resumed.from_row(row, decision))


def _config_form(
    config: ProviderConfig,
    backend: LmBackend,
    wallet: Wallet | None = None,
    *,
    clock: Clock = time.time,
    store: JobStore | None = None,
) -> tuple[ProviderConfig, Keys, LmBackend, Wallet | None, Clock, JobStore | None]:
    return config, config.node.keys, backend, wallet, clock, store


def _keys_form(
    keys: Keys,
    relays: Sequence[str],
    backend: LmBackend,
    *,
    wallet: Wallet | None = None,
    clock: Clock = time.time,
    store: JobStore | str | Path = ":memory:",
    **options: Any,
) -> tuple[ProviderConfig, Keys, LmBackend, Wallet | None, Clock, JobStore | None]:
    if isinstance(store, JobStore):
        config = node_config(keys, relays, **options)
        return config, keys, backend, wallet, clock, store
    return node_config(keys, relays, store=store, **options), keys, backend, wallet, clock, None


__all__ = ["PAYMENT_POLICIES", "ProviderNode", "ProviderStats"]
