"""SwarmClient: ask the swarm, get an answer that k independent providers agree on.

::

    async with SwarmClient(keys, ["ws://127.0.0.1:7777"]) as swarm:
        result = await swarm.complete("What is 2+2?", quorum=2, timeout=30)
        result.text, result.agreeing, result.dissenting, result.sats_paid, result.timings

One completion: build the kind-5050 request(s) (one per target when encrypted), open the
subscription ``{kinds:[6050,7000], #e:[job ids]}`` *before* publishing, publish, then feed every
incoming event to a :class:`JobCollector` (pure: strict NIP-90 checks from :mod:`client.dvm.nip90`,
votes into :class:`client.customer.quorum.Quorum`) until k results agree, every provider has
answered without agreement, or time runs out. The job is cancelled (kind-5 deletion) in the
background as soon as the outcome is known. Bad input (forged, other job, other customer, replay, a
provider's second vote, oversized or malformed) is ignored, counted in ``rejected`` and logged at
debug.

Payment seam: :meth:`SwarmClient.settle` is where the agreeing providers get paid. Until the
payments issue lands it pays nothing (``sats_paid == 0``) unless a ``pay`` hook is given; the
result already carries what a payer needs: ``invoices`` (per provider: the ``amount`` tag with its
BOLT11, from the result or else the latest feedback) and ``quotes`` (msats from feedback).

With ``inbox=True`` the client keeps one subscription ``{kinds:[6050,7000], #p:[our key]}`` for
all its jobs and routes events by ``e`` tag, so many concurrent jobs need one relay
subscription instead of one each (relays cap subscriptions per connection).

Copy resistance (``sealing=``, ``commit_reveal=``; ``docs/security.md``): the collector's
:class:`~client.dvm.sealing.CopyGuard` decides which results count and how each counted vote was
protected (``SwarmResult.protection``, ``SwarmResult.copyable``); with commit-reveal the loop
publishes the reveal call when the commitment window is due.

Discovery and reputation (``selector=``, ``reputation=``; ``docs/discovery.md``): with a
:class:`~client.customer.selection.Selector` a job without explicit ``targets`` addresses the
providers its policy picks (alive in its directory, which the client keeps fed from its relays), and
only the votes it admits count (block-lists, quorum membership); every outcome, reached or not, is
written to the :class:`~client.customer.reputation.ReputationLedger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from client.customer.copy_guard import CopyGuard, CopyPolicy, SealingMode, copyable, protections
from client.customer.prepay import Prepay, PrepayBook, PrepayPolicy, Unbilled
from client.customer.quorum import Comparator, Decision, Normalized, Protection, Quorum, Vote
from client.dvm.amounts import Amount
from client.dvm.nip90 import (
    DEFAULT_SKEW_S,
    ERROR,
    KIND_FEEDBACK,
    MAX_RESULT_BYTES,
    RESULT_OFFSET,
    Encryption,
    Job,
    JobFeedback,
    JobResult,
    JobSpec,
    build_deletion,
    build_job,
    parse_feedback,
    parse_result,
)
from client.dvm.sealing import build_reveal_call
from client.dvm.tokens import estimate_tokens
from client.net.pool import RelayPool, Subscription
from client.nostr.errors import JobRejected, NoProvidersAvailable, QuorumNotReached
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys

if TYPE_CHECKING:
    from client.customer.directory import DirectoryWatcher
    from client.customer.reputation import ReputationLedger
    from client.customer.selection import Selection, Selector
    from client.wallet import Wallet
    from client.wallet.payments import PaymentGate

log = logging.getLogger("client.customer.swarm")

# The expiration tag outlives the caller's timeout by this much (clock skew between peers).
EXPIRATION_SLACK_S = 60
INBOX_QUEUE = 10_000


# --- result types ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds from the start of :meth:`SwarmClient.complete` (None: did not happen)."""

    published_ms: float
    first_feedback_ms: float | None
    first_result_ms: float | None
    quorum_ms: float | None
    total_ms: float


@dataclass(slots=True)
class ProviderState:
    """What one provider did for this job."""

    provider: str
    status: str = "seen"  # last feedback status, then "answered" / "agreed" / "dissented"
    feedback: list[JobFeedback] = field(default_factory=list)
    result: JobResult | None = None
    extra: str = ""  # the human text of the last feedback
    rejected: int = 0

    @property
    def quote_msats(self) -> int | None:
        """The latest ``amount`` a provider named in feedback."""
        for fb in reversed(self.feedback):
            if fb.amount is not None:
                return fb.amount.msats
        return None

    @property
    def invoice(self) -> Amount | None:
        """The ``amount`` to pay: the result's when it carries a BOLT11, else the latest
        feedback's that does."""
        if self.result is not None and self.result.amount and self.result.amount.bolt11:
            return self.result.amount
        for fb in reversed(self.feedback):
            if fb.amount is not None and fb.amount.bolt11:
                return fb.amount
        return self.result.amount if self.result is not None else None


@dataclass(frozen=True, slots=True)
class SwarmResult:
    """The outcome of one completion (also carried, with ``reached=False``, by QuorumNotReached)."""

    reached: bool
    text: str | None
    job: Job
    decision: Decision
    results: tuple[JobResult, ...]
    feedback: tuple[JobFeedback, ...]
    providers: Mapping[str, ProviderState]
    rejected: Mapping[str, int]
    timings: Timings
    msats_paid: int = 0
    #: Msats whose payment outcome is not known yet (the wallet did not answer in time): they
    #: may have left the wallet, so callers must keep them counted until resolved.
    msats_unknown: int = 0
    #: The per-provider payment outcomes (a ``client.wallet.QuorumPayment``), when paid by
    #: the client's own payer: who was paid, refused (and why) or is of unknown outcome.
    payment: Any = None

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def agreeing(self) -> tuple[str, ...]:
        return self.decision.agreeing if self.reached else ()

    @property
    def dissenting(self) -> tuple[str, ...]:
        return self.decision.dissenting

    @property
    def sats_paid(self) -> int:
        return self.msats_paid // 1000

    @property
    def statuses(self) -> dict[str, str]:
        return {p: s.status for p, s in self.providers.items()}

    @property
    def invoices(self) -> dict[str, Amount]:
        out: dict[str, Amount] = {}
        for p, s in self.providers.items():
            inv = s.invoice
            if inv is not None:
                out[p] = inv
        return out

    @property
    def quotes(self) -> dict[str, int]:
        return {p: q for p, s in self.providers.items() if (q := s.quote_msats) is not None}

    @property
    def protection(self) -> dict[str, Protection]:
        """How each counted vote travelled: ``sealed`` (encrypted to us), ``committed``
        (commit-reveal verified) or ``clear`` (readable by anyone: copyable)."""
        return dict(protections(self.decision))

    @property
    def copyable(self) -> tuple[str, ...]:
        """Agreeing providers whose answers were readable on the relay before they counted:
        their agreement may be a copy (weigh it less in reputation and payment)."""
        return copyable(self.decision) if self.reached else ()


ProgressKind = Literal["published", "feedback", "result", "rejected", "reached", "failed", "window"]


@dataclass(frozen=True, slots=True)
class Progress:
    """One step of a completion, for live display (``swarm ask``)."""

    kind: ProgressKind
    elapsed_ms: float
    provider: str | None = None
    status: str = ""
    detail: str = ""
    decision: Decision | None = None
    #: A result's whole text (``detail`` is cut short for display).
    text: str = ""


ProgressCallback = Callable[[Progress], None]
#: ``await pay(result, max_sats, gate)``: msats paid, or the per-provider QuorumPayment.
PayHook = Callable[["SwarmResult", int | None, "PaymentGate | None"], Awaitable[Any]]

#: The most one job may pay when the caller names no cap (sats, all providers together);
#: ``SWARM_MAX_SATS`` in the environment or ``SwarmClient(max_sats=...)`` changes it.
DEFAULT_MAX_SATS = 50
MAX_SATS_ENV = "SWARM_MAX_SATS"


def default_max_sats() -> int:
    """The cap for a job whose caller named none: ``$SWARM_MAX_SATS``, else DEFAULT_MAX_SATS."""
    raw = os.environ.get(MAX_SATS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_SATS
    if not raw.isascii() or not raw.isdigit():
        raise ValueError(f"{MAX_SATS_ENV} must be a whole number of sats, not {raw!r}")
    return int(raw)


def _on_loop(loop: asyncio.AbstractEventLoop, callback: ProgressCallback) -> ProgressCallback:
    """``callback`` called on ``loop``'s thread whichever thread reports progress."""

    def report(p: Progress) -> None:
        loop.call_soon_threadsafe(callback, p)

    return report


# --- the pure core: one job's collector -----------------------------------------------------


class JobCollector:
    """Feeds one job's incoming events through the strict checks into a quorum. No I/O: give it
    events and times (seconds on any monotonic clock), read :meth:`outcome`."""

    def __init__(
        self,
        job: Job,
        keys: Keys,
        quorum: Quorum,
        *,
        started: float,
        max_result_bytes: int = MAX_RESULT_BYTES,
        on_progress: ProgressCallback | None = None,
        guard: CopyGuard | None = None,
    ) -> None:
        self.job = job
        self.keys = keys
        self.quorum = quorum
        self.started = started
        self.max_result_bytes = max_result_bytes
        self.on_progress = on_progress
        self.providers: dict[str, ProviderState] = {}
        self.results: list[JobResult] = []
        self.feedback: list[JobFeedback] = []
        self.rejected: Counter[str] = Counter()
        self.seen_ids: set[str] = set()
        self.published_at: float | None = None
        self.first_feedback: float | None = None
        self.first_result: float | None = None
        self.quorum_at: float | None = None
        self.decision: Decision = quorum.decision()
        # Copy resistance: sealing policy, commitments and the commitment window.
        self.guard = guard if guard is not None else CopyGuard()

    def _ms(self, t: float) -> float:
        return (t - self.started) * 1000.0

    def _emit(self, p: Progress) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(p)
        except Exception:  # a display bug must not lose the job
            log.exception("progress callback failed")

    def _state(self, provider: str) -> ProviderState:
        st = self.providers.get(provider)
        if st is None:
            st = self.providers[provider] = ProviderState(provider)
        return st

    def _reject(self, reason: str, provider: str | None, detail: str, now: float) -> None:
        self.rejected[reason] += 1
        log.debug("job %s: ignored %s from %s: %s", self.job.id[:12], reason, provider, detail)
        if provider is not None and provider in self.providers:
            self.providers[provider].rejected += 1
        self._emit(Progress("rejected", self._ms(now), provider, reason, detail))

    def mark_published(self, now: float) -> None:
        self.published_at = now
        self.guard.start(now)
        self._emit(Progress("published", self._ms(now), detail=self.job.id))

    def wake_at(self) -> float | None:
        """When :meth:`reveal_call` must be asked even if no event arrives (commit-reveal)."""
        return self.guard.wake_at()

    def reveal_call(self, now: float) -> tuple[str, ...] | None:
        """Commit-reveal: once the commitment window is due, close it and return the providers
        whose commitments count (the caller publishes the reveal call); None otherwise."""
        called = self.guard.take_reveal_call(now)
        if called is None:
            return None
        self._emit(
            Progress("window", self._ms(now), status="closed", detail=f"{len(called)} committed")
        )
        self.decision = self._decide(self.quorum.decision())
        self._check_end(now)
        return called

    def _decide(self, d: Decision) -> Decision:
        # With the window closed, only committed providers can still vote.
        if not d.exhausted and self.guard.hopeless(d):
            return replace(d, exhausted=True)
        return d

    @property
    def done(self) -> bool:
        return self.decision.reached or self.decision.exhausted

    def offer(self, event: Event, now: float) -> bool:
        """Take one (already signature-checked) event; True when the outcome is decided."""
        if self.done:
            return True
        if event.id in self.seen_ids:
            self._reject("duplicate", event.pubkey, "event seen before", now)
            return False
        self.seen_ids.add(event.id)
        try:
            if event.kind == KIND_FEEDBACK:
                self._on_feedback(parse_feedback(event, self.job, self.keys, verify=False), now)
            elif event.kind == self.job.kind + RESULT_OFFSET:
                self._on_result(
                    parse_result(
                        event, self.job, self.keys, max_bytes=self.max_result_bytes, verify=False
                    ),
                    now,
                )
            else:
                self._reject("wrong_kind", event.pubkey, f"kind {event.kind}", now)
        except JobRejected as exc:
            self._reject(exc.reason, event.pubkey, str(exc), now)
        return self.done

    def _on_feedback(self, fb: JobFeedback, now: float) -> None:
        committed = self.guard.on_feedback(fb, now)  # raises for a late commitment
        if self.first_feedback is None:
            self.first_feedback = now
        self.feedback.append(fb)
        st = self._state(fb.provider)
        st.feedback.append(fb)
        status = "committed" if committed else fb.status
        if st.result is None:  # a result outranks later chatter
            st.status = status
            st.extra = fb.extra
        self._emit(Progress("feedback", self._ms(now), fb.provider, status, fb.extra))
        if fb.status == ERROR and st.result is None:
            self.decision = self._decide(self.quorum.abstain(fb.provider))
            self._check_end(now)

    def _on_result(self, res: JobResult, now: float) -> None:
        if self.quorum.has_voted(res.provider):
            self.quorum.add(Vote(res.provider, res.content, res.event.id))  # counted as rejected
            self._reject("second_vote", res.provider, "provider already answered", now)
            return
        if self.first_result is None:
            self.first_result = now
        try:
            protection = self.guard.on_result(res, now)
        except JobRejected as exc:  # not counted under the copy policy: the provider is done
            self._reject(exc.reason, res.provider, str(exc), now)
            self.decision = self._decide(self.quorum.abstain(res.provider))
            self._check_end(now)
            return
        self.results.append(res)
        st = self._state(res.provider)
        st.result = res
        st.status = "answered"
        vote = Vote(res.provider, res.content, res.event.id, now - self.started, protection)
        self.decision = self._decide(self.quorum.add(vote))
        self._emit(
            Progress(
                "result",
                self._ms(now),
                res.provider,
                "answered",
                res.content[:200],
                text=res.content,
            )
        )
        self._check_end(now)

    def _check_end(self, now: float) -> None:
        d = self.decision
        if d.reached and self.quorum_at is None:
            self.quorum_at = now
            self._label(d)
            self._emit(Progress("reached", self._ms(now), status="reached", decision=d))
        elif d.exhausted:
            self._label(d)
            self._emit(Progress("failed", self._ms(now), status="exhausted", decision=d))

    def _label(self, d: Decision) -> None:
        agree = set(d.agreeing) if d.reached else set()
        for p in d.dissenting:
            self.providers[p].status = "dissented"
        for p in agree:
            self.providers[p].status = "agreed"

    def outcome(
        self, now: float, msats_paid: int = 0, msats_unknown: int = 0, payment: Any = None
    ) -> SwarmResult:
        if not self.decision.reached:
            self._label(self.decision)
        published = self.published_at if self.published_at is not None else now
        timings = Timings(
            published_ms=self._ms(published),
            first_feedback_ms=self._ms(self.first_feedback) if self.first_feedback else None,
            first_result_ms=self._ms(self.first_result) if self.first_result else None,
            quorum_ms=self._ms(self.quorum_at) if self.quorum_at is not None else None,
            total_ms=self._ms(now),
        )
        return SwarmResult(
            reached=self.decision.reached,
            text=self.decision.text,
            job=self.job,
            decision=self.decision,
            results=tuple(self.results),
            feedback=tuple(self.feedback),
            providers=dict(self.providers),
            rejected=dict(self.rejected),
            timings=timings,
            msats_paid=msats_paid,
            msats_unknown=msats_unknown,
            payment=payment,
        )


# --- the client ------------------------------------------------------------------------------


class _Inbox:
    """One shared ``#p`` subscription routed to jobs by ``e`` tag (``inbox=True``)."""

    def __init__(self, pool: RelayPool, me: str, kinds: Sequence[int]) -> None:
        # Replies carry their provider's clock: reach back as far as nip90 accepts a reply
        # stamped before its job, or a provider whose clock is behind ours is never heard.
        since = int(time.time()) - DEFAULT_SKEW_S
        self.sub = pool.subscribe(Filter(kinds=kinds, tags={"p": [me]}, since=since))
        self.routes: dict[str, asyncio.Queue[Event]] = {}
        self.unrouted = 0
        self.task = asyncio.create_task(self._run(), name="swarm inbox")

    async def _run(self) -> None:
        async for event in self.sub:
            e = event.tag_value("e")
            queue = self.routes.get(e) if e is not None else None
            if queue is None:
                self.unrouted += 1  # late answers to finished jobs, or not for a job of ours
                continue
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def open(self, job: Job) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=INBOX_QUEUE)
        for i in job.ids:
            self.routes[i] = queue
        return queue

    def close_job(self, job: Job) -> None:
        for i in job.ids:
            self.routes.pop(i, None)

    async def close(self) -> None:
        self.sub.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def _refusals(result: SwarmResult) -> str:
    """Why providers said no, for the error a caller sees (a bid below their price is the
    usual reason): '; 2 provider(s) refused: bid at least 30000 msats ...'."""
    reasons = [
        st.extra or st.status
        for st in result.providers.values()
        if st.result is None and st.status in (ERROR, "payment-required")
    ]
    if not reasons:
        return ""
    common = Counter(reasons).most_common(1)[0][0]
    return f"; {len(reasons)} provider(s) refused: {common[:200]}"


def default_payments_db() -> Path:
    """Where the customer's payment ledger lives unless told otherwise:
    ``$NOSTR_SWARM_HOME/payments.db`` (``~/.nostr-swarm`` by default)."""
    home = Path(os.environ.get("NOSTR_SWARM_HOME") or Path.home() / ".nostr-swarm")
    home.mkdir(parents=True, exist_ok=True)
    return home / "payments.db"


class SwarmClient:
    """The customer side of the swarm. ``relays``: URLs or a started :class:`RelayPool` (then
    the caller owns it).

    Payment: with a ``wallet`` (any :class:`~client.wallet.Wallet`, e.g. ``NwcWallet``) the
    client pays the agreeing providers' invoices after each quorum, guarded (amount <= quote <=
    bid, budgets, expiry) and recorded in a persistent payment ledger at ``payments_db`` (see
    :func:`default_payments_db`) so that no invoice is ever paid twice, even across crashes;
    payments left open by a crash are settled on entering. ``pay`` replaces that with your own
    hook (see :meth:`settle`).

    No payment without a cap: when the client may pay, a job whose caller gives neither
    ``max_sats`` nor ``bid_msats`` is capped at ``max_sats`` (this constructor's, default
    ``$SWARM_MAX_SATS`` or :data:`DEFAULT_MAX_SATS`), and its request always carries a ``bid``
    tag, so an invoice above the bid is refused. A payment that has started runs to its
    outcome even if the caller is cancelled (see :meth:`complete`)."""

    def __init__(
        self,
        keys: Keys,
        relays: Sequence[str] | RelayPool,
        wallet: Wallet | None = None,
        *,
        pay: PayHook | None = None,
        payments_db: str | Path | None = None,
        inbox: bool = False,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        selector: Selector | None = None,
        reputation: ReputationLedger | None = None,
        max_sats: int | None = None,
    ) -> None:
        self.keys = keys
        self.wallet = wallet
        if max_sats is not None and (type(max_sats) is not int or max_sats < 0):
            raise ValueError("max_sats must be a non-negative whole number of sats")
        self.max_sats = max_sats if max_sats is not None else default_max_sats()
        # Discovery and reputation: who to ask, whose votes count, what to remember.
        self.selector = selector
        if reputation is None and selector is not None:
            reputation = selector.ledger
        self.reputation = reputation
        self.watcher: DirectoryWatcher | None = None  # feeds selector.directory while open
        self._pay = pay
        self.payer: Any = None
        if pay is None and wallet is not None:
            from client.wallet import Payer, PaymentLedger, SwarmPayHook

            ledger = PaymentLedger(payments_db or default_payments_db())
            self.payer = Payer(wallet, ledger)
            self._pay = SwarmPayHook(self.payer)
        self._use_inbox = inbox
        if isinstance(relays, RelayPool):
            self.pool = relays
            self._own_pool = False
        else:
            self.pool = RelayPool(
                relays,
                keys=keys,
                connect_timeout=connect_timeout,
                publish_timeout=publish_timeout,
                # After a reconnect, `since` must allow for providers' clocks (see _Inbox).
                resubscribe_slack=DEFAULT_SKEW_S,
            )
            self._own_pool = True
        self._inbox: _Inbox | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._payments: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> SwarmClient:
        if self._own_pool:
            await self.pool.start()
        if self.payer is not None:
            settled = await self.payer.resolve_open()
            if settled:
                log.info("settled %d payment(s) left open by an earlier run", len(settled))
        if self._use_inbox:
            # Results of every text kind: 6050, and 6000-6002 (extraction, summary, translation).
            kinds = [k + RESULT_OFFSET for k in (5050, 5000, 5001, 5002)]
            kinds.append(KIND_FEEDBACK)
            self._inbox = _Inbox(self.pool, self.keys.public_key, kinds)
        if self.selector is not None and self.selector.directory is not None:
            from client.customer.directory import DirectoryWatcher

            self.watcher = DirectoryWatcher(self.pool, self.selector.directory)
            await self.watcher.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def may_pay(self) -> bool:
        """Whether completions may pay (a wallet or a ``pay`` hook)."""
        return self._pay is not None

    async def close(self) -> None:
        # Payments in progress run to their outcome (each is bounded by the wallet's timeout):
        # closing the wallet under them would leave money whose fate nobody records.
        if self._payments:
            await asyncio.wait(list(self._payments))
        # Let cancellations already on their way finish (briefly), then shut down.
        if self._background:
            await asyncio.wait(list(self._background), timeout=2.0)
        if self._inbox is not None:
            await self._inbox.close()
            self._inbox = None
        if self.watcher is not None:
            await self.watcher.close()
            self.watcher = None
        if self._own_pool:
            await self.pool.close()
        if self.payer is not None:
            self.payer.ledger.close()
            self.payer = None

    # --- one completion ------------------------------------------------------------------------

    async def complete(
        self,
        prompt: str,
        *,
        model: str | None = None,
        quorum: int = 2,
        max_sats: int | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - part of the public API
        bid_msats: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        params: Mapping[str, str | int | float] | None = None,
        targets: Sequence[str] | None = None,
        encrypt: bool | Encryption = False,
        comparator: Comparator | None = None,
        providers_expected: int | None = None,
        max_result_bytes: int = MAX_RESULT_BYTES,
        on_progress: ProgressCallback | None = None,
        cancel: bool = True,
        sealing: SealingMode = "off",
        commit_reveal: bool = False,
        commit_window: float | None = None,
        commit_quota: int | None = None,
        gate: PaymentGate | None = None,
        prepay: PrepayPolicy | None = None,
        kind: int = 5050,
    ) -> SwarmResult:
        """Ask for a completion agreed by ``quorum`` providers within ``timeout`` seconds.

        ``kind``: the NIP-90 job kind, 5050 (text generation) by default; 5000 (text
        extraction), 5001 (summarization) and 5002 (translation, target language in
        ``params={"language": ...}``) are asked the same way, with the same quorum, payment and
        reputation.

        ``targets``: provider keys to address (``p`` tags; required with ``encrypt``, which
        sends one sealed request per target). ``bid_msats`` defaults to ``max_sats`` split over
        the quorum. ``providers_expected`` (defaults to ``len(targets)``) lets the client give up
        early once agreement can no longer be reached. The default comparator is
        :class:`~client.customer.quorum.Normalized`. Raises :class:`QuorumNotReached` (with the
        partial :class:`SwarmResult` in ``received`` and the decision in ``decision``).

        Copy resistance (``docs/security.md``): ``sealing`` ``"prefer"`` or ``"require"`` asks
        providers to encrypt their results to us (clear-text results then count but are
        marked copyable, or do not count). ``commit_reveal`` asks them to commit to their
        answer first; the window closes ``commit_window`` seconds after publishing (default:
        half the timeout) or once ``commit_quota`` commitments are in (default: the providers
        expected, if known). ``SwarmResult.protection`` says how each counted vote travelled.

        Money: ``max_sats`` caps what the job pays in all (default when the client may pay: the
        client's ``max_sats``); ``gate`` (a :class:`~client.wallet.payments.PaymentGate`, e.g.
        a gateway request's hold) must authorize each payment too. ``timeout`` is one deadline
        for the quorum; the payment after it runs to its outcome, bounded by the wallet's own
        timeout, and is shielded from cancellation: a caller cancelled while paying is
        cancelled, but the payment finishes and its outcome reaches ``gate`` and the ledger.
        ``SwarmResult.msats_unknown`` counts payments whose outcome the wallet has not told yet.
        ``prepay`` (opt-in; client/customer/prepay.py) pays ``payment-required`` invoices before any
        result, for DVMs that work only once paid: within the bid, at most the quorum size.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        target_list = tuple(dict.fromkeys(targets or ()))
        comp = comparator if comparator is not None else Normalized()
        selection = self._select(quorum, target_list, model, prompt, max_tokens)
        if selection is not None and self.selector is not None:
            target_list = selection.targets
            members = len(selection.members) if not selection.broadcast else None
            n = providers_expected if providers_expected is not None else members
            engine: Quorum = self.selector.quorum(quorum, selection, comp, n)
        else:
            n = providers_expected if providers_expected is not None else (len(target_list) or None)
            engine = Quorum(quorum, n, comp)
        if max_sats is not None and (type(max_sats) is not int or max_sats < 0):
            raise ValueError("max_sats must be a non-negative whole number of sats")
        if bid_msats is not None and (type(bid_msats) is not int or bid_msats < 0):
            raise ValueError("bid_msats must be a non-negative whole number of msats")
        if self._pay is not None and max_sats is None:
            # Never pay an uncapped price: a bid alone caps each provider, else the default.
            max_sats = -(-bid_msats * quorum // 1000) if bid_msats is not None else self.max_sats
        if bid_msats is None and max_sats is not None:
            bid_msats = max_sats * 1000 // quorum
        if bid_msats is not None and max_sats is not None:
            bid_msats = min(bid_msats, max_sats * 1000)
        scheme: Encryption | None = None
        if encrypt:
            scheme = "nip44" if encrypt is True else encrypt
        policy = CopyPolicy(
            sealing,
            commit_reveal,
            window_s=commit_window if commit_window is not None else timeout / 2,
            quota=commit_quota if commit_quota is not None else n,
        )
        spec = JobSpec(
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            params={**dict(params or {}), **policy.params()},
            bid_msats=bid_msats,
            relays=tuple(self.pool.urls),
            targets=target_list,
            expiration=int(time.time() + timeout) + EXPIRATION_SLACK_S,
            encryption=scheme,
            kind=kind,
        )
        job = build_job(self.keys, spec)
        off_loop = bool(getattr(comp, "blocking", False))
        if off_loop and on_progress is not None:
            # The collector then runs on a worker thread: progress reaches the caller on the loop.
            on_progress = _on_loop(loop, on_progress)
        collector = JobCollector(
            job,
            self.keys,
            engine,
            started=started,
            max_result_bytes=max_result_bytes,
            on_progress=on_progress,
            guard=CopyGuard(policy),
        )
        source = self._open(job)
        book = self._prepay_book(prepay, quorum, bid_msats, target_list)
        prepaying: set[asyncio.Task[None]] = set()

        def after(event: Event) -> None:
            if book is not None and event.kind == KIND_FEEDBACK:
                self._prepay(book, collector, event, prepaying, bid_msats, max_sats, gate)

        published = finished = False
        try:
            await self._publish_job(job)
            published = True
            collector.mark_published(loop.time())
            await self._collect(job, collector, source, started + timeout, after, off_loop)
            finished = True
        finally:
            source.close()
            self._absorb_pool_counts(collector, source)
            if cancel and published:
                reason = "quorum reached" if collector.decision.reached else "gave up"
                self._spawn(self._cancel(job, reason if finished else "cancelled"))
        result = collector.outcome(loop.time())
        if not result.reached and book is not None:
            # What was paid in advance travels with the error: the caller must charge it.
            if prepaying:
                await asyncio.wait(prepaying)
            if book.paid_msats or book.unknown:
                result = collector.outcome(
                    loop.time(),
                    msats_paid=book.paid_msats,
                    msats_unknown=sum(book.unknown.values()),
                )
        if not result.reached:
            await self._record(off_loop, result, target_list, comp, spec)
            d = result.decision
            why = "no agreement possible" if d.exhausted else f"timed out after {timeout:g} s"
            raise QuorumNotReached(
                f"quorum {quorum} not reached ({why}): {len(result.results)} result(s), "
                f"largest agreeing group {d.leading}" + _refusals(result),
                received=result,
                decision=d,
            )
        to_settle = result
        if book is not None:  # a provider paid in advance is not paid again
            if prepaying:
                await asyncio.wait(prepaying)
            to_settle = Unbilled(result, book)  # type: ignore[assignment]
        paid, unknown, payment = await self._settle_shielded(to_settle, max_sats, gate)
        if book is not None:
            paid += book.paid_msats
            unknown += sum(book.unknown.values())
        if paid or unknown or payment is not None:
            result = collector.outcome(
                loop.time(), msats_paid=paid, msats_unknown=unknown, payment=payment
            )
        await self._record(off_loop, result, target_list, comp, spec)
        return result

    async def _settle_shielded(
        self, result: SwarmResult, max_sats: int | None, gate: PaymentGate | None
    ) -> tuple[int, int, Any]:
        """Pay, shielded from the caller's cancellation: (msats paid, msats of unknown outcome,
        the per-provider outcomes if the hook gives them)."""
        if self._pay is None or not result.reached:
            return 0, 0, None
        task = asyncio.ensure_future(self._settle(result, max_sats, gate))
        self._payments.add(task)
        task.add_done_callback(self._payments.discard)
        return await asyncio.shield(task)

    async def _settle(
        self, result: SwarmResult, max_sats: int | None, gate: PaymentGate | None
    ) -> tuple[int, int, Any]:
        assert self._pay is not None
        try:
            out = await self._pay(result, max_sats, gate)
        except Exception:
            # A pay hook that fails says nothing of what left the wallet: the payment ledger
            # (and the gate, which heard each authorized payment) keep what is known.
            log.exception("job %s: paying the quorum failed", result.job_id[:12])
            return 0, 0, None
        if isinstance(out, int):
            return out, 0, None
        return int(getattr(out, "paid_msats", 0)), int(getattr(out, "unknown_msats", 0)), out

    def _select(
        self,
        quorum: int,
        targets: tuple[str, ...],
        model: str | None,
        prompt: str,
        max_tokens: int | None,
    ) -> Selection | None:
        """With a selector: its pick (or the caller's ``targets``, as members if it admits
        them); raises NoProvidersAvailable when too few may count."""
        sel = self.selector
        if sel is None:
            return None
        if targets:
            from client.customer.selection import Selection

            members = frozenset(t for t in targets if sel.counts(t))
            if len(members) < quorum:
                raise NoProvidersAvailable(
                    f"quorum {quorum} needs {quorum} targets that may count; "
                    f"{len(members)} of {len(targets)} are allowed"
                )
            return Selection(targets, members, False, "explicit")
        return sel.select(
            quorum, model=model, prompt_tokens=estimate_tokens(prompt), max_tokens=max_tokens
        )

    async def _record(
        self,
        off_loop: bool,
        result: SwarmResult,
        targets: Sequence[str],
        comp: Comparator,
        spec: JobSpec,
    ) -> None:
        """:meth:`_remember`, on a worker thread when the comparator blocks: answers outside
        the quorum are judged against the agreed text with it."""
        if off_loop:
            await asyncio.to_thread(self._remember, result, targets, comp, spec)
        else:
            self._remember(result, targets, comp, spec)

    def _remember(
        self, result: SwarmResult, targets: Sequence[str], comp: Comparator, spec: JobSpec
    ) -> None:
        """Write the outcome to the reputation ledger, with determinism flags for providers
        whose announced weights claim the same output (a ledger failure never costs the
        answer)."""
        if self.reputation is None:
            return
        directory = self.selector.directory if self.selector is not None else None
        try:
            self.reputation.record_result(result, targets, comparator=comp)
            if directory is not None:
                from client.customer.reputation import flags_from_result

                flags = flags_from_result(
                    result,
                    directory.all(),
                    model=spec.model,
                    temperature=spec.temperature,
                    seed=spec.seed,
                )
                self.reputation.record_flags(flags)
        except Exception as exc:
            log.warning("job %s: reputation not recorded: %s", result.job_id[:12], exc)

    def _prepay_book(
        self,
        policy: PrepayPolicy | None,
        quorum: int,
        bid_msats: int | None,
        targets: Sequence[str],
    ) -> PrepayBook | None:
        if policy is None:
            return None
        if getattr(self._pay, "payer", None) is None:
            raise ValueError("prepay needs a wallet (or a pay hook with a payer)")
        return PrepayBook(policy, quorum=quorum, bid_msats=bid_msats, targets=targets)

    def _prepay(
        self,
        book: PrepayBook,
        collector: JobCollector,
        event: Event,
        tasks: set[asyncio.Task[None]],
        bid_msats: int | None,
        max_sats: int | None,
        gate: PaymentGate | None,
    ) -> None:
        """Pay a ``payment-required`` feedback now if the book allows it (in the background:
        collecting goes on; ``close`` waits for it like for any payment)."""
        fb = collector.feedback[-1] if collector.feedback else None
        if fb is None or fb.event.id != event.id:  # refused by the parser: nothing to pay
            return
        decision = book.consider(fb, decided=collector.done)
        if not isinstance(decision, Prepay):
            if decision.reason != "not_asked":
                log.info(
                    "job %s: not paying %s in advance: %s",
                    collector.job.id[:12],
                    decision.provider[:12],
                    decision.reason,
                )
            return
        task = asyncio.ensure_future(
            self._pay_first(book, collector.job.id, decision, bid_msats, max_sats, gate)
        )
        for group in (tasks, self._payments):
            group.add(task)
            task.add_done_callback(group.discard)

    async def _pay_first(
        self,
        book: PrepayBook,
        job_id: str,
        p: Prepay,
        bid_msats: int | None,
        max_sats: int | None,
        gate: PaymentGate | None,
    ) -> None:
        payer = getattr(self._pay, "payer", None)
        assert payer is not None
        out = await payer.pay(
            job_id,
            p.provider,
            p.invoice,
            quote_msats=p.amount_msats,
            bid_msats=bid_msats,
            job_budget_msats=None if max_sats is None else max_sats * 1000,
            gate=gate,
        )
        book.settle(
            p.provider,
            paid=out.status == "paid",
            unknown=out.status == "unknown",
            msats=out.amount_msats if out.status == "paid" else None,
        )

    async def _collect(
        self,
        job: Job,
        collector: JobCollector,
        source: _Source,
        end: float,
        after: Callable[[Event], None] | None = None,
        off_loop: bool = False,
    ) -> None:
        """Feed events to ``collector`` until the outcome is decided or ``end`` (loop time);
        with commit-reveal, publish the reveal call when the commitment window is due.
        ``off_loop``: the comparator blocks (it asks a judge model), so each event is offered
        on a worker thread, one at a time, and the loop keeps serving the relays."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            called = collector.reveal_call(now)
            if called:
                await self._call_reveal(job, called)
            if collector.done or now >= end:
                return
            wake = collector.wake_at()
            try:
                async with asyncio.timeout_at(end if wake is None else min(end, wake)):
                    event = await source.next()
            except TimeoutError:
                continue
            if off_loop:
                await asyncio.to_thread(collector.offer, event, loop.time())
            else:
                collector.offer(event, loop.time())
            if after is not None:
                after(event)

    async def _call_reveal(self, job: Job, providers: Sequence[str]) -> None:
        try:
            await self.pool.publish(build_reveal_call(self.keys, job, providers))
        except Exception as exc:  # the providers then time out; the job fails on its timeout
            log.warning("job %s: reveal call not published: %s", job.id[:12], exc)

    async def settle(
        self, result: SwarmResult, max_sats: int | None, gate: PaymentGate | None = None
    ) -> int:
        """Pay the agreeing providers; returns msats paid. The seam for payments: with a ``pay``
        hook it is called with the result (``invoices``/``quotes`` per provider), the cap and
        the gate; without one nothing is paid."""
        paid, _, _ = await self._settle_shielded(result, max_sats, gate)
        return paid

    async def cancel(self, job: Job, reason: str = "cancelled") -> None:
        """Publish a kind-5 deletion of the job's request(s) so providers can stop."""
        await self._cancel(job, reason)

    # --- plumbing ------------------------------------------------------------------------------

    async def _publish_job(self, job: Job) -> None:
        if len(job.requests) == 1:
            await self.pool.publish(job.requests[0])
            return
        outcomes = await asyncio.gather(
            *(self.pool.publish(r) for r in job.requests), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if len(errors) == len(outcomes):
            raise errors[0]
        for err in errors:  # some sealed requests got out: go on with those providers
            log.warning("job %s: a sealed request was not published: %s", job.id[:12], err)

    async def _cancel(self, job: Job, reason: str) -> None:
        try:
            deletion = build_deletion(self.keys, job.ids, kind=job.kind, reason=reason)
            await self.pool.publish(deletion)
        except Exception as exc:  # best effort: the job expires anyway
            log.debug("job %s: cancel not published: %s", job.id[:12], exc)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _open(self, job: Job) -> _Source:
        if self._inbox is not None:
            return _Source(queue=self._inbox.open(job), inbox=self._inbox, job=job)
        flt = Filter(kinds=[job.kind + RESULT_OFFSET, KIND_FEEDBACK], tags={"e": list(job.ids)})
        return _Source(sub=self.pool.subscribe(flt))

    @staticmethod
    def _absorb_pool_counts(collector: JobCollector, source: _Source) -> None:
        sub = source.sub
        if sub is None:
            return
        if sub.rejected:
            collector.rejected["forged"] += sub.rejected
        if sub.duplicates:
            collector.rejected["duplicate"] += sub.duplicates


@dataclass(slots=True)
class _Source:
    """Where one job's events come from: its own subscription or the shared inbox."""

    sub: Subscription | None = None
    queue: asyncio.Queue[Event] | None = None
    inbox: _Inbox | None = None
    job: Job | None = None

    async def next(self) -> Event:
        if self.sub is not None:
            return await self.sub.__anext__()
        assert self.queue is not None
        return await self.queue.get()

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
        elif self.inbox is not None and self.job is not None:
            self.inbox.close_job(self.job)
