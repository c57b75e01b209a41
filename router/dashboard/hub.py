"""The dashboard's state: typed events in, bounded state and per-viewer changes out. No I/O.

A process keeps one :class:`DashboardHub`. Its code publishes events as things happen
(:meth:`DashboardHub.publish`); with nobody watching that is an attribute check and a return, so
a hub costs nothing until someone opens the page. While viewers are connected the hub folds each
event into its state (jobs in flight, tables, time series) and marks what changed for each
viewer; the web shell (router/dashboard/web.py) asks :meth:`DashboardHub.take` for a viewer's
changes when the viewer's ``notify`` callback fired, and sends them.

Memory is bounded whatever happens: at most ``max_jobs`` jobs (finished ones are dropped first),
``max_providers`` providers per job, ``max_rows`` rows per table, ``max_points`` points per time
series and ``max_viewers`` viewers; a viewer that falls too far behind gets one full snapshot
instead of its backlog.

Time comes from ``clock`` (seconds, wall clock by default): tests pass a manual one. Series are
cut into buckets of ``bucket_s`` seconds; a bucket becomes a point when the next one starts
(:meth:`tick`, or the next event). Latency percentiles are read from bucket counts the way
Prometheus' ``histogram_quantile`` does (linear within a bucket), with the gateway's buckets
(router/gateway/metrics.py ``BUCKETS``), so the page and ``/metrics`` agree.

Call the hub from the event loop's thread only (it takes no locks).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..gateway.metrics import BUCKETS
from .events import (
    BreakerState,
    DashboardEvent,
    DashboardEventError,
    JobAsked,
    KeySpend,
    Payment,
    ProviderEarnings,
    ProviderStateChanged,
    QuorumOutcome,
    ReputationRow,
    ReputationSnapshot,
    RequestServed,
    SpendSnapshot,
    TrafficTotals,
)

Panel = Literal["jobs", "money", "latency", "traffic", "breakers", "keys", "reputation", "earnings"]
PANELS: tuple[Panel, ...] = get_args(Panel)
#: Whose jobs the page shows: a customer's (``customer``: the swarm's quorums, as ``swarm serve``
#: and the demo ask them) or one provider node's (``provider``: the jobs it answers; an outcome
#: ``reached`` means it answered, ``failed`` that it did not).
Role = Literal["customer", "provider"]
ROLES: tuple[Role, ...] = get_args(Role)

#: Order of a provider's states in a job: a change never goes back to a lower rank.
_RANK: dict[str, int] = {
    "asked": 0,
    "processing": 1,
    "answered": 2,
    "error": 2,
    "timed_out": 2,
    "not_needed": 2,  # still working when the quorum was reached without it
    "agreed": 3,
    "dissented": 3,
    "paid": 4,
}
_PROMPT_CHARS = 300
_ANSWER_CHARS = 2000
_DETAIL_CHARS = 200
_OTHER = "other"

Key = tuple[str, str]
_CARDS: Key = ("cards", "")
_POINTS: Key = ("points", "")


class TooManyViewers(Exception):
    """The hub has ``max_viewers`` viewers already."""


@dataclass(slots=True)
class Viewer:
    """One connected page. ``notify`` is called (often; it must be cheap and idempotent, such as
    ``asyncio.Event.set``) when the viewer has something to take."""

    id: int
    notify: Callable[[], None]
    dirty: dict[Key, None] = field(default_factory=dict)
    resync: bool = True
    seen_points: int = 0


@dataclass(slots=True)
class _Job:
    id: str
    model: str
    quorum: int
    prompt: str
    asked_at: float
    providers: dict[str, list[str]] = field(default_factory=dict)  # provider -> [state, detail]
    outcome: str | None = None  # "reached" | "failed"
    text: str = ""
    agreeing: int = 0
    elapsed_ms: float | None = None
    paid_msats: int = 0
    hidden_providers: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "quorum": self.quorum,
            "prompt": self.prompt,
            "asked_at": self.asked_at,
            "providers": [
                {"key": k, "state": s, "detail": d} for k, (s, d) in self.providers.items()
            ],
            "hidden_providers": self.hidden_providers,
            "outcome": self.outcome,
            "text": self.text,
            "agreeing": self.agreeing,
            "elapsed_ms": self.elapsed_ms,
            "paid_msats": self.paid_msats,
        }


class _Bucket:
    __slots__ = (
        "errors",
        "failed",
        "job_hist",
        "msats_in",
        "msats_out",
        "reached",
        "req_hist",
        "requests",
        "start",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.msats_in = 0
        self.msats_out = 0
        self.requests = 0
        self.errors = 0
        self.reached = 0
        self.failed = 0
        self.req_hist = [0] * (len(BUCKETS) + 1)
        self.job_hist = [0] * (len(BUCKETS) + 1)

    def point(self) -> dict[str, Any]:
        return {
            "t": self.start,
            "sats_in": self.msats_in / 1000,
            "sats_out": self.msats_out / 1000,
            "requests": self.requests,
            "errors": self.errors,
            "reached": self.reached,
            "failed": self.failed,
            "req_p50": _ms(percentile(self.req_hist, 0.5)),
            "req_p90": _ms(percentile(self.req_hist, 0.9)),
            "req_p99": _ms(percentile(self.req_hist, 0.99)),
            "job_p50": _ms(percentile(self.job_hist, 0.5)),
            "job_p90": _ms(percentile(self.job_hist, 0.9)),
            "job_p99": _ms(percentile(self.job_hist, 0.99)),
        }


def _gap_point(t: float) -> dict[str, Any]:
    """A point with no data: the charts break their lines there (nobody was watching)."""
    return {
        "t": t,
        "sats_in": None,
        "sats_out": None,
        "requests": None,
        "errors": None,
        "reached": None,
        "failed": None,
        "req_p50": None,
        "req_p90": None,
        "req_p99": None,
        "job_p50": None,
        "job_p90": None,
        "job_p99": None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def percentile(counts: Sequence[int], q: float, bounds: Sequence[float] = BUCKETS) -> float | None:
    """The ``q`` quantile (0..1) of values counted in buckets with upper ``bounds`` (plus one
    count above the last bound), linear within a bucket; None when nothing was counted. A
    quantile that falls above the last bound is that bound."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    cum = 0
    for i, n in enumerate(counts):
        if n and cum + n >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lo = float(bounds[i - 1]) if i else 0.0
            return lo + (float(bounds[i]) - lo) * max(0.0, rank - cum) / n
        cum += n
    return float(bounds[-1])  # pragma: no cover - rank <= total always lands above


class DashboardHub:
    """Bounded dashboard state for one process (see the module's docstring)."""

    def __init__(
        self,
        *,
        title: str = "nostr-swarm",
        panels: Iterable[Panel] = PANELS,
        role: Role = "customer",
        always_live: bool = False,
        clock: Callable[[], float] = time.time,
        bucket_s: float = 5.0,
        max_points: int = 240,
        max_jobs: int = 50,
        max_providers: int = 32,
        max_rows: int = 200,
        max_viewers: int = 8,
        linger_s: float = 30.0,
    ) -> None:
        chosen = tuple(panels)
        unknown = [p for p in chosen if p not in PANELS]
        if unknown:
            raise ValueError(f"unknown panel(s) {unknown}; known: {', '.join(PANELS)}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not bucket_s > 0:
            raise ValueError(f"bucket_s must be positive, not {bucket_s!r}")
        if not linger_s >= 0:
            raise ValueError(f"linger_s must be >= 0, not {linger_s!r}")
        for name, value in (
            ("max_points", max_points),
            ("max_jobs", max_jobs),
            ("max_providers", max_providers),
            ("max_rows", max_rows),
            ("max_viewers", max_viewers),
        ):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        self.title = title
        self.panels = chosen
        self.role = role
        #: Keep counting with nobody watching (for a process that exists to be watched, such
        #: as the demo: its page then shows what happened before it was opened).
        self.always_live = always_live
        self._clock = clock
        self.bucket_s = float(bucket_s)
        self.max_jobs = max_jobs
        self.max_providers = max_providers
        self.max_rows = max_rows
        self.max_viewers = max_viewers
        self.linger_s = float(linger_s)
        self._dark_at: float | None = None
        #: True while a viewer is connected (and ``linger_s`` after the last one left):
        #: publishers may test it before building an event
        #: (``if hub.live: hub.publish(JobAsked(...))``).
        self.live = always_live
        self._viewers: dict[int, Viewer] = {}
        self._next_viewer = 1
        # A viewer's backlog of changed keys, past which it gets a snapshot instead.
        self._max_dirty = 2 * max_jobs + 16
        self._jobs: dict[str, _Job] = {}
        self._points: deque[dict[str, Any]] = deque(maxlen=max_points)
        self._seq = 0  # points appended so far
        self._bucket = _Bucket(self._start_of(clock()))
        self._reached = 0
        self._failed = 0
        self._msats_in = 0
        self._msats_out = 0
        self._traffic: dict[tuple[str, str], list[int]] = {}  # -> [requests, errors, msats]
        self._errors: dict[str, int] = {}
        self._traffic_source: str | None = None  # "events" | "totals": one feeds the tables
        self._traffic_prev: TrafficTotals | None = None
        self._breakers: dict[str, BreakerState] = {}
        self._keys: dict[str, KeySpend] = {}
        self._reputation: tuple[ReputationRow, ...] = ()
        self._earnings: ProviderEarnings | None = None
        self._apply: dict[type, Callable[[Any, float], None]] = {
            JobAsked: self._job_asked,
            ProviderStateChanged: self._provider_state,
            QuorumOutcome: self._outcome,
            Payment: self._payment,
            RequestServed: self._request,
            BreakerState: self._breaker,
            SpendSnapshot: self._spend_snapshot,
            ReputationSnapshot: self._reputation_snapshot,
            ProviderEarnings: self._earnings_snapshot,
            TrafficTotals: self._traffic_totals,
        }

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, event: DashboardEvent) -> None:
        """Take a happening; dropped at once when nobody watches."""
        if not self.live:
            return
        self.apply(event)

    def apply(self, event: DashboardEvent) -> None:
        """Fold one event into the state, watched or not (the probes' snapshots use this)."""
        handler = self._apply.get(type(event))
        if handler is None:
            raise DashboardEventError(f"not a dashboard event: {type(event).__name__}")
        now = self._clock()
        self._roll(now)
        handler(event, now)

    def apply_all(self, events: Iterable[DashboardEvent]) -> None:
        for ev in events:
            self.apply(ev)

    def tick(self) -> None:
        """Close the time bucket if its time is over, and stop counting once nobody has watched
        for ``linger_s`` (the web shell calls this on a timer while :attr:`live`)."""
        now = self._clock()
        self._roll(now)
        if self._dark_at is not None and now >= self._dark_at and not self._viewers:
            self.live = False
            self._dark_at = None

    # --- viewers --------------------------------------------------------------------------------

    def join(self, notify: Callable[[], None]) -> Viewer:
        """A new viewer; its first :meth:`take` is a full snapshot. Raises TooManyViewers."""
        if len(self._viewers) >= self.max_viewers:
            raise TooManyViewers(f"the dashboard has {self.max_viewers} viewers already")
        if not self.live:
            self._wake_up()
        viewer = Viewer(self._next_viewer, notify)
        self._next_viewer += 1
        self._viewers[viewer.id] = viewer
        self.live = True
        self._dark_at = None
        return viewer

    def leave(self, viewer: Viewer) -> None:
        """The viewer went away. The hub stays live ``linger_s`` longer (see :meth:`tick`), so a
        page that reloads or reconnects finds the jobs in flight as they are."""
        self._viewers.pop(viewer.id, None)
        if not self._viewers and self.live and not self.always_live:
            self._dark_at = self._clock() + self.linger_s
            if self.linger_s <= 0:
                self.live = False

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def take(self, viewer: Viewer) -> list[dict[str, Any]]:
        """What changed for ``viewer`` since its last take (a snapshot the first time, or after
        it fell behind), as JSON-ready messages; empty when nothing did."""
        if viewer.resync:
            viewer.resync = False
            viewer.dirty.clear()
            viewer.seen_points = self._seq
            return [self.snapshot()]
        if not viewer.dirty:
            return []
        out = [self._render(key, viewer) for key in viewer.dirty]
        viewer.dirty.clear()
        return out

    def _wake_up(self) -> None:
        """The first viewer after nobody watched: jobs in flight then may have finished unseen
        (they are dropped), and traffic totals need a new baseline."""
        for job_id in [j.id for j in self._jobs.values() if j.outcome is None]:
            del self._jobs[job_id]
        self._traffic_prev = None
        now = self._clock()
        self._roll(now)

    def _touch(self, key: Key) -> None:
        for v in self._viewers.values():
            if v.resync:
                continue
            dirty = v.dirty
            if key not in dirty:
                if len(dirty) >= self._max_dirty:
                    v.resync = True
                    dirty.clear()
                else:
                    dirty[key] = None
            v.notify()

    # --- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as one JSON-ready message."""
        return {
            "type": "snapshot",
            "title": self.title,
            "role": self.role,
            "panels": list(self.panels),
            "bucket_s": self.bucket_s,
            "now": self._clock(),
            "jobs": [j.view() for j in reversed(self._jobs.values())],
            "cards": self._cards(),
            "points": list(self._points),
            "traffic": self._traffic_rows(),
            "errors": self._error_rows(),
            "breakers": self._breaker_rows(),
            "keys": self._key_rows(),
            "reputation": self._reputation_rows(),
            "earnings": self._earnings_view(),
        }

    def job(self, job_id: str) -> dict[str, Any] | None:
        j = self._jobs.get(job_id)
        return None if j is None else j.view()

    def _render(self, key: Key, viewer: Viewer) -> dict[str, Any]:
        kind, ident = key
        if kind == "job":
            j = self._jobs.get(ident)
            if j is None:
                return {"type": "job_removed", "id": ident}
            return {"type": "job", "job": j.view()}
        if kind == "points":
            new = self._seq - viewer.seen_points
            viewer.seen_points = self._seq
            if new > len(self._points):  # some fell out of the series before it saw them
                return {"type": "series", "points": list(self._points)}
            return {"type": "points", "points": list(self._points)[len(self._points) - new :]}
        rows: Any
        if kind == "cards":
            rows = self._cards()
        elif kind == "traffic":
            rows = self._traffic_rows()
        elif kind == "errors":
            rows = self._error_rows()
        elif kind == "breakers":
            rows = self._breaker_rows()
        elif kind == "keys":
            rows = self._key_rows()
        elif kind == "reputation":
            rows = self._reputation_rows()
        elif kind == "earnings":
            rows = self._earnings_view()
        else:  # pragma: no cover - keys are made here only
            raise KeyError(key)
        return {"type": kind, kind: rows}

    def _cards(self) -> dict[str, Any]:
        return {
            "in_flight": sum(1 for j in self._jobs.values() if j.outcome is None),
            "reached": self._reached,
            "failed": self._failed,
            "msats_in": self._msats_in,
            "msats_out": self._msats_out,
            "viewers": len(self._viewers),
        }

    def _traffic_rows(self) -> list[dict[str, Any]]:
        rows = sorted(self._traffic.items(), key=lambda kv: (-kv[1][0], kv[0]))
        per_row = self._traffic_source != "totals"  # totals count errors by class only
        return [
            {"backend": b, "model": m, "requests": r, "errors": e if per_row else None, "msats": s}
            for (b, m), (r, e, s) in rows
        ]

    def _error_rows(self) -> list[dict[str, Any]]:
        rows = sorted(self._errors.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"error": code, "count": n} for code, n in rows]

    def _breaker_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "backend": b.backend,
                "state": b.state,
                "in_flight": b.in_flight,
                "failures": b.failures,
                "latency_ms": round(b.latency_ms, 1),
            }
            for b in sorted(self._breakers.values(), key=lambda b: b.backend)
        ]

    def _key_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "account": k.account,
                "spent_msats": k.spent_msats,
                "budget_msats": k.budget_msats,
                "reserved_msats": k.reserved_msats,
                "requests": k.requests,
                "spent_usd": k.spent_usd,
                "budget_usd": k.budget_usd,
                "key_name": k.key_name,
            }
            for k in self._keys.values()
        ]

    def _reputation_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "provider": r.provider,
                "score": round(r.score, 4),
                "jobs": r.jobs,
                "agreed": round(r.agreed, 2),
                "dissented": round(r.dissented, 2),
                "timeouts": round(r.timeouts, 2),
                "latency_ms": None if r.latency_ms is None else round(r.latency_ms, 1),
                "paid_msats": r.paid_msats,
            }
            for r in self._reputation
        ]

    def _earnings_view(self) -> dict[str, int] | None:
        e = self._earnings
        if e is None:
            return None
        return {
            "jobs_done": e.jobs_done,
            "billed_msats": e.billed_msats,
            "paid_msats": e.paid_msats,
        }

    # --- time buckets ------------------------------------------------------------------------

    def _start_of(self, now: float) -> float:
        return math.floor(now / self.bucket_s) * self.bucket_s

    def _roll(self, now: float) -> None:
        bucket = self._bucket
        end = bucket.start + self.bucket_s
        if now < end:
            return
        self._append(bucket.point())
        start = self._start_of(now)
        if start > end:  # buckets nobody counted: one empty point breaks the lines
            self._append(_gap_point(end))
        self._bucket = _Bucket(start)

    def _append(self, point: dict[str, Any]) -> None:
        self._points.append(point)
        self._seq += 1
        self._touch(_POINTS)

    # --- folding events in ----------------------------------------------------------------------

    def _get_job(self, job_id: str, now: float) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:  # a job seen first through its providers (asked before anyone watched)
            job = self._add_job(_Job(job_id, "", 0, "", now))
        return job

    def _add_job(self, job: _Job) -> _Job:
        jobs = self._jobs
        if len(jobs) >= self.max_jobs:
            victim = next((j for j in jobs.values() if j.outcome is not None), None)
            if victim is None:
                victim = next(iter(jobs.values()))
            del jobs[victim.id]
            self._touch(("job", victim.id))
        jobs[job.id] = job
        return job

    def _set_provider(self, job: _Job, provider: str, state: str, detail: str) -> bool:
        current = job.providers.get(provider)
        if current is None:
            if len(job.providers) >= self.max_providers:
                job.hidden_providers += 1
                return False
            job.providers[provider] = [state, detail[:_DETAIL_CHARS]]
            return True
        if _RANK[state] <= _RANK[current[0]]:
            return False
        current[0] = state
        current[1] = detail[:_DETAIL_CHARS]
        return True

    def _job_asked(self, ev: JobAsked, now: float) -> None:
        job = self._jobs.get(ev.job_id)
        if job is None:
            prompt = ev.prompt[:_PROMPT_CHARS]
            job = self._add_job(_Job(ev.job_id, ev.model, ev.quorum, prompt, now))
        else:
            job.model, job.quorum, job.prompt = ev.model, ev.quorum, ev.prompt[:_PROMPT_CHARS]
        for p in ev.providers:
            self._set_provider(job, p, "asked", "")
        self._touch(("job", job.id))
        self._touch(_CARDS)

    def _provider_state(self, ev: ProviderStateChanged, now: float) -> None:
        job = self._get_job(ev.job_id, now)
        if self._set_provider(job, ev.provider, ev.state, ev.detail):
            self._touch(("job", job.id))
        self._touch(_CARDS)

    def _outcome(self, ev: QuorumOutcome, now: float) -> None:
        job = self._get_job(ev.job_id, now)
        if job.outcome is not None:
            return  # decided once
        job.outcome = "reached" if ev.reached else "failed"
        job.text = ev.text[:_ANSWER_CHARS]
        job.agreeing = len(ev.agreeing)
        elapsed = ev.elapsed_ms if ev.elapsed_ms > 0 else (now - job.asked_at) * 1000.0
        job.elapsed_ms = round(elapsed, 1)
        for p in ev.agreeing:
            self._set_provider(job, p, "agreed", "")
        for p in ev.dissenting:
            self._set_provider(job, p, "dissented", "")
        bucket = self._bucket
        if ev.reached:
            self._reached += 1
            bucket.reached += 1
            bucket.job_hist[bisect_left(BUCKETS, elapsed / 1000.0)] += 1
            if ev.agreeing:  # a quorum of several: those still working were not needed
                for p, st in job.providers.items():
                    if _RANK[st[0]] < _RANK["answered"]:
                        self._set_provider(job, p, "not_needed", "")
        else:
            self._failed += 1
            bucket.failed += 1
            for p, st in job.providers.items():
                if _RANK[st[0]] < _RANK["answered"]:
                    self._set_provider(job, p, "timed_out", "")
        self._touch(("job", job.id))
        self._touch(_CARDS)

    def _payment(self, ev: Payment, now: float) -> None:
        if ev.direction == "in":
            self._msats_in += ev.msats
            self._bucket.msats_in += ev.msats
        else:
            self._msats_out += ev.msats
            self._bucket.msats_out += ev.msats
        if ev.job_id:
            job = self._jobs.get(ev.job_id)
            if job is not None:
                job.paid_msats += ev.msats
                self._touch(("job", job.id))
        self._touch(_CARDS)

    def _traffic_from(self, source: str) -> None:
        if self._traffic_source is None:
            self._traffic_source = source
        elif self._traffic_source != source:
            raise DashboardEventError(
                "publish RequestServed events or TrafficTotals snapshots, not both: "
                f"this hub counts traffic from {self._traffic_source}"
            )

    def _row(self, backend: str, model: str) -> list[int]:
        traffic = self._traffic
        row = traffic.get((backend, model))
        if row is None:
            if len(traffic) >= self.max_rows:
                backend = model = _OTHER
            row = traffic.setdefault((backend, model), [0, 0, 0])
        return row

    def _count_error(self, code: str, n: int) -> None:
        errors = self._errors
        if code not in errors and len(errors) >= self.max_rows:
            code = _OTHER
        errors[code] = errors.get(code, 0) + n

    def _request(self, ev: RequestServed, now: float) -> None:
        self._traffic_from("events")
        row = self._row(ev.backend, ev.model)
        row[0] += 1
        bucket = self._bucket
        bucket.requests += 1
        bucket.req_hist[bisect_left(BUCKETS, ev.latency_s)] += 1
        if ev.error or ev.status >= 400:
            row[1] += 1
            bucket.errors += 1
            self._count_error(ev.error or f"http_{ev.status}", 1)
            self._touch(("errors", ""))
        self._touch(("traffic", ""))

    def _traffic_totals(self, ev: TrafficTotals, now: float) -> None:
        self._traffic_from("totals")
        prev = self._traffic_prev
        self._traffic_prev = ev
        if prev is not None and prev != ev:  # what happened since the last totals
            bucket = self._bucket
            bucket.requests += max(0, ev.requests - prev.requests)
            errors_now = sum(n for _, n in ev.errors)
            bucket.errors += max(0, errors_now - sum(n for _, n in prev.errors))
            if len(ev.latency) == len(prev.latency) == len(bucket.req_hist):
                for i, (a, b) in enumerate(zip(ev.latency, prev.latency, strict=True)):
                    if a > b:
                        bucket.req_hist[i] += a - b
        traffic: dict[tuple[str, str], list[int]] = {}
        for backend, model, n, sats in ev.served:
            if (backend, model) not in traffic and len(traffic) >= self.max_rows:
                backend = model = _OTHER
            row = traffic.setdefault((backend, model), [0, 0, 0])
            row[0] += n
            row[2] += sats * 1000
        if traffic != self._traffic:
            self._traffic = traffic
            self._touch(("traffic", ""))
        errors: dict[str, int] = {}
        for code, n in ev.errors:
            if code not in errors and len(errors) >= self.max_rows:
                code = _OTHER
            errors[code] = errors.get(code, 0) + n
        if errors != self._errors:
            self._errors = errors
            self._touch(("errors", ""))

    def _breaker(self, ev: BreakerState, now: float) -> None:
        if self._breakers.get(ev.backend) == ev:
            return
        if ev.backend not in self._breakers and len(self._breakers) >= self.max_rows:
            return  # the table is full: the first max_rows backends are shown
        self._breakers[ev.backend] = ev
        self._touch(("breakers", ""))

    def _spend_snapshot(self, ev: SpendSnapshot, now: float) -> None:
        rows = sorted(ev.accounts, key=lambda k: k.account)[: self.max_rows]
        keys = {k.account: k for k in rows}
        if keys != self._keys:
            self._keys = keys
            self._touch(("keys", ""))

    def _reputation_snapshot(self, ev: ReputationSnapshot, now: float) -> None:
        rows = tuple(sorted(ev.rows, key=lambda r: (-r.score, r.provider))[: self.max_rows])
        if rows != self._reputation:
            self._reputation = rows
            self._touch(("reputation", ""))

    def _earnings_snapshot(self, ev: ProviderEarnings, now: float) -> None:
        if ev != self._earnings:
            self._earnings = ev
            self._touch(("earnings", ""))


__all__ = [
    "PANELS",
    "ROLES",
    "DashboardHub",
    "Panel",
    "Role",
    "TooManyViewers",
    "Viewer",
    "percentile",
]
