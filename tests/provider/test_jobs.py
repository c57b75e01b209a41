"""The provider's job book (provider/jobs.py): its table, and a stateful property test of its
transitions. Random runs of requests, duplicates, payments arriving late or never, backend
successes and failures, commit-reveal calls, cancellations, lease losses, takeovers, shutdowns
and crash restarts, with each effect carried out as the node would (a real SQLite job store,
real result and feedback events through the client/dvm builders), must keep these true: a job is
answered at most once and invoiced at most once, never runs unpaid under payment ``before``,
terminal states absorb, an event a state does not list changes nothing, a job with work under
way has exactly one piece of it, slots never go below zero or above the limit, and every job
ends in a terminal state or stays open in the store to be resumed.

``JobBookMachine.TestCase`` runs ~200 examples here; tests/fuzz/test_job_book_fuzz.py runs
10,000 under ``pytest -m fuzz``."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

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
    JobRequest,
    JobSpec,
    build_feedback,
    build_request,
    parse_request,
)
from client.dvm.sealing import build_commitment, new_salt
from client.nostr.keys import Keys
from client.wallet.invoices import make_invoice
from provider import jobs
from provider.intake import Accept, IntakePolicy, ModelCatalog, Refuse, evaluate
from provider.jobs import TERMINAL, TRANSITIONS, JobBook
from provider.limits import Limits
from provider.pricing import Pricing
from provider.store import JobStore
from router.types import LmUsage

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()
STRANGER = Keys.generate()
WALLET_SECRET = hashlib.sha256(b"the provider's lightning node").hexdigest()
START = 1_700_000_000.0
MODEL = "m1"
PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)
OPEN_WITH_WORK = frozenset(("awaiting_payment", "running", "invoicing", "committing", "publishing"))
ASYNC = (
    jobs.RunBackend,
    jobs.MakeInvoice,
    jobs.WatchPayment,
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


# --- the stateful property test ------------------------------------------------------------------


class JobBookMachine(RuleBasedStateMachine):
    """Drives a JobBook the way provider/node.py does and checks the invariants after every
    step (see the module docstring)."""

    @initialize(
        payment=st.sampled_from(["free", "after", "before"]),
        max_concurrent=st.integers(1, 3),
        queue_size=st.integers(0, 3),
        max_unpaid=st.integers(0, 3),
    )
    def setup(self, payment: str, max_concurrent: int, queue_size: int, max_unpaid: int) -> None:
        self.payment = payment
        self.limits = dict(
            max_concurrent=max_concurrent, queue_size=queue_size, max_unpaid=max_unpaid
        )
        self.store = JobStore(":memory:")
        self.now = START
        self.n = 0
        self.book = book(payment, **self.limits)
        self.accepts: dict[str, Accept] = {}
        self.pending: dict[str, jobs.Effect] = {}
        self.timers: dict[str, float] = {}
        self.answered: Counter[str] = Counter()
        self.invoiced: Counter[str] = Counter()
        self.paid: set[str] = set()

    def teardown(self) -> None:
        if not hasattr(self, "store"):
            return
        try:
            self._finish()
        finally:
            self.store.close()

    # --- carrying out effects, as the node does ----------------------------------------------

    def on(self, job_id: str, event: jobs.Event) -> None:
        self.apply(self.book.on(job_id, event, self.now))

    def apply(self, effects: list[jobs.Effect]) -> None:
        for e in effects:
            assert self.book.knows(e.job_id), e
            if isinstance(e, ASYNC):
                # One piece of work per job at a time: the node keeps one task per job.
                assert e.job_id not in self.pending, (e, self.pending[e.job_id])
                self.pending[e.job_id] = e
            match e:
                case jobs.StoreUpdate(job_id, state, fields):
                    self.store.update(job_id, state, **fields)
                case jobs.StorePaid(job_id):
                    self.store.mark_paid(job_id)
                case jobs.SendFeedback(job_id, request, status, extra, amount, bolt11):
                    # The real builder: its amount rules hold for everything the book asks.
                    build_feedback(
                        PROVIDER, request, status, extra=extra, amount_msats=amount, bolt11=bolt11
                    )
                    job = self.book.get(job_id)
                    # A paid job kept for the next run is told so; its answer comes then.
                    if status == ERROR and not (job is not None and job.kept_open):
                        self.answered[job_id] += 1
                case jobs.RunBackend(job_id, work):
                    if self.payment == "before" and work.quote_msats > 0:
                        assert job_id in self.paid, "ran before it was paid"
                case jobs.MakeInvoice(job_id):
                    self.invoiced[job_id] += 1
                case jobs.PublishResult(_, r):
                    jobs_result_event(r)
                case jobs.PublishCommitment(_, request, commitment):
                    build_commitment(PROVIDER, request, commitment)
                case jobs.CancelWork(job_id):
                    self.pending.pop(job_id, None)
                case jobs.StartTimer(job_id, delay):
                    assert self.book.get(job_id).state == "held"  # type: ignore[union-attr]
                    self.timers[job_id] = self.now + delay
                case jobs.StopTimer(job_id):
                    self.timers.pop(job_id, None)

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
        of the fleet left open, taken over here (``paid``/``invoiced``: how far it got)."""
        self.n += 1
        params = {"commit": "sha256"} if commit else {}
        spec = JobSpec(
            prompt=f"job {self.n}",
            model=MODEL,
            max_tokens=100,
            bid_msats=bid,
            params=params,
            expiration=None if expires is None else int(self.now) + expires,
            nonce=str(self.n),  # the same ids on every replay of a run
        )
        req = parse_request(build_request(CUSTOMER, spec, created_at=int(START)), keys=PROVIDER)
        assert self.store.claim(req.id, req.customer, req.event.created_at)
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
            self.accepts[req.id] = decision
            closing = self.book.closing
            self.on(req.id, jobs.Offered(decision))
            if closing:  # intake has stopped: nothing is recorded
                assert not self.book.knows(req.id)

    def _take_over(self, accept_: Accept, paid: bool, invoiced: bool) -> None:
        req = accept_.request
        self.accepts[req.id] = accept_
        payment_hash = None
        if invoiced and accept_.quote_msats > 0:
            inv = make_invoice(
                WALLET_SECRET, amount_msats=accept_.quote_msats, created_at=int(START)
            )
            payment_hash = inv.payment_hash
        # What the dead node's claim and writes left in the store.
        self.store.update(
            req.id,
            "awaiting_payment" if payment_hash else "received",
            request=req.event.to_json(),
            quote_msats=accept_.quote_msats,
            payment_hash=payment_hash,
        )
        if paid:
            self.paid.add(req.id)
            self.store.mark_paid(req.id)
        self.on(req.id, jobs.Resumed(accept_, paid, payment_hash))

    @precondition(lambda self: bool(self.accepts))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """The same job from another relay: the store's claim stops it; the book ignores it."""
        job_id = data.draw(st.sampled_from(sorted(self.accepts)))
        accept_ = self.accepts[job_id]
        assert not self.store.claim(job_id, accept_.request.customer, 1)
        if self.book.knows(job_id):
            before = self.book.get(job_id).state  # type: ignore[union-attr]
            assert self.book.on(job_id, jobs.Offered(accept_), self.now) == []
            assert self.book.get(job_id).state == before  # type: ignore[union-attr]

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data(), ok=st.booleans())
    def complete(self, data: st.DataObject, ok: bool) -> None:
        """Work under way ends, well or not."""
        job_id = data.draw(st.sampled_from(sorted(self.pending)))
        self._complete(job_id, ok, data.draw(st.integers(0, 40)))

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def run_through(self, data: st.DataObject) -> None:
        """A job's work goes well until it waits (held, queued) or ends: deep paths get
        reached in few steps."""
        job_id = data.draw(st.sampled_from(sorted(self.pending)))
        while job_id in self.pending:
            self._complete(job_id, True, data.draw(st.integers(0, 40)))

    def _complete(self, job_id: str, ok: bool, tokens: int = 5) -> None:
        op = self.pending.pop(job_id)
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
            case jobs.WatchPayment():
                event = jobs.Paid() if ok else jobs.PaymentLapsed()
                if ok:
                    self.paid.add(job_id)
            case jobs.PublishResult():
                event = jobs.Published() if ok else jobs.PublishFailed()
                if ok:
                    self.answered[job_id] += 1
            case _:
                event = jobs.Published() if ok else jobs.PublishFailed()
        self.on(job_id, event)

    @precondition(lambda self: bool(self.book.open_jobs()))
    @rule(data=st.data(), names_us=st.booleans(), by_customer=st.booleans())
    def reveal_call(self, data: st.DataObject, names_us: bool, by_customer: bool) -> None:
        held = sorted(j.id for j in self.book.open_jobs() if j.state == "held")
        others = sorted(j.id for j in self.book.open_jobs())
        job_id = data.draw(st.sampled_from(held or others))
        by = CUSTOMER if by_customer else STRANGER
        self.on(job_id, jobs.RevealCalled(by.public_key, names_us))

    @precondition(lambda self: bool(self.timers))
    @rule(data=st.data())
    def reveal_timeout(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.timers)))
        self.now = max(self.now, self.timers.pop(job_id))
        self.on(job_id, jobs.RevealTimedOut())

    @precondition(lambda self: bool(self.accepts))
    @rule(data=st.data(), by_customer=st.booleans())
    def cancel(self, data: st.DataObject, by_customer: bool) -> None:
        live = sorted(j.id for j in self.book.open_jobs())
        named = data.draw(st.lists(st.sampled_from(live or sorted(self.accepts)), max_size=3))
        by = CUSTOMER if by_customer else STRANGER
        self.apply(self.book.cancel(named, by.public_key, self.now))

    @precondition(lambda self: bool(self.book.open_jobs()))
    @rule(data=st.data())
    def lease_lost(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(j.id for j in self.book.open_jobs())))
        self.on(job_id, jobs.LeaseLost())

    @rule(seconds=st.sampled_from([1, 30, 120, 700]))
    def tick(self, seconds: int) -> None:
        self.now += seconds

    @precondition(lambda self: not self.book.closing and self.n >= 4)
    @rule()
    def shutdown(self) -> None:
        self.apply(self.book.close(self.now))

    @precondition(lambda self: self.book.closing and not self.book.grace_over)
    @rule()
    def grace_over(self) -> None:
        self.apply(self.book.end_grace(self.now))

    @precondition(lambda self: self.n >= 4)
    @rule()
    def crash_and_restart(self) -> None:
        """The process dies (work under way is lost) and starts again on the same store."""
        self.pending.clear()
        self.timers.clear()
        self.book = book(self.payment, **self.limits)
        for row in self.store.open_jobs():
            if jobs.resumable(row.paid, row.payment_hash, row.request):
                accept_ = self.accepts[row.id]
                if row.quote_msats is not None:
                    accept_ = replace(accept_, quote_msats=row.quote_msats)
                self.on(row.id, jobs.Resumed(accept_, row.paid, row.payment_hash))
            else:
                self.store.update(row.id, "failed", reason="interrupted")

    @precondition(lambda self: bool(self.accepts))
    @rule(data=st.data())
    def stray_event(self, data: st.DataObject) -> None:
        """An event the job's state does not list: an error, and nothing changes."""
        known = sorted(i for i in self.accepts if self.book.knows(i))
        if not known:
            return
        job_id = data.draw(st.sampled_from(known))
        job = self.book.get(job_id)
        assert job is not None
        state = job.state
        samples = stray_events(self.accepts[job_id])
        if state in TERMINAL:
            event = data.draw(st.sampled_from(samples))
            assert self.book.on(job_id, event, self.now) == []
        else:
            unlisted = [e for e in samples if type(e) not in TRANSITIONS[state]]
            event = data.draw(st.sampled_from(unlisted))
            with pytest.raises(jobs.InvalidTransition):
                self.book.on(job_id, event, self.now)
        assert job.state == state

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def slots_and_queue(self) -> None:
        open_jobs = self.book.open_jobs()
        holding = sum(1 for j in open_jobs if j.slot)
        assert 0 <= self.book.slots_in_use == holding <= self.limits["max_concurrent"]
        assert self.book.waiting == sum(1 for j in open_jobs if j.state == "queued")

    @invariant()
    def answered_and_billed_at_most_once(self) -> None:
        assert all(n <= 1 for n in self.answered.values()), self.answered
        assert all(n <= 1 for n in self.invoiced.values()), self.invoiced

    @invariant()
    def open_jobs_have_their_work_under_way(self) -> None:
        for job in self.book.open_jobs():
            assert job.state not in TERMINAL and job.state != "new"
            assert (job.id in self.pending) == (job.state in OPEN_WITH_WORK), job.state
            assert (job.id in self.timers) == (job.state == "held"), job.state
            if job.state in ("running", "invoicing", "committing"):
                assert job.slot
        for job_id in self.pending:
            assert self.book.get(job_id).state in OPEN_WITH_WORK  # type: ignore[union-attr]

    # --- the end ------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Shut down and let every piece of work still under way finish: each job is then
        terminal, or open in the store only because it is paid and kept for the next run."""
        if not self.book.closing:
            self.apply(self.book.close(self.now))
        for job_id in sorted(self.pending):
            op = self.pending.get(job_id)
            if isinstance(op, jobs.RunBackend | jobs.MakeInvoice | jobs.PublishCommitment):
                self._complete(job_id, ok=True)  # within the grace
        if not self.book.grace_over:
            self.apply(self.book.end_grace(self.now))
        while self.pending:
            self._complete(sorted(self.pending)[0], ok=True)
        assert self.book.open_jobs() == []
        for row in self.store.open_jobs():
            job = self.book.get(row.id)
            if job is None:  # another run's job, left as that run left it
                continue
            assert job.state == "released" or (job.kept_open and row.paid), (job.state, row)
            if job.kept_open:
                assert jobs.resumable(row.paid, row.payment_hash, row.request)


def jobs_result_event(r: jobs.Result) -> None:
    """The result as the node builds it: the builder's amount rules must hold."""
    from client.dvm.nip90 import build_result

    event = build_result(
        PROVIDER,
        r.request,
        r.text,
        model=r.model,
        usage=r.usage,
        amount_msats=r.amount_msats,
        bolt11=r.bolt11,
        seal=r.seal,
        salt=r.salt,
    )
    assert event.verify()


def stray_events(accept_: Accept) -> list[jobs.Event]:
    """One event of every kind, for :meth:`JobBookMachine.stray_event`."""
    return [
        jobs.Invoiced("lnbcrt1x", "00" * 32),
        jobs.InvoiceFailed("x"),
        jobs.Paid(),
        jobs.PaymentLapsed(),
        jobs.Completed("4", MODEL, LmUsage(1, 1, 2), new_salt()),
        jobs.BackendFailed("backend", "x"),
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
