"""ProviderNode: sells completions from a local backend (or an LmRouter over several) on Nostr.

::

    async with ProviderNode(keys, ["ws://127.0.0.1:7777"], backend, pricing=prices,
                            payment="after", wallet=wallet) as node:
        await node.serve_forever()          # or do other things; leaving the block shuts down

Per job request (kind 5050) seen on any relay: screen it (:mod:`provider.intake`: addressed to us,
fresh, parseable, decryptable, known model, within the caps, bid high enough), dedupe it (SQLite,
so a job seen on another relay or after a restart is never worked twice), check the customer's
rate and the queue, then either run it now, queue it, or answer ``error`` "busy". Payment
``before`` asks with ``payment-required`` and an invoice first and starts once the wallet shows it
paid. A run publishes ``processing``, calls the backend, publishes the result (kind 6050, with an
invoice when payment is ``after``) and ``success``. Every failure ends in ``error`` feedback that
says why; nothing a customer sends can stop the node.

Copy resistance (``docs/security.md``): a job asking ``["param", "sealed", "nip44"]`` gets its
result sealed to the customer; one asking ``["param", "commit", "sha256"]`` gets a commitment
(``processing`` feedback with ``["commitment", <hex>]``) and its result is held, off the wire and
off the backend's slots, until the customer's reveal call (kind 7001) names this node, or
``reveal_timeout_s`` / the job's expiration passes.

The decisions are pure (intake, pricing, limits, announce); this module is the I/O around them:
the relay pool, the backend, the wallet, the store and the timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from client.dvm.nip90 import (
    ERROR,
    KIND_DELETION,
    KIND_TEXT_GENERATION,
    PAYMENT_REQUIRED,
    PROCESSING,
    SUCCESS,
    JobRequest,
    build_result,
    parse_request,
)
from client.dvm.nip90 import build_feedback as nip90_feedback
from client.dvm.sealing import (
    KIND_REVEAL_CALL,
    RevealCall,
    build_commitment,
    commit,
    new_salt,
    parse_reveal_call,
)
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
from client.wallet import Wallet, decode_invoice
from provider.kinds import check_kinds, prompt_for
from router.backends.base import LmBackend
from router.errors import BackendError, BackendNotFound, CircuitBreakerOpen, RouterError
from router.types import LmResponse, LmUsage, estimate_tokens

from .announce import Announcer, Offer, PaymentPolicy
from .errors import ConfigError
from .intake import Accept, IntakePolicy, ModelCatalog, Refuse, evaluate, screen
from .limits import AdmissionQueue, CustomerRateLimiter, Limits
from .pricing import Pricing
from .store import Earnings, JobStore

log = logging.getLogger("provider.node")

Clock = Callable[[], float]
_perf = time.perf_counter
# Upstream addresses are the operator's business, not the customer's.
_ADDRESS = re.compile(
    r"\b(?:https?|wss?)://\S+|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\blocalhost(?::\d+)?\b"
)
PAYMENT_POLICIES = ("free", "after", "before")
PRUNE_INTERVAL_S = 3600.0
ANNOUNCE_RETRY_S = 15.0
# A backend that does not answer at start is asked again after 1 s, 2 s, 4 s, ... at most 60 s.
BACKEND_RETRY_S = 1.0
BACKEND_RETRY_MAX_S = 60.0
# Long enough for the embedded model to load on a slow machine; a dead server fails at once.
BACKEND_CHECK_TIMEOUT_S = 30.0
# "held": commit-reveal, the result is ready and committed, waiting for the customer's call.
JobState = Literal["awaiting_payment", "queued", "running", "held", "finished"]


@dataclass
class ProviderStats:
    """Counters since the node started. ``refused``: answered ``error`` before any work (bad
    input, busy, rate limit, low bid); ``failed``: accepted, then failed (backend, timeout,
    unpaid, shutdown); ``ignored``: dropped silently (not for us, stale, expired)."""

    received: int = 0
    duplicates: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    completed: int = 0
    cancelled: int = 0
    committed: int = 0  # commit-reveal jobs whose commitment went out
    revealed: int = 0  # ... and whose result the customer's reveal call released
    paid_before: int = 0
    billed_msats: int = 0
    tokens: int = 0
    publish_failures: int = 0
    # Milliseconds the node itself spent per completed job: from receipt until the result is
    # handed to the relays, minus the backend call (bench/provider.py reports it).
    overhead_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    @property
    def errors(self) -> int:
        return sum(self.refused.values()) + sum(self.failed.values())


@dataclass(eq=False)
class _Job:
    accept: Accept
    received: float  # perf_counter at receipt
    state: JobState = "queued"
    task: asyncio.Task[None] | None = None
    payment_hash: str | None = None
    paid: bool = False  # payment "before" settled: never dropped, resumed after a restart
    backend_ms: float = 0.0
    reveal_call: RevealCall | None = None  # the customer's call, if it came before we held

    @property
    def id(self) -> str:
        return self.accept.request.id


@dataclass(eq=False)
class _Delivery:
    """A finished job's result, ready to publish (at once, or when the reveal call comes)."""

    result: Event
    usage: LmUsage
    amount: int | None
    bolt11: str | None
    handed_over: float = 0.0  # perf_counter when the first reply left the node's hands


@dataclass(eq=False)
class _Held:
    job: _Job
    delivery: _Delivery
    timer: asyncio.TimerHandle | _NoTimer


class _NoTimer:
    def cancel(self) -> None:
        pass


_NO_TIMER = _NoTimer()


def _clean(exc: BaseException) -> str:
    """An error as a customer may read it: no upstream addresses or names, one line, short."""
    text = str(exc)
    name = getattr(exc, "backend", None)
    if isinstance(name, str) and name and text.startswith(f"{name}: "):
        text = text[len(name) + 2 :]
    text = _ADDRESS.sub("<upstream>", text).replace("\n", " ").strip()
    return (text or type(exc).__name__)[:200]


# Waits below use asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a
# cancellation that arrives as the awaited thing completes, and a loop that misses its
# cancellation keeps a node from shutting down.


class ProviderNode:
    """A provider on the swarm. An async context manager: entering connects, subscribes and
    announces; leaving shuts down gracefully (see :meth:`close`)."""

    def __init__(
        self,
        keys: Keys,
        relays: Sequence[str],
        backend: LmBackend,
        *,
        pricing: Pricing | None = None,
        payment: PaymentPolicy = "free",
        wallet: Wallet | None = None,
        limits: Limits | None = None,
        models: Sequence[str] | None = None,
        kinds: Sequence[int] = (KIND_TEXT_GENERATION,),
        default_model: str | None = None,
        store: JobStore | str | Path = ":memory:",
        name: str = "",
        about: str = "",
        picture: str = "",
        lud16: str = "",
        d_tag: str = "",
        announce: bool = True,
        heartbeat_s: int = 120,
        clock_skew_s: int = 10,
        invoice_expiry_s: int = 600,
        payment_poll_s: float = 1.0,
        payment_poll_max_s: float = 15.0,
        settle_check_s: float = 60.0,
        retention_days: float = 30.0,
        reveal_timeout_s: float = 300.0,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        clock: Clock = time.time,
    ) -> None:
        if payment not in PAYMENT_POLICIES:
            raise ConfigError(f"payment must be one of {', '.join(PAYMENT_POLICIES)}")
        if payment != "free" and wallet is None:
            raise ConfigError(f"payment {payment!r} needs a wallet to issue invoices")
        if heartbeat_s < 1:
            raise ConfigError("heartbeat_s must be at least 1")
        self.keys = keys
        self.relays = list(relays)
        if not self.relays:
            raise ConfigError("a provider needs at least one relay")
        self.backend = backend
        self.pricing = pricing or Pricing()
        self.payment: PaymentPolicy = payment
        self.wallet = wallet
        self.limits = limits or Limits()
        self._fixed_models = tuple(models) if models is not None else None
        self.default_model = default_model
        self._store_arg = store
        self.name, self.about, self.picture, self.lud16 = name, about, picture, lud16
        self.d_tag = d_tag
        #: The NIP-90 kinds served (provider/kinds.py): 5050, and 5000-5002 through templates.
        self.kinds = check_kinds(list(kinds))
        self.announce = announce
        self.heartbeat_s = heartbeat_s
        self.clock_skew_s = clock_skew_s
        self.invoice_expiry_s = invoice_expiry_s
        self.payment_poll_s = payment_poll_s
        self.payment_poll_max_s = payment_poll_max_s
        self.settle_check_s = settle_check_s
        self.retention_days = retention_days
        self.reveal_timeout_s = reveal_timeout_s
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.clock = clock

        self.stats = ProviderStats()
        self.models: tuple[str, ...] = ()
        self._queue: AdmissionQueue[_Job] = AdmissionQueue(
            self.limits.max_concurrent, self.limits.queue_size
        )
        self._rate = CustomerRateLimiter(self.limits.rate_per_minute, self.limits.rate_burst)
        self._announcer = Announcer(heartbeat_s)
        self._jobs: dict[str, _Job] = {}
        self._unpaid: set[str] = set()
        self._held: dict[str, _Held] = {}
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
        self._grace_over = False
        self._commit_pending = False
        self._started = False
        self._pool: RelayPool | None = None
        self._sub: Subscription | None = None
        self._store: JobStore | None = None
        self._policy: IntakePolicy | None = None
        self.started_at = 0.0

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
        self.started_at = self.clock()
        store = self._store_arg
        self._store = store if isinstance(store, JobStore) else JobStore(store, clock=self.clock)
        # One commit per event-loop turn, however many jobs the turn touched.
        self._store.on_write = self._schedule_commit
        pruned = self._store.prune(self.retention_days * 86400)
        if pruned:
            log.info("forgot %d jobs older than %g days", pruned, self.retention_days)
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
            connect_timeout=self.connect_timeout,
            publish_timeout=self.publish_timeout,
        )
        await self._pool.start()
        self._subscribe()
        self._spawn(self._intake_loop(), "intake")
        if not self.backend_ready.is_set():
            self._spawn(self._watch_backend(), "backend")
        if self.announce:
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
        # Paid jobs stay in the queue and share the grace period with the running ones.
        for job in self._queue.drain():
            if job.paid:
                if self._queue.submit(job, force=True) == "run":
                    self._start(job)
            else:
                self._fail(job, "shutdown", "provider is shutting down; ask another provider")
        unpaid = [self._jobs[i] for i in list(self._unpaid) if i in self._jobs]
        for job in unpaid:
            if job.task is not None:
                job.task.cancel()
        await asyncio.gather(*(j.task for j in unpaid if j.task), return_exceptions=True)
        for job in unpaid:
            self._fail(job, "shutdown", "provider is shutting down; do not pay its invoice")
        await self._finish_running(self.limits.shutdown_grace)
        self._release_held_at_shutdown()
        for job in self._queue.drain():  # paid, never started: served after a restart
            self._fail(
                job,
                "shutdown",
                "provider stopped before your paid job ran; it runs when the provider is back",
                keep_open=True,
            )
        if self._pool is not None and self.announce and self._announcer.last_created_at:
            offline = self._announcer.next(self.keys, self._offer(), self.clock(), online=False)
            self._publish_soon(offline)
        if self._publishes:
            await asyncio.wait(list(self._publishes), timeout=self.publish_timeout)
        if self._pool is not None:
            await self._pool.close()
        if self._store is not None:
            self._store.on_write = None
            self._commit()
            if not isinstance(self._store_arg, JobStore):
                self._store.close()

    async def _finish_running(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running jobs (and paid ones taking freed slots);
        cancel and fail whatever is still running then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            # Held jobs still publishing their commitment count as running here.
            tasks = [
                j.task
                for j in self._jobs.values()
                if j.task and (j.state == "running" or (j.state == "held" and not j.task.done()))
            ]
            remaining = deadline - loop.time()
            if not tasks or remaining <= 0:
                break
            await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        self._grace_over = True  # cancelled jobs must not hand their slot to a waiting one
        running = [j for j in self._jobs.values() if j.state == "running" and j.task]
        for job in running:
            assert job.task is not None
            job.task.cancel()
        await asyncio.gather(*(j.task for j in running if j.task), return_exceptions=True)
        for job in running:
            self._fail(
                job,
                "shutdown",
                "provider stopped before the job finished; ask another provider",
                keep_open=job.paid,
            )

    def _release_held_at_shutdown(self) -> None:
        """No reveal call can reach us any more: a paid job's result goes out now (the customer
        paid for it), the others end with ``error``."""
        for job_id in list(self._held):
            held = self._held.pop(job_id)
            held.timer.cancel()
            if held.job.paid:
                self._reveal_soon(held)
            else:
                self._fail(
                    held.job,
                    "shutdown",
                    "provider is shutting down before your reveal call; result withheld",
                )

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
                    async with asyncio.timeout(self.connect_timeout):
                        await self.backend.refresh_models()
                except (TimeoutError, NostrSwarmError, OSError):
                    return
                self.models = tuple(self._usable(self._fixed_models))
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
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
            not_before=int(self.started_at) - self.clock_skew_s,
            kinds=self.kinds,
        )

    def _offer(self) -> Offer:
        return Offer(
            models=self.models,
            pricing=self.pricing,
            payment=self.payment,
            max_tokens=self.limits.max_tokens,
            max_prompt_chars=self.limits.max_prompt_chars,
            heartbeat_s=self.heartbeat_s,
            name=self.name,
            about=self.about,
            picture=self.picture,
            lud16=self.lud16,
            default_model=self.default_model or (self.models[0] if self.models else None),
            d_tag=self.d_tag,
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

    # --- background tasks -------------------------------------------------------------------

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
            wait = self.heartbeat_s
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
                    async with asyncio.timeout(self.connect_timeout):
                        found = await self.backend.refresh_models()
                    usable = self._usable(found) if found else []
                    if usable:
                        self._set_catalog(usable)

    async def _settle_loop(self) -> None:
        """Watch issued invoices until they are paid or expire (earnings, payment ``after``)."""
        while True:
            await asyncio.sleep(self.settle_check_s)
            await self.check_invoices()

    async def _prune_loop(self) -> None:
        """Forget old finished jobs now and then, so weeks of service keep the store small."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            pruned = self.store.prune(self.retention_days * 86400)
            if pruned:
                log.info("forgot %d jobs older than %g days", pruned, self.retention_days)

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
                self.store.mark_paid(job_id)
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

    def _feedback(self, request: JobRequest, status: str, extra: str = "", **kw: Any) -> None:
        try:
            event = nip90_feedback(self.keys, request, status, extra=extra, **kw)
        except NostrSwarmError as exc:  # e.g. a customer key we cannot encrypt to
            log.warning("cannot build feedback for %s: %s", request.id[:12], exc)
            return
        self._publish_soon(event)

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
        """A customer withdrew jobs: drop those not paid for, queued or running (their work is
        wasted now). Paid jobs run on: the customer has paid for the answer."""
        for tag in deletion.tags:
            if tag[0] != "e" or len(tag) < 2:
                continue
            job = self._jobs.get(tag[1])
            if job is None or job.paid or job.accept.request.customer != deletion.pubkey:
                continue
            held = self._held.pop(job.id, None)
            if held is not None:
                held.timer.cancel()
            if job.state == "queued":
                self._queue.remove(job)
            elif job.task is not None:
                job.task.cancel()  # running, or waiting for its invoice to be paid
            self._unpaid.discard(job.id)
            job.state = "finished"
            self._jobs.pop(job.id, None)
            self.stats.cancelled += 1
            self.store.update(job.id, "failed", reason="cancelled")
            log.info("job %s cancelled by its customer", job.id[:12])

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
            self.stats.refused["rate_limited"] += 1
            self.store.update(event.id, "refused", reason="rate_limited")
            if rate.notify:  # logged like the feedback: once per customer per window
                log.info(
                    "job %s customer %s refused (rate_limited): over %g jobs per minute",
                    event.id[:12],
                    event.pubkey[:12],
                    self.limits.rate_per_minute,
                )
                self._feedback(
                    decision.request,
                    ERROR,
                    f"rate limited: at most {self.limits.rate_per_minute:g} jobs per minute per "
                    f"customer; retry in {rate.retry_after:.0f} s",
                )
            return
        if isinstance(decision, Refuse):
            self._refuse(decision)
            return
        self._accept(decision)

    def _refuse(self, refusal: Refuse) -> None:
        self.stats.refused[refusal.reason] += 1
        self.store.update(refusal.request.id, "refused", reason=refusal.reason)
        self._feedback(refusal.request, ERROR, refusal.message, amount_msats=refusal.amount_msats)
        log.info(
            "job %s customer %s refused (%s): %s",
            refusal.request.id[:12],
            refusal.request.customer[:12],
            refusal.reason,
            refusal.message,
        )

    def _busy(self, accept: Accept) -> None:
        self._refuse(
            Refuse(
                accept.request,
                "busy",
                f"busy: {self._queue.running} jobs running and {self._queue.waiting} waiting "
                "(queue full); try again shortly or ask another provider",
            )
        )

    def _accept(self, accept: Accept) -> None:
        if self._closing:
            return
        job = _Job(accept, _perf())
        if self.payment == "before" and accept.quote_msats > 0:
            if len(self._unpaid) >= self.limits.max_unpaid or not self._queue.has_room():
                self._busy(accept)
                return
            self.stats.accepted += 1
            self._jobs[job.id] = job
            self._unpaid.add(job.id)
            job.state = "awaiting_payment"
            self.store.update(
                job.id,
                "awaiting_payment",
                model=accept.model,
                quote_msats=accept.quote_msats,
                request=accept.request.event.to_json(),
            )
            job.task = self._spawn_job(self._collect_payment(job), job)
            return
        admission = self._queue.submit(job)
        if admission == "busy":
            self._busy(accept)
            return
        self.stats.accepted += 1
        self._jobs[job.id] = job
        if admission == "run":
            self._start(job)
        else:
            self.store.update(job.id, "queued", model=accept.model, quote_msats=accept.quote_msats)

    def _spawn_job(self, coro: Coroutine[Any, Any, None], job: _Job) -> asyncio.Task[None]:
        return asyncio.create_task(coro, name=f"job {job.id[:12]}")

    def _start(self, job: _Job) -> None:
        job.state = "running"
        job.task = self._spawn_job(self._run(job), job)

    # --- payment before work ------------------------------------------------------------------

    async def _collect_payment(self, job: _Job) -> None:
        accept = job.accept
        assert self.wallet is not None
        try:
            bolt11 = await self.wallet.make_invoice(
                accept.quote_msats, f"nostr-swarm job {job.id}", self.invoice_expiry_s
            )
            payment_hash = decode_invoice(bolt11).payment_hash
        except (WalletError, InvoiceError) as exc:
            log.warning("wallet could not issue an invoice for %s: %s", job.id[:12], exc)
            self._unpaid.discard(job.id)
            self._fail(job, "wallet", "this node cannot issue an invoice right now; try another")
            return
        job.payment_hash = payment_hash
        self.store.update(
            job.id, "awaiting_payment", payment_hash=payment_hash, amount_msats=accept.quote_msats
        )
        self._feedback(
            accept.request,
            PAYMENT_REQUIRED,
            f"pay {accept.quote_msats / 1000:g} sats to start; the invoice expires in "
            f"{self.invoice_expiry_s} s",
            amount_msats=accept.quote_msats,
            bolt11=bolt11,
        )
        await self._wait_and_run(job)

    async def _wait_and_run(self, job: _Job) -> None:
        assert job.payment_hash is not None
        deadline = self.clock() + self.invoice_expiry_s
        expiration = job.accept.request.expiration
        if expiration is not None:
            deadline = min(deadline, expiration)
        paid = await self._await_payment(job.payment_hash, deadline)
        self._unpaid.discard(job.id)
        if not paid:
            self._fail(job, "unpaid", "no payment arrived before the invoice expired; job dropped")
            return
        self.stats.paid_before += 1
        job.paid = True
        self.store.mark_paid(job.id)
        # Paid work is never refused as busy: it waits for a slot.
        if self._queue.submit(job, force=True) == "run":
            job.state = "running"
            await self._run(job)
        else:
            job.state = "queued"
            self.store.update(job.id, "queued")
            self._feedback(
                job.accept.request, PROCESSING, "payment received; waiting for a free slot"
            )

    async def _await_payment(self, payment_hash: str, deadline: float) -> bool:
        """Poll the wallet with growing intervals (woken early by :meth:`notify_paid`)."""
        assert self.wallet is not None
        signal = self._paid_signals.setdefault(payment_hash, asyncio.Event())
        delay = self.payment_poll_s
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
                delay = min(delay * 2, self.payment_poll_max_s)
        finally:
            self._paid_signals.pop(payment_hash, None)

    # --- the work ---------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        try:
            await self._work(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must cost one job, not the node
            log.exception("job %s crashed", job.id[:12])
            self._fail(job, "internal", f"internal error in the provider ({type(exc).__name__})")
        finally:
            nxt = self._queue.release(start_next=not self._grace_over)
            if nxt is not None:
                if self._closing and not nxt.paid:
                    self._fail(nxt, "shutdown", "provider is shutting down; ask another provider")
                else:
                    self._start(nxt)

    async def _work(self, job: _Job) -> None:
        accept = job.accept
        req = accept.request
        if req.expiration is not None and req.expiration <= self.clock():
            self.stats.failed["expired"] += 1
            self.store.update(job.id, "failed", reason="expired")
            job.state = "finished"
            self._jobs.pop(job.id, None)
            return
        # No store write here: "received"/"queued" are open states too, and the final update
        # records the rest (one SQLite write fewer per job).
        self._feedback(req, PROCESSING)
        # Let the feedback's publish queue its message before the result's can (an instant
        # backend would otherwise put the result on the wire first).
        await asyncio.sleep(0)
        t0 = _perf()
        try:
            async with asyncio.timeout(self.limits.job_timeout):
                resp = await self.backend.complete(
                    accept.model,
                    prompt_for(req.kind, req.prompt, req.params),
                    accept.max_tokens,
                    **accept.params,
                )
        except TimeoutError:
            self._fail(
                job,
                "timeout",
                f"the model did not answer within {self.limits.job_timeout:g} s; "
                "ask for fewer tokens or another provider",
            )
            return
        except BackendNotFound:
            self._fail(job, "unknown_model", f"model {accept.model} is not available here now")
            return
        except CircuitBreakerOpen:
            self._fail(job, "backend", "the model backend is down; try another provider")
            return
        except (BackendError, RouterError) as exc:
            self._fail(
                job, "backend", f"the model backend failed: {_clean(exc)}; try another provider"
            )
            return
        job.backend_ms = (_perf() - t0) * 1000
        await self._deliver(job, resp)

    async def _deliver(self, job: _Job, resp: LmResponse) -> None:
        accept = job.accept
        req = accept.request
        usage = resp.usage
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            p, c = estimate_tokens(req.prompt), estimate_tokens(resp.text)
            usage = LmUsage(p, c, p + c)
        amount: int | None = None
        bolt11: str | None = None
        if self.payment == "after" and accept.quote_msats > 0:
            amount = self.pricing.charge(
                accept.model, usage.prompt_tokens, usage.completion_tokens, accept.quote_msats
            )
            if req.bid_msats is not None:
                amount = min(amount, req.bid_msats)
            bolt11 = await self._invoice(job, amount)
        salt = new_salt() if accept.commit else None
        result = build_result(
            self.keys,
            req,
            resp.text,
            model=resp.model or accept.model,
            usage=usage,
            amount_msats=amount,
            bolt11=bolt11,
            seal=accept.seal,
            salt=salt,
        )
        delivery = _Delivery(result, usage, amount, bolt11, _perf())
        if salt is not None:
            await self._hold(job, delivery, commit(req.id, self.public_key, resp.text, salt))
            return
        await self._finish(job, delivery)

    # --- commit-reveal ----------------------------------------------------------------------

    async def _hold(self, job: _Job, delivery: _Delivery, commitment: str) -> None:
        """Publish the commitment and keep the result until the customer's reveal call. The
        backend slot is freed: holding costs memory, not capacity."""
        req = job.accept.request
        if job.reveal_call is not None:  # the window closed while we were working
            self._settle_held(_Held(job, delivery, _NO_TIMER), job.reveal_call)
            return
        job.state = "held"
        if not await self._publish(build_commitment(self.keys, req, commitment)):
            self._fail(job, "publish", "could not publish the commitment; ask another provider")
            return
        if job.state != "held":  # cancelled while the commitment was being published
            return
        self.stats.committed += 1
        hold = self.reveal_timeout_s
        if req.expiration is not None:
            hold = min(hold, max(req.expiration - self.clock(), 0.0))
        timer = asyncio.get_running_loop().call_later(hold, self._hold_expired, job.id, hold)
        held = self._held[job.id] = _Held(job, delivery, timer)
        if job.reveal_call is not None:  # it came while the commitment was on its way
            del self._held[job.id]
            timer.cancel()
            self._settle_held(held, job.reveal_call)

    def _on_reveal_call(self, event: Event) -> None:
        """The customer closed a commitment window: reveal if it names us, else give up."""
        try:
            call = parse_reveal_call(event)
        except JobRejected as exc:
            self.stats.ignored["reveal_call"] += 1
            log.debug("ignored reveal call %s: %s", event.id[:12], exc)
            return
        for request_id in call.request_ids:
            job = self._jobs.get(request_id)
            if job is None or job.accept.request.customer != call.customer:
                continue  # not ours, or not from the job's customer
            held = self._held.pop(request_id, None)
            if held is None:
                if job.reveal_call is None:
                    job.reveal_call = call  # still working: settled when the result is ready
                continue
            held.timer.cancel()
            self._settle_held(held, call)

    def _settle_held(self, held: _Held, call: RevealCall) -> None:
        if call.names(self.public_key):
            self.stats.revealed += 1
            self._reveal_soon(held)
        else:
            self._fail(
                held.job,
                "commit_late",
                "the customer closed the commitment window without our commitment; result withheld",
            )

    def _reveal_soon(self, held: _Held) -> None:
        task = asyncio.create_task(
            self._finish(held.job, held.delivery), name=f"reveal {held.job.id[:12]}"
        )
        self._publishes.add(task)
        task.add_done_callback(self._publishes.discard)

    def _hold_expired(self, job_id: str, hold: float) -> None:
        held = self._held.pop(job_id, None)
        if held is not None:
            self._fail(
                held.job,
                "reveal_timeout",
                f"no reveal call from the customer within {hold:g} s; result withheld",
            )

    # --- results ----------------------------------------------------------------------------

    async def _finish(self, job: _Job, delivery: _Delivery) -> None:
        """Publish the result, then ``success`` and the bookkeeping."""
        accept = job.accept
        req = accept.request
        usage, amount, bolt11 = delivery.usage, delivery.amount, delivery.bolt11
        published = await self._publish(delivery.result)
        latency_ms = (_perf() - job.received) * 1000
        job.state = "finished"
        self._jobs.pop(job.id, None)
        if not published:
            self.stats.failed["publish"] += 1
            self.store.update(job.id, "failed", reason="publish", latency_ms=latency_ms)
            return
        self._feedback(req, SUCCESS, amount_msats=amount, bolt11=bolt11)
        billed = amount if bolt11 else (accept.quote_msats if self.payment == "before" else 0)
        self.stats.completed += 1
        self.stats.tokens += usage.prompt_tokens + usage.completion_tokens
        self.stats.billed_msats += billed or 0
        self.stats.overhead_ms.append((delivery.handed_over - job.received) * 1000 - job.backend_ms)
        fields: dict[str, object] = {
            "model": accept.model,
            "quote_msats": accept.quote_msats,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "latency_ms": round(latency_ms, 3),
        }
        if self.payment == "after" and amount is not None:
            fields["amount_msats"] = amount
            fields["payment_hash"] = job.payment_hash
        if self.payment == "before":
            fields["request"] = None
        self.store.update(job.id, "done", **fields)
        log.info(
            "job %s customer %s model %s tokens %d+%d sats %g latency %.1f ms: done",
            job.id[:12],
            req.customer[:12],
            accept.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            (billed or 0) / 1000,
            latency_ms,
        )

    async def _invoice(self, job: _Job, amount: int) -> str | None:
        """An invoice for a finished job (payment ``after``); None if the wallet fails (the
        result still goes out, with the amount alone)."""
        if amount <= 0 or self.wallet is None:
            return None
        try:
            bolt11 = await self.wallet.make_invoice(
                amount, f"nostr-swarm job {job.id}", self.invoice_expiry_s
            )
            job.payment_hash = decode_invoice(bolt11).payment_hash
            return bolt11
        except (WalletError, InvoiceError) as exc:
            log.warning("wallet could not issue an invoice for %s: %s", job.id[:12], exc)
            return None

    def _fail(self, job: _Job, reason: str, message: str, *, keep_open: bool = False) -> None:
        """End an accepted job with ``error`` feedback (once). ``keep_open``: a paid job the
        store keeps open, so the next run serves it."""
        if job.state == "finished":
            return
        job.state = "finished"
        self._jobs.pop(job.id, None)
        self._unpaid.discard(job.id)
        self.stats.failed[reason] += 1
        latency_ms = (_perf() - job.received) * 1000
        if keep_open:
            self.store.update(job.id, "queued", reason=reason)
        else:
            self.store.update(job.id, "failed", reason=reason, latency_ms=round(latency_ms, 3))
        self._feedback(job.accept.request, ERROR, message)
        log.info(
            "job %s customer %s model %s tokens 0+0 sats 0 latency %.1f ms: failed (%s) %s",
            job.id[:12],
            job.accept.request.customer[:12],
            job.accept.model,
            latency_ms,
            reason,
            message,
        )

    # --- a fleet sharing one store -------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Renew the leases of the jobs we hold; take over jobs whose node stopped renewing."""
        while True:
            try:
                self.store.renew(list(self._jobs))
                if not self._closing:
                    for row in self.store.orphans():
                        if self.store.take_over(row.id):
                            self._adopt(row)
            except Exception as exc:  # PostgreSQL away: our leases may lapse, we go on
                log.warning("job store lease round failed: %s", exc)
            await asyncio.sleep(self.store.lease_s / 3)

    def _adopt(self, row: Any) -> None:
        """Run a job another node of the fleet claimed and did not finish."""
        assert self._policy is not None
        try:
            if row.request is None:
                raise JobRejected("no request kept")
            event = Event.from_json(row.request, verify=False)
            decision = evaluate(
                parse_request(event, keys=self.keys, verify=False), self._policy, check_bid=False
            )
        except NostrSwarmError as exc:
            log.warning("cannot take over job %s: %s", row.id[:12], exc)
            self.store.update(row.id, "failed", reason="interrupted")
            return
        if not isinstance(decision, Accept):
            self.store.update(row.id, "failed", reason="interrupted")
            return
        log.info("taking over job %s from a node that stopped", row.id[:12])
        job = _Job(decision, _perf(), payment_hash=row.payment_hash, paid=row.paid)
        self._jobs[job.id] = job
        if self._queue.submit(job, force=True) == "run":
            self._start(job)
        else:
            job.state = "queued"

    # --- restart ------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Jobs left open by the last run: paid ones are served, ones awaiting payment go on
        waiting, the rest are closed (their customers have moved on)."""
        assert self._policy is not None
        for row in self.store.open_jobs():
            if row.request is None or not (row.paid or row.payment_hash is not None):
                self.store.update(row.id, "failed", reason="interrupted")
                continue
            try:
                event = Event.from_json(row.request, verify=False)
                decision = evaluate(
                    parse_request(event, keys=self.keys, verify=False),
                    self._policy,
                    check_bid=False,
                )
            except NostrSwarmError as exc:
                decision = None
                log.warning("cannot resume job %s: %s", row.id[:12], exc)
            if not isinstance(decision, Accept):
                self.store.update(row.id, "failed", reason="interrupted")
                continue
            if row.quote_msats is not None:  # the price the customer was asked for stands
                decision = replace(decision, quote_msats=row.quote_msats)
            job = _Job(decision, _perf(), payment_hash=row.payment_hash, paid=row.paid)
            self._jobs[job.id] = job
            if row.paid:
                log.info("resuming paid job %s", job.id[:12])
                if self._queue.submit(job, force=True) == "run":
                    self._start(job)
                else:
                    job.state = "queued"
            else:
                log.info("still waiting for payment of job %s", job.id[:12])
                job.state = "awaiting_payment"
                self._unpaid.add(job.id)
                job.task = self._spawn_job(self._wait_and_run(job), job)


__all__ = ["PAYMENT_POLICIES", "ProviderNode", "ProviderStats"]
