"""The provider's job book (provider/jobs.py): its table, its crash points, and a stateful
property test of its transitions.

Random runs of requests, duplicates, payments arriving late or never, backend successes and
failures, commit-reveal calls, cancellations, lease losses, takeovers, shutdowns and crash
restarts, and, for a fleet, nodes that die at any point (work under way done in the world or
not) or stall past their lease while another node takes their jobs over, with each effect
carried out as the node does (one real SQLite job store shared by every node's connection,
writes fenced by owner; real result and feedback events through the client/dvm builders), must
keep these true: a job has at most one distinct result event and one answer (a result or an
error), at most one invoice the customer is shown, no node invoices a job twice and its owner
never invoices a job whose invoice or result is recorded, it never runs unpaid under payment
``before``, a revealed result matches its one commitment, terminal states absorb, an event a
state does not list changes nothing, a job with work under way has exactly one piece of it,
slots never go below zero or above the limit, and every job ends in a terminal state or stays
open in the store to be resumed.

``JobBookMachine.TestCase`` runs ~200 examples here; tests/fuzz/test_job_book_fuzz.py runs
10,000 under ``pytest -m fuzz``. ``test_every_crash_point`` walks each of
``jobs.CRASH_POINTS`` once, for each payment policy."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from client.dvm.nip90 import (
    ERROR,
    PAYMENT_REQUIRED,
    JobRequest,
    JobSpec,
    build_feedback,
    build_request,
    parse_request,
)
from client.dvm.sealing import build_commitment, new_salt, verify_reveal
from client.nostr.event import Event
from client.nostr.keys import Keys
from client.wallet.invoices import make_invoice
from provider import jobs
from provider.intake import Accept, IntakePolicy, ModelCatalog, Refuse, evaluate
from provider.jobs import TERMINAL, TRANSITIONS, JobBook
from provider.limits import Limits
from provider.pricing import Pricing
from provider.store import JobRow, JobStore
from router.types import LmUsage

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()
STRANGER = Keys.generate()
WALLET_SECRET = hashlib.sha256(b"the provider's lightning node").hexdigest()
START = 1_700_000_000.0
MODEL = "m1"
PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)
LEASE_S = 10.0
OPEN_WITH_WORK = frozenset(
    ("awaiting_payment", "running", "invoicing", "recording", "committing", "publishing")
)
ASYNC = (
    jobs.RunBackend,
    jobs.MakeInvoice,
    jobs.WatchPayment,
    jobs.RecordResult,
    jobs.PublishResult,
    jobs.PublishCommitment,
)


def book(payment: str = "free", **limits: object) -> JobBook:
    return JobBook(
        provider=PROVIDER.public_key,
        payment=payment,  # type: ignore[arg-type]
        limits=Limits(**limits),  # type: ignore[arg-type]
        pricing=PRICING,
        wallet=True,
        invoice_expiry_s=600,
        reveal_timeout_s=30,
    )


def request(n: int, *, bid: int | None = None, commit: bool = False) -> JobRequest:
    params = {"commit": "sha256"} if commit else {}
    spec = JobSpec(
        prompt=f"job {n}", model=MODEL, max_tokens=100, bid_msats=bid, params=params, nonce=str(n)
    )
    return parse_request(build_request(CUSTOMER, spec, created_at=int(START)), keys=PROVIDER)


def accept(req: JobRequest, payment: str = "free") -> Accept:
    policy = IntakePolicy(
        keys=PROVIDER,
        limits=Limits(),
        pricing=PRICING,
        payment=payment,  # type: ignore[arg-type]
        catalog=ModelCatalog((MODEL,)),
    )
    decision = evaluate(req, policy)
    assert isinstance(decision, Accept)
    return decision


def kinds(effects: list[jobs.Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


# --- the table ---------------------------------------------------------------------------------


def test_the_table_names_every_open_state_and_only_those() -> None:
    assert set(TRANSITIONS) | TERMINAL == set(jobs.STATES)
    assert not set(TRANSITIONS) & TERMINAL
    for state, row in TRANSITIONS.items():
        for event, targets in row.items():
            assert targets <= set(jobs.STATES) - {"new"}, (state, event)


def test_an_event_a_state_does_not_list_is_an_error_and_changes_nothing() -> None:
    b = book()
    req = request(1)
    b.on(req.id, jobs.Offered(accept(req)), START)
    assert b.get(req.id).state == "running"  # type: ignore[union-attr]
    with pytest.raises(jobs.InvalidTransition, match="Paid is not allowed in state running"):
        b.on(req.id, jobs.Paid(), START)
    assert b.get(req.id).state == "running"  # type: ignore[union-attr]
    with pytest.raises(jobs.UnknownJob):
        b.on("00" * 32, jobs.Paid(), START)
    with pytest.raises(jobs.JobBookError, match="sent as"):
        b.on("00" * 32, jobs.Offered(accept(req)), START)
    with pytest.raises(jobs.JobBookError, match="book's to give"):
        b.on(req.id, jobs.SlotFree(), START)


def test_terminal_states_absorb_and_duplicates_are_ignored() -> None:
    b = book()
    req = request(1)
    b.on(req.id, jobs.Offered(accept(req)), START)
    b.on(req.id, jobs.BackendFailed("backend", "down"), START)
    assert b.get(req.id).state == "failed"  # type: ignore[union-attr]
    for event in (jobs.Paid(), jobs.Published(), jobs.Offered(accept(req)), jobs.LeaseLost()):
        assert b.on(req.id, event, START) == []
    assert b.get(req.id).state == "failed"  # type: ignore[union-attr]


def test_a_deletion_naming_a_running_and_a_queued_job_starts_neither() -> None:
    b = book(max_concurrent=1)
    first, second, third = request(1), request(2), request(3)
    for r in (first, second, third):
        b.on(r.id, jobs.Offered(accept(r)), START)
    assert [b.get(r.id).state for r in (first, second, third)] == ["running", "queued", "queued"]  # type: ignore[union-attr]
    effects = b.cancel([first.id, second.id], CUSTOMER.public_key, START)
    assert kinds(effects).count("RunBackend") == 1
    assert b.get(third.id).state == "running"  # type: ignore[union-attr]
    assert b.stats.cancelled == 2 and b.slots_in_use == 1
    # A stranger cannot cancel; a paid job runs on.
    assert b.cancel([third.id], STRANGER.public_key, START) == []


def test_a_result_is_recorded_before_it_is_published_and_the_store_is_told_first() -> None:
    b = book("after")
    req = request(1)
    b.on(req.id, jobs.Offered(accept(req, "after")), START)
    [make] = b.on(req.id, jobs.Completed("4", MODEL, LmUsage(10, 2, 12)), START)
    assert isinstance(make, jobs.MakeInvoice) and make.amount_msats == 2000  # the minimum
    invoice = make_invoice(WALLET_SECRET, amount_msats=2000, created_at=int(START))
    effects = b.on(req.id, jobs.Invoiced(invoice.bolt11, invoice.payment_hash), START)
    [record] = effects
    assert isinstance(record, jobs.RecordResult) and record.state == "publishing"
    assert record.result.bolt11 == invoice.bolt11 and record.result.amount_msats == 2000
    assert record.fields["payment_hash"] == invoice.payment_hash
    assert b.get(req.id).state == "recording"  # type: ignore[union-attr]
    effects = b.on(req.id, jobs.ResultRecorded('{"the": "signed event"}'), START)
    assert effects == [jobs.PublishResult(req.id, '{"the": "signed event"}')]
    effects = b.on(req.id, jobs.Published(), START)
    # Done in the store before the success feedback: a crash between them answers nothing again.
    assert kinds(effects)[:2] == ["StoreUpdate", "SendFeedback"]


def test_a_lost_record_releases_the_job_and_a_failed_one_ends_it_quietly() -> None:
    b = book()
    one, two = request(1), request(2)
    for r in (one, two):
        b.on(r.id, jobs.Offered(accept(r)), START)
        b.on(r.id, jobs.Completed("4", MODEL, LmUsage(1, 1, 2)), START)
    assert kinds(b.on(one.id, jobs.LeaseLost(), START)) == ["CancelWork", "Log"]
    assert b.get(one.id).state == "released"  # type: ignore[union-attr]
    # Nothing of an unrecorded result goes out, not even an error: the store keeps the job
    # open for whichever node takes it over, as after a crash.
    assert kinds(b.on(two.id, jobs.RecordFailed("disk full"), START)) == ["Log"]
    job = b.get(two.id)
    assert job is not None and job.state == "failed" and job.kept_open
    assert b.stats.failed["store"] == 1 and b.slots_in_use == 0


def test_a_taken_over_result_goes_out_as_recorded() -> None:
    """Resumed with a recorded result: that event is published (or held for the reveal call),
    nothing is run or invoiced; without one an unpaid job under payment before asks again for
    the invoice it has and waits for it (the takeover does not skip the payment)."""
    b = book("before")
    req, held, unpaid, fresh = request(1), request(2, commit=True), request(3), request(4)
    effects = b.on(req.id, jobs.Resumed(accept(req, "before"), True, "ab" * 32, "{}"), START)
    assert effects == [jobs.PublishResult(req.id, "{}")]
    effects = b.on(
        held.id, jobs.Resumed(accept(held, "before"), False, None, "{}", held=True), START
    )
    assert kinds(effects) == ["StartTimer"] and b.get(held.id).state == "held"  # type: ignore[union-attr]
    effects = b.on(held.id, jobs.RevealCalled(CUSTOMER.public_key, True), START)
    assert kinds(effects) == ["StopTimer", "StoreUpdate", "PublishResult"]
    invoice = make_invoice(WALLET_SECRET, amount_msats=3002, created_at=int(START))
    resumed = jobs.Resumed(
        accept(unpaid, "before"), False, invoice.payment_hash, bolt11=invoice.bolt11
    )
    ask, watch = b.on(unpaid.id, resumed, START)
    assert isinstance(ask, jobs.SendFeedback) and ask.bolt11 == invoice.bolt11
    assert watch == jobs.WatchPayment(unpaid.id, invoice.payment_hash, START + 600)
    effects = b.on(fresh.id, jobs.Resumed(accept(fresh, "before")), START)
    assert kinds(effects) == ["MakeInvoice"]
    assert b.slots_in_use == 0


def test_payment_before_invoices_once_and_runs_only_once_paid() -> None:
    b = book("before")
    req = request(1)
    effects = b.on(req.id, jobs.Offered(accept(req, "before")), START)
    assert kinds(effects) == ["StoreUpdate", "MakeInvoice"]
    invoice = make_invoice(WALLET_SECRET, amount_msats=3002, created_at=int(START))
    effects = b.on(req.id, jobs.Invoiced(invoice.bolt11, invoice.payment_hash), START)
    assert kinds(effects) == ["StoreUpdate", "SendFeedback", "WatchPayment"]
    with pytest.raises(jobs.InvalidTransition, match="second payment-required invoice"):
        b.on(req.id, jobs.Invoiced(invoice.bolt11, invoice.payment_hash), START)
    effects = b.on(req.id, jobs.Paid(), START)
    assert kinds(effects) == ["StorePaid", "SendFeedback", "RunBackend"]


def test_busy_when_the_queue_or_the_unpaid_list_is_full() -> None:
    b = book(max_concurrent=1, queue_size=0)
    one, two = request(1), request(2)
    b.on(one.id, jobs.Offered(accept(one)), START)
    effects = b.on(two.id, jobs.Offered(accept(two)), START)
    feedback = next(e for e in effects if isinstance(e, jobs.SendFeedback))
    assert feedback.status == ERROR and feedback.extra.startswith("busy: 1 jobs running")
    assert b.get(two.id).state == "refused" and b.stats.refused["busy"] == 1  # type: ignore[union-attr]
    b = book("before", max_unpaid=0)
    three = request(3)
    b.on(three.id, jobs.Offered(accept(three, "before")), START)
    assert b.get(three.id).state == "refused"  # type: ignore[union-attr]


# --- a fleet of books on one store, as provider/node.py runs each ------------------------------


@dataclass(eq=False)
class Node:
    """One node of the fleet: its book, its connection to the shared store (its owner id), the
    work under way per job and the reveal timers."""

    book: JobBook
    store: JobStore
    pending: dict[str, jobs.Effect] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)


class World:
    """Nodes sharing one job store (a SQLite file, one connection per node), the wallet, and
    what the customer was shown. Effects are carried out as provider/node.py does: a store
    write the store refuses (another node owns the job) silences the job's feedback in that
    batch and tells the book ``LeaseLost``."""

    def __init__(self, payment: str, limits: dict[str, int], *, fleet: bool) -> None:
        self.payment = payment
        self.limits = limits
        self.fleet = fleet
        self.dir = Path(tempfile.mkdtemp(prefix="jobbook-"))
        self.now = START
        self.nodes_made = 0
        self.builds = 0
        self.node = self.new_node()
        self.zombies: list[Node] = []  # stalled nodes whose jobs were taken over
        self.accepts: dict[str, Accept] = {}
        self.results: defaultdict[str, set[str]] = defaultdict(set)  # result event ids out
        self.commitments: defaultdict[str, set[str]] = defaultdict(set)
        self.shown: defaultdict[str, set[str]] = defaultdict(set)  # invoices the customer saw
        self.errors: Counter[str] = Counter()  # error feedback (an answer, unless kept open)
        self.made: Counter[tuple[str, str]] = Counter()  # invoices made, per (node, job)
        self.runs: Counter[str] = Counter()  # model runs per job
        self.paid: set[str] = set()  # jobs whose payment-required invoice was paid
        self.wallet_paid: set[str] = set()  # payment hashes settled in the wallet

    def new_node(self) -> Node:
        self.nodes_made += 1
        store = JobStore(
            self.dir / "jobs.sqlite",
            owner=f"node{self.nodes_made}",
            clock=lambda: self.now,
            lease_s=LEASE_S,
        )
        return Node(book(self.payment, **self.limits), store)

    def close(self) -> None:
        for node in (self.node, *self.zombies):
            node.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def live(self) -> list[Node]:
        return [self.node, *self.zombies]

    # --- effects --------------------------------------------------------------------------

    def on(self, node: Node, job_id: str, event: jobs.Event) -> None:
        self.apply(node, node.book.on(job_id, event, self.now))

    def apply(self, node: Node, effects: list[jobs.Effect]) -> None:
        lost: set[str] = set()
        for e in effects:
            assert node.book.knows(e.job_id), e
            if e.job_id in lost and isinstance(e, jobs.SendFeedback):
                continue
            if isinstance(e, ASYNC):
                # One piece of work per job at a time: the node keeps one task per job.
                assert e.job_id not in node.pending, (e, node.pending[e.job_id])
                node.pending[e.job_id] = e
            match e:
                case jobs.StoreUpdate(job_id, state, fields):
                    if not node.store.update(job_id, state, **fields):
                        lost.add(job_id)
                case jobs.StorePaid(job_id):
                    node.store.mark_paid(job_id)
                case jobs.SendFeedback(job_id, request, status, extra, amount, bolt11):
                    # The real builder: its amount rules hold for everything the book asks.
                    build_feedback(
                        PROVIDER, request, status, extra=extra, amount_msats=amount, bolt11=bolt11
                    )
                    job = node.book.get(job_id)
                    # A paid job kept for the next run is told so; its answer comes then.
                    if status == ERROR and not (job is not None and job.kept_open):
                        self.errors[job_id] += 1
                    if status == PAYMENT_REQUIRED and bolt11 is not None:
                        self.shown[job_id].add(bolt11)
                case jobs.RunBackend(job_id, work):
                    if self.payment == "before" and work.quote_msats > 0:
                        assert job_id in self.paid, "ran before it was paid"
                    self.runs[job_id] += 1
                case jobs.MakeInvoice(job_id):
                    self.made[(node.store.owner, job_id)] += 1
                    row = node.store.get(job_id)
                    assert row is not None
                    if row.owner == node.store.owner:
                        # The job's owner never asks twice: an invoice or a result recorded
                        # (by it or a node before it) is the job's one invoice.
                        assert row.payment_hash is None and row.result_event is None, row
                case jobs.PublishCommitment(job_id, request, commitment):
                    build_commitment(PROVIDER, request, commitment)
                case jobs.CancelWork(job_id):
                    node.pending.pop(job_id, None)
                case jobs.StartTimer(job_id, delay):
                    assert node.book.get(job_id).state == "held"  # type: ignore[union-attr]
                    node.timers[job_id] = self.now + delay
                case jobs.StopTimer(job_id):
                    node.timers.pop(job_id, None)
        for job_id in sorted(lost):
            self.on(node, job_id, jobs.LeaseLost())

    def complete(self, node: Node, job_id: str, ok: bool, tokens: int = 5) -> None:
        """The job's work under way on ``node`` ends, well (``ok``) or not."""
        op = node.pending.pop(job_id)
        event: jobs.Event
        match op:
            case jobs.RunBackend(_, _, salt):
                usage = LmUsage(tokens, tokens // 2, tokens + tokens // 2)
                event = (
                    jobs.Completed("4", MODEL, usage, new_salt() if salt else None)
                    if ok
                    else jobs.BackendFailed("timeout", "too slow")
                )
            case jobs.MakeInvoice(_, amount):
                if ok:
                    inv = make_invoice(WALLET_SECRET, amount_msats=amount, created_at=int(START))
                    event = jobs.Invoiced(inv.bolt11, inv.payment_hash)
                else:
                    event = jobs.InvoiceFailed("wallet away")
            case jobs.WatchPayment(_, payment_hash):
                if ok or payment_hash in self.wallet_paid:
                    self.pay(job_id, payment_hash)
                    event = jobs.Paid()
                else:
                    event = jobs.PaymentLapsed()
            case jobs.RecordResult():
                if not ok:
                    event = jobs.RecordFailed("disk full")
                else:
                    recorded = self.record(node, op)
                    event = jobs.ResultRecorded(recorded) if recorded else jobs.LeaseLost()
            case jobs.PublishResult(_, recorded):
                event = jobs.Published() if ok else jobs.PublishFailed()
                if ok:
                    self.published(job_id, recorded)
            case jobs.PublishCommitment(_, _, commitment):
                event = jobs.Published() if ok else jobs.PublishFailed()
                if ok:
                    self.commitments[job_id].add(commitment)
            case _:
                raise AssertionError(f"no work like {op}")
        self.on(node, job_id, event)

    def pay(self, job_id: str, payment_hash: str) -> None:
        self.wallet_paid.add(payment_hash)
        self.paid.add(job_id)

    def record(self, node: Node, op: jobs.RecordResult) -> str | None:
        """Sign the result as the node does and record it; None if the store refused."""
        self.builds += 1  # each build its own second: two builds are two distinct events
        recorded = op.result.signed(PROVIDER, created_at=int(START) + self.builds).to_json()
        ok = node.store.record_result(op.job_id, recorded, op.state, **op.fields)
        return recorded if ok else None

    def published(self, job_id: str, recorded: str) -> None:
        event = Event.from_json(recorded)  # verifies the signature
        assert event.tag_value("e") == job_id
        self.results[job_id].add(event.id)
        amount = next((t for t in event.tags if t[0] == "amount"), None)
        if amount is not None and len(amount) > 2:
            self.shown[job_id].add(amount[2])
        salt = event.tag_value("salt")
        for commitment in self.commitments[job_id]:
            assert salt is not None
            assert verify_reveal(commitment, job_id, PROVIDER.public_key, event.content, salt)

    # --- nodes dying, stalling, taking over --------------------------------------------------

    def die(self, node: Node, happened: dict[str, bool]) -> None:
        """The node's process ends. Work under way is lost, unless ``happened`` says it took
        effect in the world before the end (an invoice made, a payment made, a result recorded
        or published) without the node hearing of it."""
        for job_id, op in sorted(node.pending.items()):
            if not happened.get(job_id, False):
                continue
            match op:  # an invoice made is never shown: it expires unpaid
                case jobs.WatchPayment(_, payment_hash):
                    self.pay(job_id, payment_hash)
                case jobs.RecordResult():
                    self.record(node, op)
                case jobs.PublishResult(_, recorded):
                    self.published(job_id, recorded)
                case jobs.PublishCommitment(_, _, commitment):
                    self.commitments[job_id].add(commitment)
        node.pending.clear()
        node.timers.clear()

    def take_over(self) -> Node:
        """A new node finds the jobs whose lease ran out and takes each of them up, as
        ``ProviderNode._lease_loop`` does."""
        self.now += LEASE_S + 1
        node = self.new_node()
        while orphans := node.store.orphans():
            for orphan in orphans:
                row = node.store.take_over(orphan.id)
                assert row is not None and row.owner == node.store.owner
                self.resume(node, row)
        return node

    def restart(self, happened: dict[str, bool]) -> None:
        """The lone node (SQLite) dies and starts again: it adopts what it left open, and takes
        up what ``jobs.resumable`` keeps (``ProviderNode._resume``)."""
        old = self.node
        self.die(old, happened)
        self.node = self.new_node()
        old.store.close()
        for row in self.node.store.adopt():
            if jobs.resumable(row.paid, row.payment_hash, row.request, row.result_event):
                self.resume(self.node, row)
            else:
                assert self.node.store.update(row.id, "failed", reason="interrupted")

    def resume(self, node: Node, row: JobRow) -> None:
        self.on(node, row.id, jobs.Resumed.from_row(row, self.accepts[row.id]))

    # --- what must hold -------------------------------------------------------------------

    def check(self) -> None:
        for node in self.live:
            open_jobs = node.book.open_jobs()
            holding = sum(1 for j in open_jobs if j.slot)
            assert 0 <= node.book.slots_in_use == holding <= self.limits["max_concurrent"]
            assert node.book.waiting == sum(1 for j in open_jobs if j.state == "queued")
            for job in open_jobs:
                assert job.state not in TERMINAL and job.state != "new"
                assert (job.id in node.pending) == (job.state in OPEN_WITH_WORK), job.state
                assert (job.id in node.timers) == (job.state == "held"), job.state
                if job.state in ("running", "invoicing", "recording", "committing"):
                    assert job.slot
            for job_id in node.pending:
                assert node.book.get(job_id).state in OPEN_WITH_WORK  # type: ignore[union-attr]
        for job_id in set(self.results) | set(self.errors):
            # One answer per job: one result event (whoever published it), or one error.
            assert len(self.results[job_id]) + self.errors[job_id] <= 1, job_id
        assert all(len(s) <= 1 for s in self.shown.values()), self.shown
        assert all(len(s) <= 1 for s in self.commitments.values()), self.commitments
        assert all(n <= 1 for n in self.made.values()), self.made

    def finish(self) -> None:
        """Stalled nodes find out and finish what is theirs; the live node shuts down and lets
        every piece of work still under way finish: each job is then terminal, or open in the
        store only because it is paid and kept for the next run."""
        for zombie in self.zombies:
            lapsed = [j.id for j in zombie.book.open_jobs()]
            ours = zombie.store.renew(lapsed)
            for job_id in lapsed:
                if job_id not in ours:
                    self.on(zombie, job_id, jobs.LeaseLost())
            while zombie.pending:
                self.complete(zombie, sorted(zombie.pending)[0], ok=True)
            assert zombie.book.open_jobs() == [], zombie.book.open_jobs()
        node = self.node
        if not node.book.closing:
            self.apply(node, node.book.close(self.now))
        for job_id in sorted(node.pending):
            op = node.pending.get(job_id)
            if isinstance(op, jobs.RunBackend | jobs.MakeInvoice | jobs.PublishCommitment):
                self.complete(node, job_id, ok=True)  # within the grace
        if not node.book.grace_over:
            self.apply(node, node.book.end_grace(self.now))
        while node.pending:
            self.complete(node, sorted(node.pending)[0], ok=True)
        self.check()
        assert node.book.open_jobs() == []
        for row in node.store.open_jobs():
            job = node.book.get(row.id)
            if job is None:  # another run's job, left as that run left it
                continue
            if job.state == "released":
                continue
            assert job.kept_open, (job.state, row)
            if job.reason != "store":  # else left as a crash leaves it
                assert row.paid and jobs.resumable(
                    row.paid, row.payment_hash, row.request, row.result_event
                )


# --- the stateful property test ------------------------------------------------------------------


class JobBookMachine(RuleBasedStateMachine):
    """Drives the books of a fleet the way provider/node.py does and checks the invariants
    after every step (see the module docstring). ``fleet``: nodes share a store and take over
    each other's jobs (else one node restarts on its own store)."""

    @initialize(
        payment=st.sampled_from(["free", "after", "before"]),
        max_concurrent=st.integers(1, 3),
        queue_size=st.integers(0, 3),
        max_unpaid=st.integers(0, 3),
        fleet=st.booleans(),
    )
    def setup(
        self, payment: str, max_concurrent: int, queue_size: int, max_unpaid: int, fleet: bool
    ) -> None:
        self.payment = payment
        self.limits = dict(
            max_concurrent=max_concurrent, queue_size=queue_size, max_unpaid=max_unpaid
        )
        self.world = World(payment, self.limits, fleet=fleet)
        self.n = 0

    def teardown(self) -> None:
        if not hasattr(self, "world"):
            return
        try:
            self.world.finish()
        finally:
            self.world.close()

    @property
    def node(self) -> Node:
        return self.world.node

    def on(self, job_id: str, event: jobs.Event) -> None:
        self.world.on(self.node, job_id, event)

    # --- rules --------------------------------------------------------------------------------

    @rule(
        commit=st.booleans(),
        bid=st.sampled_from([None, None, 1_000, 10_000, 100_000]),
        expires=st.sampled_from([None, None, None, 5, 500]),
        source=st.sampled_from(["relay"] * 6 + ["rate_limited", "takeover"]),
        paid=st.booleans(),
        invoiced=st.booleans(),
    )
    def offer(
        self,
        commit: bool,
        bid: int | None,
        expires: int | None,
        source: str,
        paid: bool,
        invoiced: bool,
    ) -> None:
        """A new request from a relay (accepted, refused or rate-limited), or one a dead node
        outside the fleet left open, taken over here (``paid``/``invoiced``: how far it got)."""
        world = self.world
        self.n += 1
        params = {"commit": "sha256"} if commit else {}
        spec = JobSpec(
            prompt=f"job {self.n}",
            model=MODEL,
            max_tokens=100,
            bid_msats=bid,
            params=params,
            expiration=None if expires is None else int(world.now) + expires,
            nonce=str(self.n),  # the same ids on every replay of a run
        )
        req = parse_request(build_request(CUSTOMER, spec, created_at=int(START)), keys=PROVIDER)
        # A fleet keeps the request with the claim, so another node can take the job over.
        kept = req.event.to_json() if world.fleet else None
        assert self.node.store.claim(req.id, req.customer, req.event.created_at, request=kept)
        policy = IntakePolicy(
            keys=PROVIDER,
            limits=Limits(**self.limits),  # type: ignore[arg-type]
            pricing=PRICING,
            payment=self.payment,  # type: ignore[arg-type]
            catalog=ModelCatalog((MODEL,)),
        )
        decision = evaluate(req, policy)
        if source == "rate_limited":
            refusal = Refuse(req, "rate_limited", "slow down")
            self.on(req.id, jobs.Refused(refusal, notify=commit))
        elif isinstance(decision, Refuse):
            self.on(req.id, jobs.Refused(decision))
        elif source == "takeover":
            self._take_over(decision, paid, invoiced)
        else:
            world.accepts[req.id] = decision
            closing = self.node.book.closing
            self.on(req.id, jobs.Offered(decision))
            if closing:  # intake has stopped: nothing is recorded
                assert not self.node.book.knows(req.id)

    def _take_over(self, accept_: Accept, paid: bool, invoiced: bool) -> None:
        world = self.world
        req = accept_.request
        world.accepts[req.id] = accept_
        payment_hash = None
        if invoiced and accept_.quote_msats > 0:
            inv = make_invoice(
                WALLET_SECRET, amount_msats=accept_.quote_msats, created_at=int(START)
            )
            payment_hash = inv.payment_hash
            world.shown[req.id].add(inv.bolt11)  # the dead node asked for it
        # What the dead node's claim and writes left in the store.
        self.node.store.update(
            req.id,
            "awaiting_payment" if payment_hash else "received",
            request=req.event.to_json(),
            quote_msats=accept_.quote_msats,
            payment_hash=payment_hash,
        )
        if paid:
            world.paid.add(req.id)
            if payment_hash is not None:
                world.wallet_paid.add(payment_hash)
            self.node.store.mark_paid(req.id)
        self.on(req.id, jobs.Resumed(accept_, paid, payment_hash))

    @precondition(lambda self: bool(self.world.accepts))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """The same job from another relay: the store's claim stops it; the book ignores it."""
        job_id = data.draw(st.sampled_from(sorted(self.world.accepts)))
        accept_ = self.world.accepts[job_id]
        assert not self.node.store.claim(job_id, accept_.request.customer, 1)
        if self.node.book.knows(job_id):
            before = self.node.book.get(job_id).state  # type: ignore[union-attr]
            assert self.node.book.on(job_id, jobs.Offered(accept_), self.world.now) == []
            assert self.node.book.get(job_id).state == before  # type: ignore[union-attr]

    @precondition(lambda self: bool(self.node.pending))
    @rule(data=st.data(), ok=st.booleans())
    def complete(self, data: st.DataObject, ok: bool) -> None:
        """Work under way ends, well or not."""
        job_id = data.draw(st.sampled_from(sorted(self.node.pending)))
        self.world.complete(self.node, job_id, ok, data.draw(st.integers(0, 40)))

    @precondition(lambda self: bool(self.node.pending))
    @rule(data=st.data())
    def run_through(self, data: st.DataObject) -> None:
        """A job's work goes well until it waits (held, queued) or ends: deep paths get
        reached in few steps."""
        job_id = data.draw(st.sampled_from(sorted(self.node.pending)))
        while job_id in self.node.pending:
            self.world.complete(self.node, job_id, True, data.draw(st.integers(0, 40)))

    @precondition(lambda self: bool(self.node.book.open_jobs()))
    @rule(data=st.data(), names_us=st.booleans(), by_customer=st.booleans())
    def reveal_call(self, data: st.DataObject, names_us: bool, by_customer: bool) -> None:
        """A reveal call reaches every node of the fleet; those that know the job act on it."""
        held = sorted(j.id for j in self.node.book.open_jobs() if j.state == "held")
        others = sorted(j.id for j in self.node.book.open_jobs())
        job_id = data.draw(st.sampled_from(held or others))
        by = CUSTOMER if by_customer else STRANGER
        for node in self.world.live:
            if node.book.knows(job_id):
                self.world.on(node, job_id, jobs.RevealCalled(by.public_key, names_us))

    @precondition(lambda self: bool(self.node.timers))
    @rule(data=st.data())
    def reveal_timeout(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.node.timers)))
        self.world.now = max(self.world.now, self.node.timers.pop(job_id))
        self.on(job_id, jobs.RevealTimedOut())

    @precondition(lambda self: bool(self.world.accepts))
    @rule(data=st.data(), by_customer=st.booleans())
    def cancel(self, data: st.DataObject, by_customer: bool) -> None:
        live = sorted(j.id for j in self.node.book.open_jobs())
        named = data.draw(st.lists(st.sampled_from(live or sorted(self.world.accepts)), max_size=3))
        by = CUSTOMER if by_customer else STRANGER
        for node in self.world.live:  # a deletion reaches every node
            self.world.apply(node, node.book.cancel(named, by.public_key, self.world.now))

    @precondition(lambda self: bool(self.node.book.open_jobs()))
    @rule(data=st.data())
    def lease_lost(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(j.id for j in self.node.book.open_jobs())))
        self.on(job_id, jobs.LeaseLost())

    @rule(seconds=st.sampled_from([1, 30, 120, 700]))
    def tick(self, seconds: int) -> None:
        self.world.now += seconds

    @precondition(lambda self: not self.node.book.closing and self.n >= 4)
    @rule()
    def shutdown(self) -> None:
        self.world.apply(self.node, self.node.book.close(self.world.now))

    @precondition(lambda self: self.node.book.closing and not self.node.book.grace_over)
    @rule()
    def grace_over(self) -> None:
        self.world.apply(self.node, self.node.book.end_grace(self.world.now))

    @precondition(lambda self: self.n >= 4 and not self.world.fleet)
    @rule(data=st.data())
    def crash_and_restart(self, data: st.DataObject) -> None:
        """The lone node's process dies (work under way done in the world or not) and starts
        again on the same store."""
        self.world.restart(self._happened(data, self.node))

    @precondition(lambda self: self.n >= 4 and self.world.fleet)
    @rule(data=st.data())
    def crash_and_take_over(self, data: st.DataObject) -> None:
        """A node of the fleet dies at any point of its jobs (work under way done in the world
        or not); once its leases run out another node takes every one of them over."""
        world = self.world
        dead = world.node
        world.die(dead, self._happened(data, dead))
        dead.store.close()
        world.node = world.take_over()

    @precondition(lambda self: self.n >= 4 and self.world.fleet and len(self.world.zombies) < 2)
    @rule()
    def stall(self) -> None:
        """A node of the fleet stalls past its lease (alive, its work still under way): another
        node takes its jobs over while it goes on."""
        world = self.world
        world.zombies.append(world.node)
        world.node = world.take_over()

    @precondition(lambda self: any(z.pending or z.timers for z in self.world.zombies))
    @rule(data=st.data(), ok=st.booleans())
    def stalled_node_goes_on(self, data: st.DataObject, ok: bool) -> None:
        """A stalled node's work ends, or its reveal timer fires, before it learns its jobs are
        another node's."""
        world = self.world
        zombie = data.draw(st.sampled_from([z for z in world.zombies if z.pending or z.timers]))
        work = sorted(zombie.pending)
        timers = sorted(zombie.timers)
        job_id = data.draw(st.sampled_from(work + timers))
        if job_id in zombie.pending:
            world.complete(zombie, job_id, ok, data.draw(st.integers(0, 40)))
        else:
            del zombie.timers[job_id]
            world.on(zombie, job_id, jobs.RevealTimedOut())

    @precondition(lambda self: bool(self.world.zombies))
    @rule(data=st.data())
    def stalled_node_renews(self, data: st.DataObject) -> None:
        """A stalled node's lease round: it gives up what another node took over."""
        world = self.world
        zombie = data.draw(st.sampled_from(world.zombies))
        held = [j.id for j in zombie.book.open_jobs()]
        ours = zombie.store.renew(held)
        for job_id in held:
            if job_id not in ours:
                world.on(zombie, job_id, jobs.LeaseLost())

    def _happened(self, data: st.DataObject, node: Node) -> dict[str, bool]:
        return {job_id: data.draw(st.booleans()) for job_id in sorted(node.pending)}

    @precondition(lambda self: bool(self.world.accepts))
    @rule(data=st.data())
    def stray_event(self, data: st.DataObject) -> None:
        """An event the job's state does not list: an error, and nothing changes."""
        b = self.node.book
        known = sorted(i for i in self.world.accepts if b.knows(i))
        if not known:
            return
        job_id = data.draw(st.sampled_from(known))
        job = b.get(job_id)
        assert job is not None
        state = job.state
        samples = stray_events(self.world.accepts[job_id])
        if state in TERMINAL:
            event = data.draw(st.sampled_from(samples))
            assert b.on(job_id, event, self.world.now) == []
        else:
            unlisted = [e for e in samples if type(e) not in TRANSITIONS[state]]
            event = data.draw(st.sampled_from(unlisted))
            with pytest.raises(jobs.InvalidTransition):
                b.on(job_id, event, self.world.now)
        assert job.state == state

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def fleet_invariants(self) -> None:
        self.world.check()


def stray_events(accept_: Accept) -> list[jobs.Event]:
    """One event of every kind, for :meth:`JobBookMachine.stray_event`."""
    return [
        jobs.Invoiced("lnbcrt1x", "00" * 32),
        jobs.InvoiceFailed("x"),
        jobs.Paid(),
        jobs.PaymentLapsed(),
        jobs.Completed("4", MODEL, LmUsage(1, 1, 2), new_salt()),
        jobs.BackendFailed("backend", "x"),
        jobs.ResultRecorded("{}"),
        jobs.RecordFailed("x"),
        jobs.Published(),
        jobs.PublishFailed(),
        jobs.RevealCalled(CUSTOMER.public_key, True),
        jobs.RevealTimedOut(),
        jobs.CancelRequested(CUSTOMER.public_key),
        jobs.LeaseLost(),
        jobs.Shutdown(),
        jobs.GraceOver(),
    ]


JobBookMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestJobBook = JobBookMachine.TestCase


# --- every crash point, once ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A node dies while ``dies_at`` is its job's work under way (None: after the job ended);
    ``happened``: that work took effect in the world before the end."""

    point: str  # a jobs.CRASH_POINTS name
    dies_at: type[jobs.Effect] | None
    happened: bool = False
    policies: tuple[str, ...] = ("free", "after", "before")
    commit: bool = False
    recorded: bool = False  # the result was recorded before the death


SCENARIOS = (
    Scenario("claimed", jobs.RunBackend, policies=("free", "after")),
    Scenario("claimed", jobs.MakeInvoice, policies=("before",)),
    Scenario("invoice made, not recorded", jobs.MakeInvoice, True, ("after", "before")),
    Scenario("payment asked (before)", jobs.WatchPayment, False, ("before",)),
    Scenario("payment asked (before)", jobs.WatchPayment, True, ("before",)),
    Scenario("paid (before)", jobs.RunBackend, policies=("before",)),
    Scenario("model answered, not recorded", jobs.RecordResult),
    Scenario("result recorded", jobs.RecordResult, True, recorded=True),
    Scenario("result recorded", jobs.PublishResult, recorded=True),
    Scenario(
        "commitment out (commit-reveal)", jobs.PublishCommitment, True, commit=True, recorded=True
    ),
    Scenario("result published, not done", jobs.PublishResult, True, recorded=True),
    Scenario("done", None, recorded=True),
)


def test_the_scenarios_walk_every_crash_point() -> None:
    assert {s.point for s in SCENARIOS} == {p.name for p in jobs.CRASH_POINTS}


def _drive(world: World, node: Node, job_id: str, stop: type[jobs.Effect] | None) -> None:
    """Complete the job's work on ``node`` (well, the customer paying) until ``stop`` is the
    work under way, or the job waits with none."""
    while (op := node.pending.get(job_id)) is not None and not isinstance(op, stop or ()):
        world.complete(node, job_id, ok=True)


@pytest.mark.parametrize(
    ("scenario", "payment"),
    [(s, p) for s in SCENARIOS for p in s.policies],
    ids=lambda v: v if isinstance(v, str) else f"{v.point}@{getattr(v.dies_at, '__name__', '')}",
)
def test_every_crash_point(scenario: Scenario, payment: str) -> None:
    """A fleet node dies at the point; another takes the job over and finishes it: one result
    event, the recorded one when there was one, one invoice shown, paid work never run
    unpaid, the model run again only when no result was recorded."""
    world = World(payment, {"max_concurrent": 2, "queue_size": 2, "max_unpaid": 2}, fleet=True)
    try:
        req = request(1, bid=100_000, commit=scenario.commit)
        decision = accept(req, payment)
        world.accepts[req.id] = decision
        first = world.node
        assert first.store.claim(req.id, req.customer, req.event.created_at, request="{}")
        world.on(first, req.id, jobs.Offered(decision))
        _drive(world, first, req.id, scenario.dies_at)
        if scenario.dies_at is not None:
            assert isinstance(first.pending.get(req.id), scenario.dies_at)
        row = first.store.get(req.id)
        runs_before = world.runs[req.id]
        world.die(first, {req.id: scenario.happened})
        recorded = first.store.get(req.id)
        assert recorded is not None and (recorded.result_event is not None) == scenario.recorded
        first.store.close()
        world.node = second = world.take_over()
        assert second.book.knows(req.id) == (row is not None and row.state != "done")
        _drive(world, second, req.id, None)
        if req.id in second.timers:  # held for the reveal call, which names this key
            world.on(second, req.id, jobs.RevealCalled(CUSTOMER.public_key, True))
            _drive(world, second, req.id, None)
        world.check()
        [result_id] = world.results[req.id]
        assert world.errors[req.id] == 0
        if scenario.recorded:  # the event recorded before the death is the one that went out
            assert Event.from_json(recorded.result_event or "").id == result_id
            assert world.runs[req.id] == runs_before == 1
        else:
            assert world.runs[req.id] == runs_before + 1
        assert len(world.shown[req.id]) == (0 if payment == "free" else 1)
        if payment == "before":
            assert req.id in world.paid
        final = second.store.get(req.id)
        assert final is not None and final.state == "done"
    finally:
        world.close()
