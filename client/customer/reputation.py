"""A customer's memory of providers: who delivered, who agreed with the quorum, who lied, who
timed out, how fast and at what price. One row per (customer, provider key), in a SQLite file
or in PostgreSQL shared by several processes (a gateway's replicas).

::

    ledger = ReputationLedger("reputation.sqlite", customer=keys.public_key)
    ledger.record_result(result, targets)          # after every SwarmClient completion
    ledger.score(pubkey)                           # 0..1; 0.5 for a provider never seen
    ledger.get(pubkey)                             # ProviderRecord (counts decayed to now)

The arithmetic is pure (:class:`ProviderRecord`, :func:`observe`, :func:`observations_from_result`);
:class:`ReputationLedger` is a thin layer over a store (:mod:`client.storage`) with a cache.

What counts (from one job's outcome, per provider):

- ``agreed`` (its answer was in the agreeing quorum), ``dissented`` (it answered something else
  before the quorum was reached), ``unmatched`` (no quorum, answers differed, and its answer
  agreed with nobody's: at most one of the differing answers can be right, so each counts a
  little against its author; honest providers recover as they agree with each other, liars
  keep collecting these), ``answered`` (an answer nobody could confirm, e.g. the only one),
  ``error`` (error feedback, no answer), ``timeout`` (asked, silent, and the job ran out of time),
  ``beaten`` (asked, but the quorum was complete before it answered: neither good nor bad; its
  latency is at least the job's).
- Counts decay exponentially with ``half_life_s`` (default 14 days), so a provider that lied a
  month ago and has been honest since recovers, and one that was good long ago must keep earning.
- The score is a smoothed success share: ``(agreed + 1) / (agreed + 1 + 3 * dissented +
  2 * timeouts + unmatched + 0.5 * errors + 1)``: a newcomer starts at 0.5, a lie costs three
  good answers, a timeout (the customer waited the whole time) two, an unmatched answer one, an
  honest error half of one.
- Latency is an EWMA over answers (``alpha`` 0.3); price an EWMA of what it asked (msats per
  job); ``paid_msats`` the total paid to it (not decayed).

Independence is by key only: the ledger cannot tell that two keys belong to one operator (see
docs/discovery.md).

Deterministic claims (:func:`determinism_flags`, :func:`flags_from_result`,
:meth:`ReputationLedger.record_flags`): providers that announce the same weights (``["model",
name, "sha256:<hex>", engine]``, docs/wire-profile.md §10) and answer a request at temperature 0
or with a seed must return the same text; those that do not are flagged (kept in a ``flags``
table, read with :meth:`ReputationLedger.flags`), since at least one of them is not running what
it claims. ``SwarmClient`` records these flags after every job whose providers its selector's
directory knows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from client.nostr.errors import ReputationError
from client.storage import Migration, Row, Schema, SqlStore, StorageError, open_schema, shown

log = logging.getLogger("client.customer.reputation")

Clock = Callable[[], float]
Kind = Literal["agreed", "dissented", "unmatched", "answered", "error", "timeout", "beaten"]

DEFAULT_HALF_LIFE_S = 14 * 24 * 3600.0
LEDGER_ENV = "SWARM_REPUTATION"
LATENCY_ALPHA = 0.3
PRICE_ALPHA = 0.3


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """How much each outcome counts against a provider, in units of one agreeing answer; the
    prior adds ``prior_good`` and ``prior_bad`` pseudo-jobs (1 and 1: newcomers score 0.5)."""

    dissent: float = 3.0
    timeout: float = 2.0
    unmatched: float = 1.0
    error: float = 0.5
    prior_good: float = 1.0
    prior_bad: float = 1.0

    def score(
        self,
        agreed: float,
        dissented: float,
        timeouts: float,
        errors: float,
        unmatched: float = 0.0,
    ) -> float:
        good = agreed + self.prior_good
        bad = (
            self.dissent * dissented
            + self.timeout * timeouts
            + self.unmatched * unmatched
            + self.error * errors
        )
        return good / (good + bad + self.prior_bad)


DEFAULT_WEIGHTS = ScoreWeights()


@dataclass(frozen=True, slots=True)
class Observation:
    """What one provider did in one job. ``latency_ms``: when its answer arrived (for
    ``beaten``/``timeout``: how long it had been silent, a lower bound)."""

    provider: str
    kind: Kind
    latency_ms: float | None = None
    price_msats: int | None = None
    paid_msats: int = 0


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """One provider's record. Counts are decayed floats as of ``decayed_at``; ``jobs`` counts
    every job it was part of, undecayed."""

    provider: str
    jobs: int = 0
    results: float = 0.0
    agreed: float = 0.0
    dissented: float = 0.0
    answered: float = 0.0
    timeouts: float = 0.0
    errors: float = 0.0
    unmatched: float = 0.0
    latency_ms: float | None = None
    price_msats: float | None = None
    paid_msats: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    decayed_at: float = 0.0

    @property
    def experience(self) -> float:
        """Decayed number of jobs with a verdict (what exploration calls a record)."""
        return (
            self.agreed
            + self.dissented
            + self.unmatched
            + self.answered
            + self.timeouts
            + self.errors
        )

    def score_with(self, weights: ScoreWeights = DEFAULT_WEIGHTS) -> float:
        return weights.score(
            self.agreed, self.dissented, self.timeouts, self.errors, self.unmatched
        )

    @property
    def score(self) -> float:
        return self.score_with(DEFAULT_WEIGHTS)

    @property
    def agreement_rate(self) -> float | None:
        """Share of its answers that agreed when a quorum was reached (None: no such answer)."""
        judged = self.agreed + self.dissented
        return self.agreed / judged if judged > 0 else None

    def decayed(self, now: float, half_life_s: float) -> ProviderRecord:
        """The counts as of ``now``: each halves every ``half_life_s`` seconds."""
        dt = now - self.decayed_at
        if dt <= 0 or half_life_s <= 0 or math.isinf(half_life_s):
            return self if dt <= 0 else replace(self, decayed_at=now)
        f = 0.5 ** (dt / half_life_s)
        return replace(
            self,
            results=self.results * f,
            agreed=self.agreed * f,
            dissented=self.dissented * f,
            answered=self.answered * f,
            timeouts=self.timeouts * f,
            errors=self.errors * f,
            unmatched=self.unmatched * f,
            decayed_at=now,
        )

    def updated(self, obs: Observation, now: float, half_life_s: float) -> ProviderRecord:
        """This record after ``obs`` (decayed to ``now`` first)."""
        r = self.decayed(now, half_life_s)
        counts: dict[str, Any] = {
            "jobs": r.jobs + 1,
            "last_seen": now,
            "first_seen": r.first_seen or now,
            "paid_msats": r.paid_msats + max(0, obs.paid_msats),
        }
        k = obs.kind
        if k in ("agreed", "dissented", "unmatched", "answered"):
            counts["results"] = r.results + 1
            counts[k] = getattr(r, k) + 1
        elif k == "timeout":
            counts["timeouts"] = r.timeouts + 1
        elif k == "error":
            counts["errors"] = r.errors + 1
        if obs.latency_ms is not None and obs.latency_ms >= 0:
            sample = obs.latency_ms
            if k in ("beaten", "timeout"):
                # A lower bound: only ever pulls the average up.
                sample = max(sample, r.latency_ms or 0.0)
            counts["latency_ms"] = (
                sample
                if r.latency_ms is None
                else r.latency_ms + LATENCY_ALPHA * (sample - r.latency_ms)
            )
        if obs.price_msats is not None and obs.price_msats >= 0:
            counts["price_msats"] = (
                float(obs.price_msats)
                if r.price_msats is None
                else r.price_msats + PRICE_ALPHA * (obs.price_msats - r.price_msats)
            )
        return replace(r, **counts)


# --- from a job's outcome to observations (pure) ---------------------------------------------


def observe(
    *,
    asked: Iterable[str],
    reached: bool,
    timed_out: bool,
    agreeing: Iterable[str],
    dissenting: Iterable[str],
    answered_ms: Mapping[str, float | None],
    errors: Iterable[str],
    elapsed_ms: float,
    prices: Mapping[str, int] | None = None,
    paid: Mapping[str, int] | None = None,
    unmatched: Iterable[str] = (),
) -> list[Observation]:
    """Observations for one job. ``asked``: the providers addressed (every provider heard from
    counts as asked too); ``answered_ms``: providers whose answer arrived, with its time;
    ``unmatched``: (no quorum) those whose answer agreed with no other while answers differed;
    ``errors``: those that sent error feedback without an answer; ``timed_out``: the job ended
    because time ran out (not because agreement became impossible)."""
    prices = prices or {}
    paid = paid or {}
    agree, dissent, err, lone = set(agreeing), set(dissenting), set(errors), set(unmatched)
    everyone = list(dict.fromkeys([*asked, *answered_ms, *err]))
    out: list[Observation] = []
    for p in everyone:
        price = prices.get(p)
        if p in answered_ms:
            ms = answered_ms[p]
            if reached and p in agree:
                kind: Kind = "agreed"
            elif reached and p in dissent:
                kind = "dissented"
            elif reached:
                kind = "beaten"  # answered after the quorum was complete
            elif p in lone:
                kind = "unmatched"
            else:
                kind = "answered"
            out.append(Observation(p, kind, ms, price, paid.get(p, 0)))
        elif p in err:
            out.append(Observation(p, "error", None, price))
        elif not reached and timed_out:
            out.append(Observation(p, "timeout", elapsed_ms, price))
        else:
            out.append(Observation(p, "beaten", elapsed_ms, price))
    return out


def unmatched_of(groups: Iterable[Iterable[str]]) -> list[str]:
    """Without a quorum: the providers alone in their group, when there are several groups
    (their answer agreed with nobody's while others differed)."""
    gs = [tuple(g) for g in groups]
    if len(gs) < 2:
        return []
    return [g[0] for g in gs if len(g) == 1]


def _agrees(comparator: Any, a: str, b: str) -> bool:
    try:
        ca, cb = comparator.canonical(a), comparator.canonical(b)
        return ca is not None and cb is not None and bool(comparator.same(ca, cb))
    except Exception:  # a user comparator failing counts as no agreement
        return False


def observations_from_result(
    result: Any, targets: Iterable[str] = (), comparator: Any = None
) -> list[Observation]:
    """Observations from a :class:`client.customer.swarm.SwarmResult` (reached or not): ``targets``
    are the providers the job addressed (empty for a broadcast: then the providers heard from).

    Answers that arrived but were not counted in the quorum (observers: providers outside a
    membership policy) are judged against the agreed text with ``comparator`` when one is given,
    so newcomers can earn a record without being trusted with a vote; without it they are
    ``beaten`` (neutral)."""
    decision = result.decision
    answered: dict[str, float | None] = {}
    errors: list[str] = []
    prices: dict[str, int] = {}
    agree = set(decision.agreeing) if result.reached else set()
    dissent = set(decision.dissenting) if result.reached else set()
    for p, st in result.providers.items():
        if st.result is not None:
            vote = decision.vote_of(p)
            if vote is not None:
                answered[p] = vote.received_at * 1000.0
            else:  # an observer: not a vote
                answered[p] = None
                if result.reached and comparator is not None and decision.text is not None:
                    same = _agrees(comparator, st.result.content, decision.text)
                    (agree if same else dissent).add(p)
        elif st.status == "error":
            errors.append(p)
        inv = st.invoice
        quote = inv.msats if inv is not None else st.quote_msats
        if quote is not None:
            prices[p] = quote
    paid: dict[str, int] = {}
    left = int(getattr(result, "msats_paid", 0) or 0)
    if result.reached and left > 0:
        # The payer pays agreeing providers their invoices: attribute the total that way.
        for p in decision.agreeing:
            share = min(left, prices.get(p, 0))
            if share:
                paid[p] = share
                left -= share
    return observe(
        asked=targets,
        reached=result.reached,
        unmatched=() if result.reached else unmatched_of(decision.groups),
        timed_out=not result.reached and not decision.exhausted,
        agreeing=agree,
        dissenting=dissent,
        answered_ms=answered,
        errors=errors,
        elapsed_ms=result.timings.total_ms,
        prices=prices,
        paid=paid,
    )


# --- the ledger (a store) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelClaim:
    """What a provider announced about a model: its weights' hash and its engine."""

    model: str
    weights: str  # "sha256:<hex>"
    engine: str = ""


@dataclass(frozen=True, slots=True)
class DeterminismFlag:
    """``provider`` claimed the same weights, engine and settings as ``peers`` and returned a
    different text than the most common one among them."""

    provider: str
    model: str
    weights: str
    engine: str
    peers: tuple[str, ...]
    reason: str = "same weights and settings, different answer"


def model_claims(infos: Iterable[Any], model: str) -> dict[str, ModelClaim]:
    """Each provider's claim for ``model`` from directory entries
    (:class:`client.customer.directory.ProviderInfo`, whose ``model_weights`` the announcement's
    ``model`` tags fill); providers that announce no weights for it are left out."""
    out: dict[str, ModelClaim] = {}
    for info in infos:
        found = (getattr(info, "model_weights", None) or {}).get(model)
        if found:
            out[info.pubkey] = ModelClaim(model, found[0], found[1])
    return out


def _deterministic(temperature: float | None, seed: int | None) -> bool:
    # Greedy decoding is deterministic; sampling is too when the seed is fixed.
    return (temperature is not None and temperature == 0) or seed is not None


def determinism_flags(
    answers: Mapping[str, str],
    claims: Mapping[str, ModelClaim],
    *,
    model: str,
    temperature: float | None,
    seed: int | None,
) -> list[DeterminismFlag]:
    """Flags for providers that claim the same ``model`` weights and engine, were asked with
    deterministic settings (temperature 0 or a seed), and still answered differently (exact
    text). In each such group the most common answer is taken as the claim's output (on a tie,
    nobody can be told apart and every member is flagged); the others are flagged. Pure."""
    if not _deterministic(temperature, seed):
        return []
    groups: dict[tuple[str, str], list[str]] = {}
    for provider, claim in claims.items():
        if provider in answers and claim.model == model and claim.weights:
            groups.setdefault((claim.weights, claim.engine), []).append(provider)
    flags: list[DeterminismFlag] = []
    for (weights, engine), members in sorted(groups.items()):
        if len(members) < 2 or len({answers[p] for p in members}) == 1:
            continue
        counts: dict[str, int] = {}
        for p in members:
            counts[answers[p]] = counts.get(answers[p], 0) + 1
        top = sorted(counts.values(), reverse=True)
        majority = (
            max(counts, key=lambda t: counts[t]) if len(top) == 1 or top[0] > top[1] else None
        )
        for p in sorted(members):
            if answers[p] != majority:
                peers = tuple(q for q in sorted(members) if q != p)
                flags.append(DeterminismFlag(p, model, weights, engine, peers))
    return flags


def flags_from_result(
    result: Any,
    infos: Iterable[Any],
    *,
    model: str | None,
    temperature: float | None,
    seed: int | None,
) -> list[DeterminismFlag]:
    """:func:`determinism_flags` for a :class:`client.customer.swarm.SwarmResult` (reached or
    not): each provider's first answer, against the claims its directory entry (``infos``, the
    providers' :class:`client.customer.directory.ProviderInfo`) makes for ``model``. A job that
    named no model matches no claim. Pure."""
    if not model:
        return []
    answers: dict[str, str] = {}
    for r in result.results:
        answers.setdefault(r.provider, r.content)
    claims = model_claims(infos, model)
    return determinism_flags(answers, claims, model=model, temperature=temperature, seed=seed)


def default_ledger_path() -> Path:
    """``$SWARM_REPUTATION``, else ``$XDG_DATA_HOME/nostr-swarm/reputation.sqlite``
    (``XDG_DATA_HOME`` defaults to ``~/.local/share``)."""
    env = os.environ.get(LEDGER_ENV)
    if env:
        return Path(env).expanduser()
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return Path(base) / "nostr-swarm" / "reputation.sqlite"


_V1 = """
CREATE TABLE IF NOT EXISTS reputation (
    customer    TEXT NOT NULL,
    provider    TEXT NOT NULL,
    jobs        {bigint} NOT NULL DEFAULT 0,
    results     {real} NOT NULL DEFAULT 0,
    agreed      {real} NOT NULL DEFAULT 0,
    dissented   {real} NOT NULL DEFAULT 0,
    answered    {real} NOT NULL DEFAULT 0,
    timeouts    {real} NOT NULL DEFAULT 0,
    errors      {real} NOT NULL DEFAULT 0,
    unmatched   {real} NOT NULL DEFAULT 0,
    latency_ms  {real},
    price_msats {real},
    paid_msats  {bigint} NOT NULL DEFAULT 0,
    first_seen  {real} NOT NULL DEFAULT 0,
    last_seen   {real} NOT NULL DEFAULT 0,
    decayed_at  {real} NOT NULL DEFAULT 0,
    PRIMARY KEY (customer, provider)
);
CREATE TABLE IF NOT EXISTS flags (
    customer TEXT NOT NULL,
    provider TEXT NOT NULL,
    at       {real} NOT NULL,
    model    TEXT NOT NULL,
    weights  TEXT NOT NULL,
    engine   TEXT NOT NULL,
    peers    TEXT NOT NULL,
    reason   TEXT NOT NULL
)
"""


def _v1_flag_order(db: SqlStore) -> None:
    # Flags are read back in the order they were written: SQLite numbers rows by itself
    # (rowid); PostgreSQL has no such number, so its table gets one.
    if db.kind == "postgresql":
        db.execute("ALTER TABLE flags ADD COLUMN IF NOT EXISTS seq BIGSERIAL")


#: The ledger's tables, versioned (client.storage.migrations).
SCHEMA = Schema(
    "reputation",
    lock="reputation",
    migrations=(Migration(1, "reputation and flags", _V1, run=_v1_flag_order),),
)
_FIELDS = (
    "jobs",
    "results",
    "agreed",
    "dissented",
    "answered",
    "timeouts",
    "errors",
    "unmatched",
    "latency_ms",
    "price_msats",
    "paid_msats",
    "first_seen",
    "last_seen",
    "decayed_at",
)
_SELECT = f"SELECT provider, {', '.join(_FIELDS)} FROM reputation WHERE customer = ?"
_UPDATE = (
    f"UPDATE reputation SET {', '.join(f + ' = ?' for f in _FIELDS)}"
    " WHERE customer = ? AND provider = ?"
)
#: How often a shared (PostgreSQL) ledger reads again what other processes recorded.
SHARED_REFRESH_S = 10.0
_ERRORS = (sqlite3.Error, OSError, StorageError)


def _from_row(row: Row) -> ProviderRecord:
    def opt(v: Any) -> float | None:
        return None if v is None else float(v)

    return ProviderRecord(
        provider=str(row["provider"]),
        jobs=int(row["jobs"]),
        results=float(row["results"]),
        agreed=float(row["agreed"]),
        dissented=float(row["dissented"]),
        answered=float(row["answered"]),
        timeouts=float(row["timeouts"]),
        errors=float(row["errors"]),
        unmatched=float(row["unmatched"]),
        latency_ms=opt(row["latency_ms"]),
        price_msats=opt(row["price_msats"]),
        paid_msats=int(row["paid_msats"]),
        first_seen=float(row["first_seen"]),
        last_seen=float(row["last_seen"]),
        decayed_at=float(row["decayed_at"]),
    )


class ReputationLedger:
    """Per-customer provider records in a SQLite file (``path``; ``":memory:"`` for a throwaway
    one) or a ``postgresql://`` URL that several processes share. ``customer`` (the customer's
    public key) keeps several identities apart in one store. ``clock`` (UNIX seconds) stamps and
    decays records; inject one in tests.

    Reads come from a cache of this customer's records (a shared ledger reads them again every
    :data:`SHARED_REFRESH_S`, or on :meth:`refresh`). A write changes each provider's row under
    that row's lock, reading it as it is in the store, so concurrent writers (threads, processes,
    gateways sharing PostgreSQL) never lose each other's counts."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        customer: str = "",
        clock: Clock = time.time,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        weights: ScoreWeights = DEFAULT_WEIGHTS,
    ) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.path = str(path)
        self.customer = customer
        self.clock = clock
        self.half_life_s = half_life_s
        self.weights = weights
        self._lock = threading.Lock()
        self.version = 0  # goes up on every change (lets readers cache what they derive)
        self._cache: dict[str, ProviderRecord] = {}
        self._loaded_at = 0.0
        try:
            self._db = open_schema(self.path, SCHEMA)
        except _ERRORS as exc:
            raise ReputationError(f"cannot open reputation ledger {self}: {exc}") from exc
        try:
            self._load()
        except _ERRORS as exc:
            self.close()
            raise ReputationError(f"cannot read reputation ledger {self}: {exc}") from exc
        # PostgreSQL has no rowid; its flags table numbers rows itself (see _v1_flag_order).
        self._flag_order = "rowid" if self._db.kind == "sqlite" else "seq"
        # A row is read FOR UPDATE on PostgreSQL (SQLite's BEGIN IMMEDIATE locks the file).
        self._for_update = " FOR UPDATE" if self._db.kind == "postgresql" else ""

    @property
    def shared(self) -> bool:
        """Whether processes on other machines may share this ledger (PostgreSQL)."""
        return self._db.kind == "postgresql"

    def _load(self) -> None:
        rows = self._db.execute(_SELECT, (self.customer,)).fetchall()
        self._cache = {str(r["provider"]): _from_row(r) for r in rows}
        self._loaded_at = time.monotonic()

    def refresh(self) -> None:
        """Read this customer's records again (what other processes sharing the store wrote)."""
        with self._lock:
            try:
                self._load()
            except _ERRORS as exc:
                raise ReputationError(f"cannot read reputation ledger {self}: {exc}") from exc
            self.version += 1

    def _fresh(self) -> None:
        if self.shared and time.monotonic() - self._loaded_at > SHARED_REFRESH_S:
            try:
                self.refresh()
            except ReputationError as exc:  # a read falls back on what is known
                self._loaded_at = time.monotonic()
                log.warning("%s; scores are from the last read", exc)

    # --- reading -------------------------------------------------------------------------------

    def get(self, provider: str) -> ProviderRecord | None:
        """The record decayed to now, or None for a provider never seen."""
        self._fresh()
        rec = self._cache.get(provider)
        return None if rec is None else rec.decayed(self.clock(), self.half_life_s)

    def records(self) -> list[ProviderRecord]:
        """Every record (decayed to now), best score first."""
        self._fresh()
        now = self.clock()
        recs = [r.decayed(now, self.half_life_s) for r in self._cache.values()]
        return sorted(recs, key=lambda r: (-r.score_with(self.weights), r.provider))

    def score(self, provider: str) -> float:
        """0..1; a provider never seen scores as a newcomer (0.5 with the default weights)."""
        rec = self.get(provider)
        if rec is None:
            w = self.weights
            return w.prior_good / (w.prior_good + w.prior_bad)
        return rec.score_with(self.weights)

    def __contains__(self, provider: object) -> bool:
        self._fresh()
        return provider in self._cache

    def __len__(self) -> int:
        self._fresh()
        return len(self._cache)

    def customers(self) -> list[str]:
        """Every customer key with records in this store."""
        rows = self._db.execute(
            "SELECT DISTINCT customer FROM reputation ORDER BY customer"
        ).fetchall()
        return [str(r["customer"]) for r in rows]

    # --- writing -------------------------------------------------------------------------------

    def record(
        self, observations: Iterable[Observation], *, now: float | None = None
    ) -> list[ProviderRecord]:
        """Apply one job's observations (one transaction); returns the updated records (with
        what other processes recorded for the same providers)."""
        t = self.clock() if now is None else now
        obs = list(observations)
        out: dict[int, ProviderRecord] = {}
        with self._lock:
            if obs:
                try:
                    with self._db.tx(lock=False) as db:
                        # Rows are locked in provider order, so two writers never deadlock.
                        for i in sorted(range(len(obs)), key=lambda i: obs[i].provider):
                            out[i] = self._apply(db, obs[i], t)
                except _ERRORS as exc:
                    raise ReputationError(f"cannot write reputation ledger {self}: {exc}") from exc
                for rec in out.values():
                    self._cache[rec.provider] = rec
            self.version += 1
        return [out[i] for i in range(len(obs))]

    def _apply(self, db: SqlStore, obs: Observation, t: float) -> ProviderRecord:
        """One observation on the provider's row as it is in the store (read under its lock):
        the arithmetic is :meth:`ProviderRecord.updated`'s alone."""
        db.execute(
            "INSERT INTO reputation (customer, provider, decayed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (customer, provider) DO NOTHING",
            (self.customer, obs.provider, t),
        )
        row = db.execute(
            _SELECT + " AND provider = ?" + self._for_update, (self.customer, obs.provider)
        ).fetchone()
        assert row is not None  # inserted above, or there already
        new = _from_row(row).updated(obs, t, self.half_life_s)
        db.execute(_UPDATE, (*(getattr(new, f) for f in _FIELDS), self.customer, obs.provider))
        return new

    def record_result(
        self,
        result: Any,
        targets: Iterable[str] = (),
        *,
        comparator: Any = None,
        now: float | None = None,
    ) -> list[Observation]:
        """Record a :class:`~client.customer.swarm.SwarmResult`; returns the observations it made
        (see :func:`observations_from_result`)."""
        obs = observations_from_result(result, targets, comparator)
        self.record(obs, now=now)
        return obs

    def record_flags(self, flags: Iterable[DeterminismFlag], *, now: float | None = None) -> int:
        """Keep determinism flags (see :func:`determinism_flags`); returns how many."""
        t = self.clock() if now is None else now
        rows = [
            (
                self.customer,
                f.provider,
                t,
                f.model,
                f.weights,
                f.engine,
                ",".join(f.peers),
                f.reason,
            )
            for f in flags
        ]
        if rows:
            with self._lock:
                try:
                    with self._db.tx(lock=False) as db:
                        for row in rows:
                            db.execute(
                                "INSERT INTO flags (customer, provider, at, model, weights,"
                                " engine, peers, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                row,
                            )
                except _ERRORS as exc:
                    raise ReputationError(f"cannot write reputation ledger {self}: {exc}") from exc
                self.version += 1
        return len(rows)

    def flags(self, provider: str | None = None) -> list[DeterminismFlag]:
        """The determinism flags on record (for one provider, or all), oldest first."""
        sql = "SELECT provider, model, weights, engine, peers, reason FROM flags WHERE customer = ?"
        args: tuple[Any, ...] = (self.customer,)
        if provider is not None:
            sql += " AND provider = ?"
            args += (provider,)
        rows = self._db.execute(sql + f" ORDER BY at, {self._flag_order}", args).fetchall()
        return [
            DeterminismFlag(
                r["provider"],
                r["model"],
                r["weights"],
                r["engine"],
                tuple(x for x in str(r["peers"]).split(",") if x),
                r["reason"],
            )
            for r in rows
        ]

    def reset(self, provider: str | None = None) -> int:
        """Forget one provider (or, with None, every provider of this customer); returns how
        many records went."""
        with self._lock:
            self.version += 1
            if provider is None:
                gone = len(self._cache)
                self._cache.clear()
                self._exec("DELETE FROM reputation WHERE customer = ?", (self.customer,))
            else:
                gone = 1 if self._cache.pop(provider, None) is not None else 0
                self._exec(
                    "DELETE FROM reputation WHERE customer = ? AND provider = ?",
                    (self.customer, provider),
                )
        return gone

    def _exec(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except _ERRORS as exc:
            raise ReputationError(f"cannot write reputation ledger {self}: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(*_ERRORS):
            self._db.close()

    def __enter__(self) -> ReputationLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __str__(self) -> str:
        return shown(self.path)

    def __repr__(self) -> str:
        return f"ReputationLedger({shown(self.path)!r}, providers={len(self._cache)})"
