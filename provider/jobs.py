"""The provider's job book: the state of every job, the backend's slots and queue, and what to
do next. Pure: ``JobBook.on(job_id, event, now)`` takes what happened and returns the effects
to carry out; :mod:`provider.node` carries them out (relays, backend, wallet, store, timers) and
reports each outcome back as a new event. States change here and nowhere else.

States (``STATES``), and where each event may take a job (:data:`TRANSITIONS`)::

    new ──Offered──▶ refused | awaiting_payment | queued | running | failed (expired)
    new ──Refused──▶ refused                      (intake said no, or the rate limit)
    new ──Resumed──▶ awaiting_payment | queued | running | held | publishing | failed
                                                       (restart, fleet takeover: CRASH_POINTS)
    awaiting_payment ──Invoiced──▶ awaiting_payment (payment-required out, payment watched)
                     ──Paid──▶ queued | running | failed (expired)
                     ──PaymentLapsed / InvoiceFailed──▶ failed
    queued ──(a slot frees)──▶ running | failed (expired before it started)
    running ──Completed──▶ invoicing | recording | failed (left out of the call)
            ──BackendFailed──▶ failed
    invoicing ──Invoiced / InvoiceFailed──▶ recording | failed
    recording ──ResultRecorded──▶ committing | publishing | failed   (the store holds the result)
              ──RecordFailed──▶ failed (quietly, left open in the store, as if the node died)
              ──LeaseLost──▶ released (another node owns the job)
    committing ──Published──▶ held | publishing | failed     (commitment out: hold the result)
    held ──RevealCalled──▶ publishing | failed    ──RevealTimedOut──▶ failed
    publishing ──Published──▶ done    ──PublishFailed──▶ failed
    any open state ──CancelRequested──▶ cancelled (not once paid, not once publishing)
                   ──LeaseLost──▶ released (another node of the fleet took it over)
                   ──Shutdown / GraceOver──▶ failed (kept open in the store when paid;
                                             not once publishing: it goes out)

A result is recorded in the store (signed, with its invoice) before anything of it goes out,
and only by the node that owns the job: from then on the job's answer is that one event,
whichever node publishes it. :data:`CRASH_POINTS` lists where a node may die mid-job and what
the node that takes the job over (or the next run) does there.

``refused``, ``done``, ``failed``, ``cancelled`` and ``released`` are terminal: every event is
absorbed there without an effect. An event a state does not list is :class:`InvalidTransition`;
one for a job the book does not know is :class:`UnknownJob`. Jobs holding a slot of the backend
(``max_concurrent``) are the ones running, invoicing, recording, committing, or publishing what
they just made; the others wait in a FIFO of ``queue_size`` (a paid job waits whatever its length).
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, get_args

from client.dvm.nip90 import ERROR, PAYMENT_REQUIRED, PROCESSING, SUCCESS, JobRequest, build_result
from client.dvm.sealing import commit
from client.dvm.tokens import estimate_tokens
from router.errors import BackendError, BackendNotFound, CircuitBreakerOpen, RouterError
from router.types import LmUsage

from .announce import PaymentPolicy
from .errors import ProviderError
from .intake import Accept, Refuse
from .limits import Limits
from .pricing import Pricing

if TYPE_CHECKING:
    from client.nostr.event import Event as NostrEvent
    from client.nostr.keys import Keys

    from .store import JobRow

State = Literal[
    "new",
    "refused",
    "awaiting_payment",
    "queued",
    "running",
    "invoicing",
    "recording",
    "committing",
    "held",
    "publishing",
    "done",
    "failed",
    "cancelled",
    "released",
]
STATES: tuple[State, ...] = get_args(State)
TERMINAL: frozenset[State] = frozenset(("refused", "done", "failed", "cancelled", "released"))
#: Ended jobs the book still knows (so late events for them are absorbed, not errors).
MAX_ENDED = 10_000
# Upstream addresses are the operator's business, not the customer's.
_ADDRESS = re.compile(
    r"\b(?:https?|wss?)://\S+|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\blocalhost(?::\d+)?\b"
)


class JobBookError(ProviderError):
    """The job book was asked something its table does not allow (a bug in the caller)."""


class UnknownJob(JobBookError):
    pass


class InvalidTransition(JobBookError):
    pass


# --- events: what happened ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offered:
    """Intake accepted a new job (``provider.intake.Accept``)."""

    accept: Accept


@dataclass(frozen=True, slots=True)
class Refused:
    """Intake refused a new job; ``notify``: say so (a rate-limited flood is told once)."""

    refusal: Refuse
    notify: bool = True


@dataclass(frozen=True, slots=True)
class Resumed:
    """A job found open in the store: after a restart, or taken over from a dead node of the
    fleet. ``paid``: its payment-required invoice was paid; ``payment_hash``: the invoice it
    already has (one is never made twice), ``bolt11`` that invoice (asked for again, as it is);
    ``result_event``: the signed result the store recorded (published as it is: the same
    event, the same invoice); ``held``: that result is a commit-reveal one still waiting for
    the customer's reveal call."""

    accept: Accept
    paid: bool = False
    payment_hash: str | None = None
    result_event: str | None = None
    held: bool = False
    bolt11: str | None = None

    @classmethod
    def from_row(cls, row: JobRow, accept: Accept) -> Resumed:
        """The job as the store kept it; a price the customer was already asked stands."""
        if row.quote_msats is not None:
            accept = replace(accept, quote_msats=row.quote_msats)
        return cls(
            accept,
            row.paid,
            row.payment_hash,
            row.result_event,
            held=row.state == "held",
            bolt11=row.bolt11,
        )


@dataclass(frozen=True, slots=True)
class Invoiced:
    bolt11: str
    payment_hash: str


@dataclass(frozen=True, slots=True)
class InvoiceFailed:
    error: str


@dataclass(frozen=True, slots=True)
class Paid:
    pass


@dataclass(frozen=True, slots=True)
class PaymentLapsed:
    """The payment-required invoice expired (or the job did) unpaid."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The backend answered. ``salt``: the commit-reveal salt, when :class:`RunBackend` asked
    for one."""

    text: str
    model: str
    usage: LmUsage
    salt: str | None = None


@dataclass(frozen=True, slots=True)
class BackendFailed:
    reason: str  # timeout, unknown_model, backend, internal
    message: str


@dataclass(frozen=True, slots=True)
class ResultRecorded:
    """The store holds the job's signed result event (``event``, its JSON)."""

    event: str


@dataclass(frozen=True, slots=True)
class RecordFailed:
    """The store could not record the result (it is down, the disk is full)."""

    error: str


@dataclass(frozen=True, slots=True)
class Published:
    pass


@dataclass(frozen=True, slots=True)
class PublishFailed:
    pass


@dataclass(frozen=True, slots=True)
class RevealCalled:
    """A reveal call (commit-reveal) naming this job, signed by ``customer``."""

    customer: str
    names_us: bool


@dataclass(frozen=True, slots=True)
class RevealTimedOut:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """A NIP-09 deletion of the job, signed by ``by``."""

    by: str


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """The fleet's store says another node owns the job now (a lease renewal, or a write the
    store refused because the job is no longer this node's)."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The node stopped taking jobs (sent to every open job by :meth:`JobBook.close`)."""


@dataclass(frozen=True, slots=True)
class GraceOver:
    """The shutdown grace ran out (sent to every open job by :meth:`JobBook.end_grace`)."""


@dataclass(frozen=True, slots=True)
class SlotFree:
    """A slot of the backend passed to this queued job (the book's own event)."""


Event = (
    Offered
    | Refused
    | Resumed
    | Invoiced
    | InvoiceFailed
    | Paid
    | PaymentLapsed
    | Completed
    | BackendFailed
    | ResultRecorded
    | RecordFailed
    | Published
    | PublishFailed
    | RevealCalled
    | RevealTimedOut
    | CancelRequested
    | LeaseLost
    | Shutdown
    | GraceOver
    | SlotFree
)

# --- effects: what to do -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreUpdate:
    job_id: str
    state: str  # a provider.store state
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StorePaid:
    job_id: str


@dataclass(frozen=True, slots=True)
class SendFeedback:
    job_id: str
    request: JobRequest
    status: str
    extra: str = ""
    amount_msats: int | None = None
    bolt11: str | None = None


@dataclass(frozen=True, slots=True)
class RunBackend:
    """Run the model; report :class:`Completed` (with a new salt when ``salt``) or
    :class:`BackendFailed`."""

    job_id: str
    accept: Accept
    salt: bool = False


@dataclass(frozen=True, slots=True)
class MakeInvoice:
    """Ask the wallet for an invoice; report :class:`Invoiced` or :class:`InvoiceFailed`."""

    job_id: str
    amount_msats: int
    memo: str


@dataclass(frozen=True, slots=True)
class WatchPayment:
    """Report :class:`Paid` once the wallet shows the invoice settled, :class:`PaymentLapsed`
    if it expires or ``deadline`` (unix s) passes first."""

    job_id: str
    payment_hash: str
    deadline: float


@dataclass(frozen=True, slots=True)
class Result:
    """A kind-6050 result to build (``client.dvm.nip90.build_result``)."""

    request: JobRequest
    text: str
    model: str
    usage: LmUsage
    amount_msats: int | None = None
    bolt11: str | None = None
    seal: str | None = None
    salt: str | None = None

    def signed(self, keys: Keys, *, created_at: int | None = None) -> NostrEvent:
        """The signed result event: what :class:`RecordResult` records, and then publishes."""
        return build_result(
            keys,
            self.request,
            self.text,
            model=self.model,
            usage=self.usage,
            amount_msats=self.amount_msats,
            bolt11=self.bolt11,
            seal=self.seal,
            salt=self.salt,
            created_at=created_at,
        )


@dataclass(frozen=True, slots=True)
class RecordResult:
    """Build and sign the result event (``client.dvm.nip90.build_result``) and record it in the
    store with ``state`` (``publishing``, or ``held`` for a commit-reveal result) and
    ``fields``, if this node still owns the job; report :class:`ResultRecorded` with the
    event's JSON, :class:`LeaseLost` when the store says the job is another node's, or
    :class:`RecordFailed`."""

    job_id: str
    result: Result
    state: Literal["publishing", "held"]
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Publish the recorded result event (``event``, its JSON, as the store holds it); report
    :class:`Published` or :class:`PublishFailed`."""

    job_id: str
    event: str


@dataclass(frozen=True, slots=True)
class PublishCommitment:
    """Publish the commitment feedback; report :class:`Published` or :class:`PublishFailed`."""

    job_id: str
    request: JobRequest
    commitment: str


@dataclass(frozen=True, slots=True)
class CancelWork:
    """Stop whatever is under way for the job (it reports nothing more)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Report :class:`RevealTimedOut` after ``delay`` seconds, unless stopped."""

    job_id: str
    delay: float


@dataclass(frozen=True, slots=True)
class StopTimer:
    job_id: str


@dataclass(frozen=True, slots=True)
class Log:
    job_id: str
    message: str
    warning: bool = False


Effect = (
    StoreUpdate
    | StorePaid
    | SendFeedback
    | RunBackend
    | MakeInvoice
    | WatchPayment
    | RecordResult
    | PublishResult
    | PublishCommitment
    | CancelWork
    | StartTimer
    | StopTimer
    | Log
)

# --- the table ---------------------------------------------------------------------------------


def _to(*states: State) -> frozenset[State]:
    return frozenset(states)


#: state -> event -> the states the event may lead to (the state itself: stays). An event missing
#: from a state's row is an InvalidTransition; terminal states absorb every event.
TRANSITIONS: dict[State, dict[type[Event], frozenset[State]]] = {
    "new": {
        Offered: _to("refused", "awaiting_payment", "queued", "running", "failed"),
        Refused: _to("refused"),
        Resumed: _to("awaiting_payment", "queued", "running", "held", "publishing", "failed"),
    },
    "awaiting_payment": {
        Invoiced: _to("awaiting_payment"),
        InvoiceFailed: _to("failed"),
        Paid: _to("queued", "running", "failed"),
        PaymentLapsed: _to("failed"),
        CancelRequested: _to("cancelled", "awaiting_payment"),
        RevealCalled: _to("awaiting_payment"),
        LeaseLost: _to("released"),
        Shutdown: _to("failed"),
        GraceOver: _to("failed"),
    },
    "queued": {
        SlotFree: _to("running", "failed"),
        CancelRequested: _to("cancelled", "queued"),
        RevealCalled: _to("queued"),
        LeaseLost: _to("released"),
        Shutdown: _to("queued", "failed"),
        GraceOver: _to("failed"),
    },
    "running": {
        Completed: _to("invoicing", "recording", "failed"),
        BackendFailed: _to("failed"),
        CancelRequested: _to("cancelled", "running"),
        RevealCalled: _to("running"),
        LeaseLost: _to("released"),
        Shutdown: _to("running"),
        GraceOver: _to("failed"),
    },
    "invoicing": {
        Invoiced: _to("recording", "failed"),
        InvoiceFailed: _to("recording", "failed"),
        CancelRequested: _to("cancelled", "invoicing"),
        RevealCalled: _to("invoicing"),
        LeaseLost: _to("released"),
        Shutdown: _to("invoicing"),
        GraceOver: _to("failed"),
    },
    "recording": {
        ResultRecorded: _to("committing", "publishing", "failed"),
        RecordFailed: _to("failed"),
        # The store's conditional write decides: recorded (ours), or the job is another node's.
        LeaseLost: _to("released"),
        CancelRequested: _to("cancelled", "recording"),
        RevealCalled: _to("recording"),
        Shutdown: _to("recording"),
        GraceOver: _to("failed"),
    },
    "committing": {
        Published: _to("held", "publishing", "failed"),
        PublishFailed: _to("failed"),
        CancelRequested: _to("cancelled", "committing"),
        RevealCalled: _to("committing"),
        LeaseLost: _to("released"),
        Shutdown: _to("committing"),
        GraceOver: _to("failed"),
    },
    "held": {
        RevealCalled: _to("publishing", "failed", "held"),
        RevealTimedOut: _to("failed"),
        CancelRequested: _to("cancelled", "held"),
        LeaseLost: _to("released"),
        Shutdown: _to("held"),
        GraceOver: _to("publishing", "failed"),
    },
    "publishing": {
        Published: _to("done"),
        PublishFailed: _to("failed"),
        # Once the result is on its way it is the customer's: these change nothing.
        CancelRequested: _to("publishing"),
        RevealCalled: _to("publishing"),
        LeaseLost: _to("publishing"),
        Shutdown: _to("publishing"),
        GraceOver: _to("publishing"),
    },
}
#: Events that create a job (the others need one the book knows).
CREATING = (Offered, Refused, Resumed)


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """A point where a node may die mid-job: what the store holds then (``stored``), what the
    node that takes the job over does (``next_node``: a fleet's, or the same node restarted
    for the jobs :func:`resumable` keeps), and what may be left over (``leftover``)."""

    name: str
    stored: str
    next_node: str
    leftover: str = "nothing"


#: Every crash point of a job, in the order a job reaches them. None gives the customer a second
#: answer or a second invoice to pay: a node publishes only what it recorded first, and a
#: result is recorded once per job (docs/provider-guide.md shows the same table).
CRASH_POINTS: tuple[CrashPoint, ...] = (
    CrashPoint(
        "claimed",
        "the claim and the request",
        "runs it (payment before: invoices it first)",
        "a second processing feedback",
    ),
    CrashPoint(
        "invoice made, not recorded",
        "the claim",
        "makes its own invoice (before: before it runs; after: with its result)",
        "an invoice the wallet issued that no customer saw; it expires unpaid "
        "(the window: the wallet's answer to the store write, about a millisecond)",
    ),
    CrashPoint(
        "payment asked (before)",
        "the payment-required invoice",
        "asks for it again (the same invoice: the first request may never have gone out), "
        "watches it, and runs the job once it is paid",
        "the same payment-required feedback twice",
    ),
    CrashPoint("paid (before)", "the invoice, paid", "runs it; no new invoice"),
    CrashPoint(
        "model answered, not recorded",
        "as before the run",
        "runs the model again (the first answer never went out)",
        "the model's work, done twice",
    ),
    CrashPoint(
        "result recorded",
        "the signed result event, with its invoice (after)",
        "publishes that event: same id, same invoice",
    ),
    CrashPoint(
        "commitment out (commit-reveal)",
        "the signed result, held",
        "holds it for the customer's reveal call, then publishes it or withholds it",
        "a reveal call sent while no node held the job (before the lease ran out) is missed: "
        "the job ends reveal_timeout, result withheld",
    ),
    CrashPoint(
        "result published, not done",
        "the signed result event",
        "publishes it again: relays keep one copy (same id), the customer sees one answer",
    ),
    CrashPoint("done", "the job, done", "nothing: the job is closed"),
)


# --- the jobs ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    """One job as the book sees it. Read-only outside this module. ``accept``: what intake
    accepted (None for a refused job)."""

    request: JobRequest
    received_at: float
    accept: Accept | None = None
    state: State = "new"
    paid: bool = False  # payment "before" settled: never dropped, resumed after a restart
    payment_hash: str | None = None
    amount_msats: int | None = None  # what the result asks for (payment "after")
    bolt11: str | None = None
    slot: bool = False  # holds one of the backend's slots
    reveal: RevealCalled | None = None  # the customer's reveal call, if it came early
    result: Result | None = None
    recorded: str | None = None  # the signed result event the store holds (JSON)
    recorded_held: bool = False  # ... recorded as held: the store is told when it goes out
    hold_s: float = 0.0
    run_at: float = 0.0
    backend_s: float = 0.0
    handed_over_at: float = 0.0
    reason: str | None = None  # why it ended, when it did not end done
    kept_open: bool = False  # ended here, open in the store: served after a restart

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def work(self) -> Accept:
        if self.accept is None:
            raise JobBookError(f"job {self.id[:12]} was never accepted")
        return self.accept


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
    released: int = 0  # jobs another node of the fleet took over from this one
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


def resumable(
    paid: bool, payment_hash: str | None, request: str | None, result_event: str | None = None
) -> bool:
    """Whether a job the last run left open is taken up after a restart: paid ones are served,
    ones awaiting payment go on waiting, recorded results go out; the rest are closed (their
    customers have moved on). It needs its request, kept in the store."""
    return request is not None and (paid or payment_hash is not None or result_event is not None)


def backend_failure(exc: BaseException, model: str, job_timeout: float) -> BackendFailed:
    """What a backend call's exception tells the customer (no upstream addresses)."""
    if isinstance(exc, TimeoutError):
        return BackendFailed(
            "timeout",
            f"the model did not answer within {job_timeout:g} s; "
            "ask for fewer tokens or another provider",
        )
    if isinstance(exc, BackendNotFound):
        return BackendFailed("unknown_model", f"model {model} is not available here now")
    if isinstance(exc, CircuitBreakerOpen):
        return BackendFailed("backend", "the model backend is down; try another provider")
    if isinstance(exc, (BackendError, RouterError)):
        return BackendFailed(
            "backend", f"the model backend failed: {clean_error(exc)}; try another provider"
        )
    return BackendFailed("internal", f"internal error in the provider ({type(exc).__name__})")


def clean_error(exc: BaseException) -> str:
    """An error as a customer may read it: no upstream addresses or names, one line, short."""
    text = str(exc)
    name = getattr(exc, "backend", None)
    if isinstance(name, str) and name and text.startswith(f"{name}: "):
        text = text[len(name) + 2 :]
    text = _ADDRESS.sub("<upstream>", text).replace("\n", " ").strip()
    return (text or type(exc).__name__)[:200]


class JobBook:
    """Every job of one node, by request id. ``provider``: the node's public key (commitments
    name it); ``wallet``: whether the node can issue invoices."""

    def __init__(
        self,
        *,
        provider: str,
        payment: PaymentPolicy,
        limits: Limits,
        pricing: Pricing,
        wallet: bool,
        invoice_expiry_s: float,
        reveal_timeout_s: float,
        stats: ProviderStats | None = None,
    ) -> None:
        if payment != "free" and not wallet:
            raise ProviderError(f"payment {payment!r} needs a wallet to issue invoices")
        self.provider = provider
        self.payment: PaymentPolicy = payment
        self.limits = limits
        self.pricing = pricing
        self.wallet = wallet
        self.invoice_expiry_s = invoice_expiry_s
        self.reveal_timeout_s = reveal_timeout_s
        self.stats = stats if stats is not None else ProviderStats()
        self._slots = 0  # jobs holding a slot of the backend (Job.slot)
        self._waiting: deque[Job] = deque()  # queued jobs, first come first served
        self._hold_slots = False  # while a batch is applied: freed slots are passed on after it
        self._open: dict[str, Job] = {}
        self._ended: OrderedDict[str, Job] = OrderedDict()
        self.closing = False
        self.grace_over = False

    # --- reading ---------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        return self._open.get(job_id) or self._ended.get(job_id)

    def knows(self, job_id: str) -> bool:
        return job_id in self._open or job_id in self._ended

    def open_jobs(self) -> list[Job]:
        return list(self._open.values())

    @property
    def slots_in_use(self) -> int:
        return self._slots

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def unpaid(self) -> int:
        return sum(1 for j in self._open.values() if j.state == "awaiting_payment")

    def slot_holders(self) -> list[str]:
        return [j.id for j in self._open.values() if j.slot]

    # --- events ----------------------------------------------------------------------------

    def on(self, job_id: str, event: Event, now: float) -> list[Effect]:
        """What ``event`` means for the job, as effects to carry out in order."""
        job = self._open.get(job_id)
        if isinstance(event, (Offered, Refused, Resumed)):  # CREATING
            request = event.refusal.request if isinstance(event, Refused) else event.accept.request
            if request.id != job_id:
                raise JobBookError(f"event for {request.id[:12]} sent as {job_id[:12]}")
            if job is not None or job_id in self._ended:
                return []  # seen before (another relay, a second takeover): ignored
            if isinstance(event, Refused):
                return self._refused(event, now)
            if self.closing:
                return []  # intake has stopped; the store keeps the claim, a restart closes it
            job = Job(request, now, event.accept)
            if isinstance(event, Offered):
                return self._offered(job, now)
            return self._resumed(job, event, now)
        if isinstance(event, SlotFree):
            raise JobBookError("a slot is the book's to give (SlotFree is its own event)")
        if job is None:
            ended = self._ended.get(job_id)
            if ended is None:
                raise UnknownJob(f"no job {job_id[:12]}")
            return []  # terminal states absorb every event
        allowed = TRANSITIONS[job.state]
        if type(event) not in allowed:
            raise InvalidTransition(
                f"job {job_id[:12]}: {type(event).__name__} is not allowed in state {job.state}"
            )
        return self._handle(job, event, now)

    def cancel(self, job_ids: list[str], by: str, now: float) -> list[Effect]:
        """One deletion naming several jobs: every one is withdrawn before a slot freed by one
        of them passes on (a queued job named with a running one must not start)."""
        effects: list[Effect] = []
        self._hold_slots = True
        try:
            for job_id in job_ids:
                if self.knows(job_id):
                    effects += self.on(job_id, CancelRequested(by), now)
        finally:
            self._hold_slots = False
        return effects + self._fill(now)

    def close(self, now: float) -> list[Effect]:
        """Stop taking jobs: unpaid waiting jobs end now; running, held and paid ones get the
        shutdown grace."""
        self.closing = True
        return self._to_all(Shutdown(), now)

    def end_grace(self, now: float) -> list[Effect]:
        """The grace is over: what still runs ends (paid work is kept open for a restart);
        held paid results go out; nothing new starts."""
        self.closing = True
        self.grace_over = True
        return self._to_all(GraceOver(), now)

    def set_pricing(self, pricing: Pricing) -> None:
        self.pricing = pricing

    def _to_all(self, event: Event, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for job in list(self._open.values()):
            if job.id in self._open:
                effects += self.on(job.id, event, now)
        return effects

    # --- transitions -----------------------------------------------------------------------

    def _unqueue(self, job: Job) -> None:
        if job.state == "queued" and job in self._waiting:
            self._waiting.remove(job)

    def _move(self, job: Job, state: State, event: Event) -> None:
        """The one place a job's state changes, checked against the table."""
        allowed = TRANSITIONS.get(job.state, {}).get(type(event), frozenset())
        if state not in allowed:
            raise InvalidTransition(
                f"job {job.id[:12]}: {type(event).__name__} cannot move {job.state} to {state}"
            )
        job.state = state
        if state in TERMINAL:
            self._open.pop(job.id, None)
            self._ended[job.id] = job
            while len(self._ended) > MAX_ENDED:
                self._ended.popitem(last=False)

    def _handle(self, job: Job, event: Event, now: float) -> list[Effect]:
        match event:
            case Invoiced() | InvoiceFailed() if job.state == "awaiting_payment":
                return self._payment_invoice(job, event, now)
            case Invoiced() | InvoiceFailed():
                return self._result_invoice(job, event, now)
            case Paid():
                return self._paid(job, event, now)
            case PaymentLapsed():
                return self._fail(
                    job,
                    event,
                    now,
                    "unpaid",
                    "no payment arrived before the invoice expired; job dropped",
                )
            case Completed():
                return self._completed(job, event, now)
            case BackendFailed():
                return self._fail(job, event, now, event.reason, event.message)
            case ResultRecorded():
                return self._recorded(job, event, now)
            case RecordFailed():
                return self._unrecorded(job, event, now)
            case Published():
                return self._published(job, event, now)
            case PublishFailed():
                return self._publish_failed(job, event, now)
            case RevealCalled():
                return self._reveal_called(job, event, now)
            case RevealTimedOut():
                return self._fail(
                    job,
                    event,
                    now,
                    "reveal_timeout",
                    f"no reveal call from the customer within {job.hold_s:g} s; result withheld",
                )
            case CancelRequested():
                return self._cancel(job, event, now)
            case LeaseLost():
                return self._lease_lost(job, event, now)
            case Shutdown():
                return self._shutdown(job, event, now)
            case GraceOver():
                return self._grace_over(job, event, now)
        raise InvalidTransition(f"job {job.id[:12]}: no handler for {type(event).__name__}")

    # new jobs

    def _refused(self, event: Refused, now: float) -> list[Effect]:
        refusal = event.refusal
        job = Job(refusal.request, now)
        self._open[job.id] = job
        return self._refuse(job, event, now, refusal, notify=event.notify)

    def _refuse(
        self, job: Job, event: Event, now: float, refusal: Refuse, *, notify: bool = True
    ) -> list[Effect]:
        self.stats.refused[refusal.reason] += 1
        job.reason = refusal.reason
        self._move(job, "refused", event)
        req = refusal.request
        effects: list[Effect] = [StoreUpdate(job.id, "refused", {"reason": refusal.reason})]
        if notify:
            effects.append(SendFeedback(job.id, req, ERROR, refusal.message, refusal.amount_msats))
            effects.append(
                Log(
                    job.id,
                    f"job {job.id[:12]} customer {req.customer[:12]} refused "
                    f"({refusal.reason}): {refusal.message}",
                )
            )
        return effects

    def _busy(self, job: Job, event: Event, now: float) -> list[Effect]:
        self._open[job.id] = job
        message = (
            f"busy: {self._slots} jobs running and {len(self._waiting)} waiting "
            "(queue full); try again shortly or ask another provider"
        )
        return self._refuse(job, event, now, Refuse(job.request, "busy", message))

    def _pays_first(self, job: Job) -> bool:
        return self.payment == "before" and job.work.quote_msats > 0 and not job.paid

    def _offered(self, job: Job, now: float) -> list[Effect]:
        accept = job.work
        event = Offered(accept)
        if self._pays_first(job):
            if self.unpaid >= self.limits.max_unpaid or not self._has_room():
                return self._busy(job, event, now)
            self.stats.accepted += 1
            self._open[job.id] = job
            self._move(job, "awaiting_payment", event)
            return [
                StoreUpdate(
                    job.id,
                    "awaiting_payment",
                    {
                        "model": accept.model,
                        "quote_msats": accept.quote_msats,
                        "request": accept.request.event.to_json(),
                    },
                ),
                self._invoice_for_payment(job),
            ]
        admission = self._admit(job)
        if admission == "busy":
            return self._busy(job, event, now)
        self.stats.accepted += 1
        self._open[job.id] = job
        if admission == "run":
            return self._start(job, event, now)
        self._move(job, "queued", event)
        return [
            StoreUpdate(
                job.id, "queued", {"model": accept.model, "quote_msats": accept.quote_msats}
            )
        ]

    def _resumed(self, job: Job, event: Resumed, now: float) -> list[Effect]:
        job.paid = event.paid
        job.payment_hash = event.payment_hash
        self._open[job.id] = job
        if event.result_event is not None:
            # Answered already (recorded before anything went out): that event, nothing new.
            job.recorded = event.result_event
            if event.held:
                job.recorded_held = True
                return self._hold(job, event, now)
            return self._publish(job, event, now)
        # An invoice already asked for stands, whatever the policy is now.
        if not job.paid and (job.payment_hash is not None or self._pays_first(job)):
            self._move(job, "awaiting_payment", event)
            if job.payment_hash is None:
                return [self._invoice_for_payment(job)]
            watch = WatchPayment(job.id, job.payment_hash, self._payment_deadline(job, now))
            if event.bolt11 is None:
                return [watch]
            # The node that asked may have died before its request reached the customer: ask
            # again, with the same invoice (one invoice, however often it is shown).
            return [self._ask_payment(job, event.bolt11), watch]
        # Work already promised (paid, or sold without payment first) waits for a slot,
        # however long the queue.
        if self._admit(job, force=True) == "run":
            return self._start(job, event, now)
        self._move(job, "queued", event)
        return []

    # payment before work

    def _invoice_for_payment(self, job: Job) -> MakeInvoice:
        return MakeInvoice(job.id, job.work.quote_msats, f"nostr-swarm job {job.id}")

    def _payment_deadline(self, job: Job, now: float) -> float:
        deadline = now + self.invoice_expiry_s
        if job.request.expiration is not None:
            deadline = min(deadline, job.request.expiration)
        return deadline

    def _payment_invoice(
        self, job: Job, event: Invoiced | InvoiceFailed, now: float
    ) -> list[Effect]:
        if isinstance(event, InvoiceFailed):
            return self._fail(
                job,
                event,
                now,
                "wallet",
                "this node cannot issue an invoice right now; try another",
            )
        if job.payment_hash is not None:
            raise InvalidTransition(f"job {job.id[:12]}: a second payment-required invoice")
        quote = job.work.quote_msats
        job.payment_hash = event.payment_hash
        self._move(job, "awaiting_payment", event)
        return [
            StoreUpdate(
                job.id,
                "awaiting_payment",
                {"payment_hash": event.payment_hash, "bolt11": event.bolt11, "amount_msats": quote},
            ),
            self._ask_payment(job, event.bolt11),
            WatchPayment(job.id, event.payment_hash, self._payment_deadline(job, now)),
        ]

    def _ask_payment(self, job: Job, bolt11: str) -> SendFeedback:
        quote = job.work.quote_msats
        return SendFeedback(
            job.id,
            job.request,
            PAYMENT_REQUIRED,
            f"pay {quote / 1000:g} sats to start; the invoice expires in "
            f"{self.invoice_expiry_s:g} s",
            quote,
            bolt11,
        )

    def _paid(self, job: Job, event: Paid, now: float) -> list[Effect]:
        self.stats.paid_before += 1
        job.paid = True
        effects: list[Effect] = [StorePaid(job.id)]
        # Paid work is never refused as busy: it waits for a slot.
        if self._admit(job, force=True) == "run":
            return effects + self._start(job, event, now)
        self._move(job, "queued", event)
        return [
            *effects,
            StoreUpdate(job.id, "queued"),
            SendFeedback(
                job.id, job.request, PROCESSING, "payment received; waiting for a free slot"
            ),
        ]

    # the work

    def _has_room(self) -> bool:
        return self._slots < self.limits.max_concurrent or self.waiting < self.limits.queue_size

    def _admit(self, job: Job, *, force: bool = False) -> Literal["run", "queued", "busy"]:
        """A free slot (``run``), a place in the queue, or ``busy``; ``force``: never busy (work
        already paid or promised)."""
        if self._slots < self.limits.max_concurrent and not self._waiting:
            return "run"
        if force or self.waiting < self.limits.queue_size:
            self._waiting.append(job)
            return "queued"
        return "busy"

    def _start(self, job: Job, event: Event, now: float) -> list[Effect]:
        """Run the job on a free slot, or end it if it expired meanwhile."""
        req = job.request
        if req.expiration is not None and req.expiration <= now:
            # Nobody waits for it any more: end it silently.
            self.stats.failed["expired"] += 1
            job.reason = "expired"
            self._move(job, "failed", event)
            return [StoreUpdate(job.id, "failed", {"reason": "expired"})]
        job.slot = True
        self._slots += 1
        job.run_at = now
        self._move(job, "running", event)
        return [
            SendFeedback(job.id, req, PROCESSING),
            RunBackend(job.id, job.work, salt=job.work.commit),
        ]

    def _fill(self, now: float) -> list[Effect]:
        """Free slots go to the jobs waiting longest (after the grace: to nobody)."""
        effects: list[Effect] = []
        if self._hold_slots or self.grace_over:
            return effects
        while self._slots < self.limits.max_concurrent and self._waiting:
            nxt = self._waiting.popleft()
            if self.closing and not nxt.paid:
                effects += self._fail(
                    nxt,
                    SlotFree(),
                    now,
                    "shutdown",
                    "provider is shutting down; ask another provider",
                )
            else:
                effects += self._start(nxt, SlotFree(), now)
        return effects

    def _release(self, job: Job, now: float) -> list[Effect]:
        if not job.slot:
            return []
        job.slot = False
        self._slots -= 1
        return self._fill(now)

    def _completed(self, job: Job, event: Completed, now: float) -> list[Effect]:
        accept = job.work
        req = job.request
        job.backend_s = now - job.run_at
        usage = event.usage
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            p, c = estimate_tokens(req.prompt), estimate_tokens(event.text)
            usage = LmUsage(p, c, p + c)
        if accept.commit and event.salt is None:
            raise JobBookError(f"job {job.id[:12]}: a commit-reveal result without a salt")
        job.result = Result(
            req,
            event.text,
            event.model or accept.model,
            usage,
            seal=accept.seal,
            salt=event.salt if accept.commit else None,
        )
        if self.payment == "after" and accept.quote_msats > 0 and not job.paid:
            amount = self.pricing.charge(
                accept.model, usage.prompt_tokens, usage.completion_tokens, accept.quote_msats
            )
            if req.bid_msats is not None:
                amount = min(amount, req.bid_msats)
            job.amount_msats = amount
            if amount > 0 and self.wallet:
                self._move(job, "invoicing", event)
                return [MakeInvoice(job.id, amount, f"nostr-swarm job {job.id}")]
        return self._deliver(job, event, now)

    def _result_invoice(
        self, job: Job, event: Invoiced | InvoiceFailed, now: float
    ) -> list[Effect]:
        effects: list[Effect] = []
        if isinstance(event, Invoiced):
            job.bolt11 = event.bolt11
            job.payment_hash = event.payment_hash
        else:  # the result still goes out, with the amount alone
            effects.append(
                Log(
                    job.id,
                    f"wallet could not issue an invoice for {job.id[:12]}: {event.error}",
                    warning=True,
                )
            )
        return effects + self._deliver(job, event, now)

    def _deliver(self, job: Job, event: Event, now: float) -> list[Effect]:
        """The result is ready (and invoiced): record it, signed, before any of it goes out."""
        assert job.result is not None
        result = job.result = replace(job.result, amount_msats=job.amount_msats, bolt11=job.bolt11)
        if result.salt is not None and job.reveal is not None and not job.reveal.names_us:
            return self._settle(job, event, now)  # the window closed without us: withheld
        held = result.salt is not None and job.reveal is None
        usage = result.usage
        fields: dict[str, object] = {
            "model": result.model,
            "quote_msats": job.work.quote_msats,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        }
        if job.bolt11 is not None:
            fields["amount_msats"] = job.amount_msats
            fields["payment_hash"] = job.payment_hash
            fields["bolt11"] = job.bolt11
        job.recorded_held = held
        self._move(job, "recording", event)
        return [RecordResult(job.id, result, "held" if held else "publishing", fields)]

    def _recorded(self, job: Job, event: ResultRecorded, now: float) -> list[Effect]:
        """The store holds the result: publish it, or commit to it first."""
        assert job.result is not None
        job.recorded = event.event
        if job.result.salt is None:
            return self._publish(job, event, now)
        if job.reveal is not None:  # the window closed while we were working
            return self._settle(job, event, now)
        self._move(job, "committing", event)
        value = commit(job.id, self.provider, job.result.text, job.result.salt)
        return [PublishCommitment(job.id, job.request, value)]

    def _publish(self, job: Job, event: Event, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if job.recorded_held:
            # The store says so first: a node taking the job over then publishes it too.
            job.recorded_held = False
            effects.append(StoreUpdate(job.id, "publishing"))
        self._move(job, "publishing", event)
        job.handed_over_at = now
        assert job.recorded is not None
        return [*effects, PublishResult(job.id, job.recorded)]

    def _hold(self, job: Job, event: Event, now: float) -> list[Effect]:
        """Hold a committed result for the customer's reveal call (off the backend's slots)."""
        hold = self.reveal_timeout_s
        if job.request.expiration is not None:
            hold = min(hold, max(job.request.expiration - now, 0.0))
        job.hold_s = hold
        self._move(job, "held", event)
        # Holding costs memory, not capacity: the slot goes to the next job.
        return [StartTimer(job.id, hold), *self._release(job, now)]

    def _published(self, job: Job, event: Published, now: float) -> list[Effect]:
        if job.state == "committing":
            self.stats.committed += 1
            if job.reveal is not None:  # it came while the commitment was on its way
                return self._settle(job, event, now)
            return self._hold(job, event, now)
        return self._done(job, event, now)

    def _done(self, job: Job, event: Event, now: float) -> list[Effect]:
        accept = job.work
        req = job.request
        # A result taken over as recorded was made (and counted) by another node.
        usage = job.result.usage if job.result is not None else LmUsage(0, 0, 0)
        model = job.result.model if job.result is not None else accept.model
        latency_ms = (now - job.received_at) * 1000
        amount, bolt11 = job.amount_msats, job.bolt11
        billed = amount if bolt11 else (accept.quote_msats if self.payment == "before" else 0)
        self.stats.completed += 1
        self.stats.tokens += usage.prompt_tokens + usage.completion_tokens
        self.stats.billed_msats += billed or 0
        self.stats.overhead_ms.append((job.handed_over_at - job.received_at - job.backend_s) * 1000)
        fields: dict[str, object] = {"latency_ms": round(latency_ms, 3)}
        if self.payment == "before":
            fields["request"] = None
        self._move(job, "done", event)
        return [
            # The store first: a node that dies between the two leaves the job done, never
            # open to be answered again.
            StoreUpdate(job.id, "done", fields),
            SendFeedback(job.id, req, SUCCESS, "", amount, bolt11),
            Log(
                job.id,
                f"job {job.id[:12]} customer {req.customer[:12]} model {model} tokens "
                f"{usage.prompt_tokens}+{usage.completion_tokens} sats {(billed or 0) / 1000:g} "
                f"latency {latency_ms:.1f} ms: done",
            ),
            *self._release(job, now),
        ]

    def _publish_failed(self, job: Job, event: PublishFailed, now: float) -> list[Effect]:
        if job.state == "committing":
            return self._fail(
                job, event, now, "publish", "could not publish the commitment; ask another provider"
            )
        # No relay took the result: telling the customer would fail the same way.
        return self._fail(job, event, now, "publish", "", feedback=False)

    # commit-reveal

    def _reveal_called(self, job: Job, event: RevealCalled, now: float) -> list[Effect]:
        if event.customer != job.request.customer or job.state == "publishing":
            return []  # not the job's customer, or the result is out already
        if job.state != "held":
            if job.reveal is None:
                job.reveal = event  # still working: settled when the result is ready
            return []
        return self._settle(job, event, now)

    def _settle(self, job: Job, event: Event, now: float) -> list[Effect]:
        """The customer's reveal call decides: reveal if it names us, else withhold."""
        call = event if isinstance(event, RevealCalled) else job.reveal
        if call is None:
            raise JobBookError(f"job {job.id[:12]}: settled without a reveal call")
        if not call.names_us:
            return self._fail(
                job,
                event,
                now,
                "commit_late",
                "the customer closed the commitment window without our commitment; result withheld",
            )
        self.stats.revealed += 1
        effects: list[Effect] = [StopTimer(job.id)] if job.state == "held" else []
        # A revealed result holds no slot while it goes out.
        return effects + self._publish(job, event, now) + self._release(job, now)

    # the ends

    def _fail(
        self,
        job: Job,
        event: Event,
        now: float,
        reason: str,
        message: str,
        *,
        keep_open: bool = False,
        feedback: bool = True,
        cancel_work: bool = False,
    ) -> list[Effect]:
        """End an accepted job with ``error`` feedback. ``keep_open``: a paid job the store
        keeps open, so the next run serves it."""
        self.stats.failed[reason] += 1
        latency_ms = (now - job.received_at) * 1000
        req = job.request
        was = job.state
        job.reason = reason
        job.kept_open = keep_open
        self._unqueue(job)
        self._move(job, "failed", event)
        effects: list[Effect] = []
        if cancel_work:
            effects.append(CancelWork(job.id))
        if was == "held":
            effects.append(StopTimer(job.id))
        if keep_open:
            effects.append(StoreUpdate(job.id, "queued", {"reason": reason}))
        else:
            effects.append(
                StoreUpdate(
                    job.id, "failed", {"reason": reason, "latency_ms": round(latency_ms, 3)}
                )
            )
        if feedback:
            effects.append(SendFeedback(job.id, req, ERROR, message))
        effects.append(
            Log(
                job.id,
                f"job {job.id[:12]} customer {req.customer[:12]} model {job.work.model} "
                f"tokens 0+0 sats 0 latency {latency_ms:.1f} ms: failed ({reason}) {message}",
            )
        )
        return effects + self._release(job, now)

    def _cancel(self, job: Job, event: CancelRequested, now: float) -> list[Effect]:
        """The customer withdrew the job: drop it unless paid for (the customer paid for the
        answer) or already on its way."""
        if event.by != job.request.customer or job.paid or job.state == "publishing":
            return []
        was = job.state
        self._unqueue(job)
        self.stats.cancelled += 1
        job.reason = "cancelled"
        self._move(job, "cancelled", event)
        effects: list[Effect] = [StoreUpdate(job.id, "failed", {"reason": "cancelled"})]
        if was == "held":
            effects.append(StopTimer(job.id))
        elif was != "queued":
            effects.append(CancelWork(job.id))  # running, or waiting for its payment
        effects.append(Log(job.id, f"job {job.id[:12]} cancelled by its customer"))
        return effects + self._release(job, now)

    def _unrecorded(self, job: Job, event: RecordFailed, now: float) -> list[Effect]:
        """The store could not record the result, so none of it goes out: the job ends here
        without a word, open in the store for the node that takes it over (another of the
        fleet, or this one after a restart) to answer, as if this node had died."""
        self.stats.failed["store"] += 1
        job.reason = "store"
        job.kept_open = True
        self._move(job, "failed", event)
        message = (
            f"job {job.id[:12]}: the store could not record its result ({event.error}); "
            "left open for the fleet or the next run"
        )
        return [Log(job.id, message, warning=True), *self._release(job, now)]

    def _lease_lost(self, job: Job, event: LeaseLost, now: float) -> list[Effect]:
        """Another node of the fleet took the job over (ours stalled past the lease): it
        answers; this node stops without a word."""
        if job.state == "publishing":
            return []
        was = job.state
        self._unqueue(job)
        self.stats.released += 1
        job.reason = "lease_lost"
        self._move(job, "released", event)
        effects: list[Effect] = []
        if was == "held":
            effects.append(StopTimer(job.id))
        elif was != "queued":
            effects.append(CancelWork(job.id))
        effects.append(
            Log(job.id, f"job {job.id[:12]} was taken over by another node", warning=True)
        )
        return effects + self._release(job, now)

    def _shutdown(self, job: Job, event: Shutdown, now: float) -> list[Effect]:
        if job.state == "awaiting_payment":
            return self._fail(
                job,
                event,
                now,
                "shutdown",
                "provider is shutting down; do not pay its invoice",
                cancel_work=True,
            )
        if job.state == "queued" and not job.paid:
            return self._fail(
                job, event, now, "shutdown", "provider is shutting down; ask another provider"
            )
        return []  # running, held and paid work get the grace

    def _grace_over(self, job: Job, event: GraceOver, now: float) -> list[Effect]:
        if job.state == "held":
            # No reveal call can reach us any more: a paid job's result goes out now (the
            # customer paid for it), the others end with error.
            if job.paid:
                return [StopTimer(job.id), *self._publish(job, event, now)]
            return self._fail(
                job,
                event,
                now,
                "shutdown",
                "provider is shutting down before your reveal call; result withheld",
            )
        if job.state == "queued":
            return self._fail(
                job,
                event,
                now,
                "shutdown",
                "provider stopped before your paid job ran; it runs when the provider is back",
                keep_open=True,
            )
        if job.state == "publishing":
            # Its recorded result is on its way: the node waits for it (cut short, the store
            # still holds it for the next run or another node: the same event, never an error
            # after it).
            return []
        then = "it runs when the provider is back" if job.paid else "ask another provider"
        return self._fail(
            job,
            event,
            now,
            "shutdown",
            f"provider stopped before the job finished; {then}",
            keep_open=job.paid,
            cancel_work=True,
        )


__all__ = [
    "CRASH_POINTS",
    "STATES",
    "TERMINAL",
    "TRANSITIONS",
    "BackendFailed",
    "CancelRequested",
    "CancelWork",
    "Completed",
    "CrashPoint",
    "Effect",
    "Event",
    "GraceOver",
    "InvalidTransition",
    "InvoiceFailed",
    "Invoiced",
    "Job",
    "JobBook",
    "JobBookError",
    "LeaseLost",
    "Log",
    "MakeInvoice",
    "Offered",
    "Paid",
    "PaymentLapsed",
    "ProviderStats",
    "PublishCommitment",
    "PublishFailed",
    "PublishResult",
    "Published",
    "RecordFailed",
    "RecordResult",
    "Refused",
    "Result",
    "ResultRecorded",
    "Resumed",
    "RevealCalled",
    "RevealTimedOut",
    "RunBackend",
    "SendFeedback",
    "Shutdown",
    "SlotFree",
    "StartTimer",
    "State",
    "StopTimer",
    "StorePaid",
    "StoreUpdate",
    "UnknownJob",
    "WatchPayment",
    "backend_failure",
    "clean_error",
    "resumable",
]
