"""Which providers to ask: selection policies over the directory and the reputation ledger.

::

    selector = Selector(directory=directory, ledger=ledger, policy=BestReputation(),
                        access=AccessList.parse(block=["npub1…"]), seed=7)
    pick = selector.select(k=2, model="llama3.2:1b")      # Selection: targets, members, reason
    async with SwarmClient(keys, relays, selector=selector) as swarm: ...   # does the same per job

Policies are pure: they take :class:`Candidate` values (a provider's key, score, experience,
latency and price) and a seeded ``random.Random``, and return whom to ask:

- :class:`BestReputation`: highest score first (then more experience, then faster).
- :class:`Cheapest`: cheapest expected price among providers scoring at least ``floor``.
- :class:`Fastest`: lowest EWMA latency (unknown latency last) among providers scoring at least
  ``floor``.
- :class:`Explore` ``(base, share, slots)``: like ``base``, but in a ``share`` of jobs
  ``slots`` of the places go to newcomers (less than ``newcomer_below`` jobs on record), so new
  providers can earn a record.
- :class:`Broadcast`: address nobody in particular (any provider may answer).

Around every policy: :class:`AccessList` (allow-list and block-list by npub or hex; blocked keys
are never asked and never counted, even in a broadcast) and :class:`QuorumMembership` (only keys
on an allow-list or scoring at least a floor may count towards the quorum; others may still be
asked as *observers*, whose answers are judged against the agreed one but never decide it).

Sybil awareness: providers are independent only as far as their keys are distinct. Nothing here
can tell that two keys share an operator; membership and reputation make it slower and costlier
to get many keys into one quorum, not impossible. See docs/discovery.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any, Protocol

from client.customer.directory import ProviderDirectory
from client.customer.quorum import Comparator, Decision, Quorum, Vote
from client.customer.reputation import ReputationLedger
from client.nostr.errors import InvalidKey, NoProvidersAvailable
from client.nostr.keys import parse_pubkey

NEWCOMER_BELOW = 5.0  # jobs on record (decayed) under which a provider counts as a newcomer
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a policy knows about one provider."""

    pubkey: str
    score: float = 0.5
    experience: float = 0.0
    latency_ms: float | None = None
    price_msats: int | None = None  # expected cost of this job (quote or learned), None: unknown
    # Another software's DVM (kind-11998 liveness) that never agreed in a quorum of ours: asked
    # only when the providers with a record, and our own nodes, are too few.
    foreign: bool = False

    def is_newcomer(self, below: float = NEWCOMER_BELOW) -> bool:
        return self.experience < below


class Policy(Protocol):
    """Chooses up to ``n`` of ``candidates`` (already filtered by access and membership)."""

    name: str

    def choose(self, candidates: Sequence[Candidate], n: int, rng: Random) -> list[Candidate]: ...


def _latency_key(c: Candidate) -> float:
    return c.latency_ms if c.latency_ms is not None else math.inf


def _price_key(c: Candidate) -> float:
    return c.price_msats if c.price_msats is not None else math.inf


def _best_key(c: Candidate) -> tuple[float, float, float, str]:
    return (-c.score, -c.experience, _latency_key(c), c.pubkey)


def _with_floor(
    candidates: Sequence[Candidate],
    n: int,
    floor: float,
    strict: bool,
    key: Callable[[Candidate], Any],
) -> list[Candidate]:
    """The ``n`` best by ``key`` among candidates scoring at least ``floor``; unless ``strict``,
    places left over go to the best-scoring of the rest (a fresh ledger, where everyone scores
    0.5, must still get answers; a known liar comes last)."""
    above = sorted((c for c in candidates if c.score >= floor), key=key)[:n]
    if len(above) >= n or strict:
        return above
    below = sorted((c for c in candidates if c.score < floor), key=_best_key)
    return above + below[: n - len(above)]


@dataclass(frozen=True, slots=True)
class BestReputation:
    """Highest score first; ties: more experience, then lower latency, then key order."""

    floor: float = 0.0
    strict: bool = False
    name: str = "best"

    def choose(self, candidates: Sequence[Candidate], n: int, rng: Random) -> list[Candidate]:
        return _with_floor(candidates, n, self.floor, self.strict, _best_key)


@dataclass(frozen=True, slots=True)
class Cheapest:
    """Cheapest expected price among providers scoring at least ``floor`` (a newcomer scores
    0.5, so the default floor lets newcomers in and keeps proven liars out); ties: better
    score; unknown prices go last. With too few above the floor the rest of the places go to
    the best-scoring below it, unless ``strict``."""

    floor: float = 0.5
    strict: bool = False
    name: str = "cheapest"

    def choose(self, candidates: Sequence[Candidate], n: int, rng: Random) -> list[Candidate]:
        return _with_floor(
            candidates, n, self.floor, self.strict, lambda c: (_price_key(c), -c.score, c.pubkey)
        )


@dataclass(frozen=True, slots=True)
class Fastest:
    """Lowest EWMA latency among providers scoring at least ``floor`` (by default a newcomer's
    0.5: the fastest answers are worthless from a provider known to lie); unknown latency last.
    With too few above the floor the rest of the places go to the best-scoring below it, unless
    ``strict``."""

    floor: float = 0.5
    strict: bool = False
    name: str = "fastest"

    def choose(self, candidates: Sequence[Candidate], n: int, rng: Random) -> list[Candidate]:
        return _with_floor(
            candidates, n, self.floor, self.strict, lambda c: (_latency_key(c), -c.score, c.pubkey)
        )


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Ask everyone: no ``p`` tags; any provider (not blocked, and a member if a membership
    policy is set) may answer and count."""

    name: str = "broadcast"

    def choose(self, candidates: Sequence[Candidate], n: int, rng: Random) -> list[Candidate]:
        return []


@dataclass(frozen=True)
class Explore:
    """``base``, except that in a ``share`` of jobs (drawn from the selector's seeded random
    source) up to ``slots`` places go to newcomers picked at random."""

    base: Any = field(default_factory=BestReputation)
    share: float = 0.1
    slots: int = 1
    newcomer_below: float = NEWCOMER_BELOW
    name: str = "explore"

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError("share must be between 0 and 1")
        if self.slots < 1:
            raise ValueError("slots must be at least 1")

    def newcomers(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return [c for c in candidates if c.is_newcomer(self.newcomer_below)]

    def explore_now(self, rng: random.Random) -> bool:
        return rng.random() < self.share

    def pick(
        self, candidates: Sequence[Candidate], n: int, rng: Random
    ) -> tuple[list[Candidate], list[Candidate]]:
        """(chosen, the newcomers among them that exploration put there)."""
        chosen = self.base.choose(candidates, n, rng)
        if not self.explore_now(rng):
            return chosen, []
        taken = {c.pubkey for c in chosen}
        fresh = [c for c in self.newcomers(candidates) if c.pubkey not in taken]
        if not fresh:
            return chosen, []
        picks = rng.sample(fresh, min(self.slots, len(fresh), n))
        return chosen[: n - len(picks)] + picks, picks

    def choose(self, candidates: Sequence[Candidate], n: int, rng: Random) -> list[Candidate]:
        return self.pick(candidates, n, rng)[0]


POLICY_NAMES = ("best", "cheapest", "fastest", "explore", "broadcast")


def policy_by_name(name: str, *, floor: float | None = None, share: float = 0.1) -> Any:
    """``best``, ``cheapest``, ``fastest``, ``explore`` (best reputation plus exploration
    ``share``) or ``broadcast``."""
    if name == "best":
        return BestReputation(floor=floor or 0.0)
    if name == "cheapest":
        return Cheapest(floor=0.5 if floor is None else floor)
    if name == "fastest":
        return Fastest(floor=0.5 if floor is None else floor)
    if name == "explore":
        return Explore(BestReputation(floor=floor or 0.0), share=share)
    if name == "broadcast":
        return Broadcast()
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")


# --- who may be asked, who may count -----------------------------------------------------------


def _keys(values: Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    out = set()
    for v in values:
        v = v.strip()
        if not v:
            continue
        try:
            out.add(parse_pubkey(v))
        except InvalidKey as exc:
            raise InvalidKey(f"{v[:20]!r} is not an npub or a hex public key: {exc}") from exc
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class AccessList:
    """``allow`` (None: everyone) and ``block`` (always wins), as hex public keys."""

    allow: frozenset[str] | None = None
    block: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, *, allow: Iterable[str] | None = None, block: Iterable[str] = ()) -> AccessList:
        """From npubs or hex keys; raises :class:`~client.nostr.errors.InvalidKey` on a bad one."""
        return cls(_keys(allow), _keys(block) or frozenset())

    def permits(self, pubkey: str) -> bool:
        if pubkey in self.block:
            return False
        return self.allow is None or pubkey in self.allow


@dataclass(frozen=True, slots=True)
class QuorumMembership:
    """Who may count towards a quorum: keys on ``allow``, or scoring at least ``floor``. The
    defence against a swarm of fresh keys agreeing on a lie: fresh keys score 0.5, so a floor
    above that keeps them out of quorums until they have a record (earned as observers)."""

    allow: frozenset[str] = frozenset()
    floor: float | None = None

    def __post_init__(self) -> None:
        if not self.allow and self.floor is None:
            raise ValueError("a membership policy needs an allow-list, a floor, or both")

    @classmethod
    def parse(cls, *, allow: Iterable[str] = (), floor: float | None = None) -> QuorumMembership:
        return cls(_keys(allow) or frozenset(), floor)

    def admits(self, pubkey: str, score: float) -> bool:
        return pubkey in self.allow or (self.floor is not None and score >= self.floor)


class GatedQuorum(Quorum):
    """A :class:`~client.customer.quorum.Quorum` that counts only votes (and abstentions) of
    providers ``admit`` accepts; other votes are kept as ``observers`` (judged later, never
    deciding)."""

    __slots__ = ("admit", "observers")

    def __init__(
        self,
        k: int,
        n: int | None = None,
        comparator: Comparator | None = None,
        *,
        admit: Callable[[str], bool],
    ) -> None:
        super().__init__(k, n, comparator)
        self.admit = admit
        self.observers: dict[str, Vote] = {}

    def has_voted(self, provider: str) -> bool:
        return provider in self.observers or super().has_voted(provider)

    def add(self, vote: Vote) -> Decision:
        if self.admit(vote.provider):
            return super().add(vote)
        if vote.provider in self.observers:
            self.rejected += 1
        else:
            self.observers[vote.provider] = vote
        return self.decision()

    def abstain(self, provider: str) -> Decision:
        # A stranger's error feedback must not make a targeted job give up early.
        if not self.admit(provider):
            return self.decision()
        return super().abstain(provider)


# --- the selector: directory + ledger + policy ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Whom one job addresses. ``targets`` go into ``p`` tags (empty: broadcast); ``members``
    are the targets whose votes count (the rest are observers); ``explored`` the newcomers given
    a place."""

    targets: tuple[str, ...]
    members: frozenset[str]
    broadcast: bool
    policy: str
    explored: tuple[str, ...] = ()
    reason: str = ""

    @property
    def observers(self) -> tuple[str, ...]:
        return tuple(t for t in self.targets if t not in self.members)


@dataclass(frozen=True, slots=True)
class Figures:
    """What the ledger expects of a selection: quorum latency (the k-th fastest member's EWMA,
    None if fewer than k are measured), the chance the quorum fails (members' scores as their
    chances to agree), and the expected price of the k cheapest members (msats, None: unknown)."""

    latency_ms: float | None
    failure_rate: float
    price_msats: int | None
    providers: int


def success_probability(chances: Sequence[float], k: int) -> float:
    """P(at least ``k`` of independent events with these chances happen)."""
    if k <= 0:
        return 1.0
    dist = [1.0] + [0.0] * len(chances)  # dist[j]: P(exactly j so far)
    for p in chances:
        p = min(1.0, max(0.0, p))
        for j in range(len(dist) - 1, 0, -1):
            dist[j] = dist[j] * (1 - p) + dist[j - 1] * p
        dist[0] *= 1 - p
    return sum(dist[k:])


class Selector:
    """Picks targets per job from the live ``directory`` (alive providers serving the model)
    or, without one, from ``known`` keys and the ledger's records; scores come from ``ledger``
    (newcomers score 0.5 without one). ``spare`` extra providers are asked beyond the quorum
    size (an answer short of a quorum costs a whole timeout). ``seed`` makes exploration
    repeatable."""

    def __init__(
        self,
        *,
        directory: ProviderDirectory | None = None,
        ledger: ReputationLedger | None = None,
        policy: Any = None,
        access: AccessList | None = None,
        membership: QuorumMembership | None = None,
        spare: int = 1,
        seed: int | None = None,
        known: Iterable[str] = (),
    ) -> None:
        if spare < 0:
            raise ValueError("spare must not be negative")
        self.directory = directory
        self.ledger = ledger
        self.policy = policy if policy is not None else BestReputation()
        self.access = access or AccessList()
        self.membership = membership
        self.spare = spare
        self.rng = random.Random(seed)
        self.known = list(dict.fromkeys(known))
        self._cached: tuple[tuple[Any, ...], list[Candidate]] | None = None

    # --- inputs --------------------------------------------------------------------------------

    def score(self, pubkey: str) -> float:
        return self.ledger.score(pubkey) if self.ledger is not None else 0.5

    def counts(self, pubkey: str) -> bool:
        """May this provider's vote count at all (access list and membership)?"""
        if not self.access.permits(pubkey):
            return False
        return self.membership is None or self.membership.admits(pubkey, self.score(pubkey))

    def _counts(self, c: Candidate) -> bool:
        return self.membership is None or self.membership.admits(c.pubkey, c.score)

    def candidates(
        self,
        model: str | None = None,
        *,
        prompt_tokens: int = 0,
        max_tokens: int | None = None,
    ) -> list[Candidate]:
        """Every provider that may be asked (alive, serving ``model``, not blocked). Cached
        until the directory or the ledger changes, or the clock's second moves on."""
        completion = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
        d, led = self.directory, self.ledger
        clock = d.clock if d is not None else led.clock if led is not None else None
        key = (
            model,
            prompt_tokens,
            completion,
            d.version if d is not None else -1,
            led.version if led is not None else -1,
            int(clock()) if clock is not None else 0,
            self.access,
        )
        if self._cached is not None and self._cached[0] == key:
            return list(self._cached[1])
        out = self._build_candidates(model, prompt_tokens, completion)
        self._cached = (key, out)
        return list(out)

    def _build_candidates(
        self, model: str | None, prompt_tokens: int, completion: int
    ) -> list[Candidate]:
        quotes: dict[str, int | None] = {}
        keys: list[str] = []
        foreign: set[str] = set()
        if self.directory is not None:
            for info in self.directory.alive(model):
                keys.append(info.pubkey)
                quotes[info.pubkey] = info.quote_msats(model, prompt_tokens, completion)
                if info.foreign:
                    foreign.add(info.pubkey)
        keys.extend(self.known)
        if self.directory is None and self.ledger is not None:
            keys.extend(r.provider for r in self.ledger.records())
        led = self.ledger
        newcomer = self.score("")  # the score of a key without a record
        permits = self.access.permits
        out: list[Candidate] = []
        for pk in dict.fromkeys(keys):
            if not permits(pk):
                continue
            rec = led.get(pk) if led is not None else None
            if rec is None:
                out.append(Candidate(pk, newcomer, 0.0, None, quotes.get(pk), pk in foreign))
                continue
            price = quotes.get(pk)
            if price is None and rec.price_msats is not None:
                price = round(rec.price_msats)
            assert led is not None
            out.append(
                Candidate(
                    pk,
                    rec.score_with(led.weights),
                    rec.experience,
                    rec.latency_ms,
                    price,
                    pk in foreign and rec.agreed <= 0,
                )
            )
        return out

    # --- choosing -------------------------------------------------------------------------------

    def select(
        self,
        k: int,
        *,
        model: str | None = None,
        prompt_tokens: int = 0,
        max_tokens: int | None = None,
        n: int | None = None,
    ) -> Selection:
        """Targets for a job needing ``k`` agreeing answers (``n``: how many to ask, default
        ``k + spare``). Raises :class:`~client.nostr.errors.NoProvidersAvailable` when fewer than
        ``k`` providers may count."""
        policy = self.policy
        if isinstance(policy, Broadcast):
            return Selection((), frozenset(), True, policy.name, reason="broadcast")
        size = n if n is not None else k + self.spare
        cands = self.candidates(model, prompt_tokens=prompt_tokens, max_tokens=max_tokens)
        voters = [c for c in cands if self._counts(c)]
        if len(voters) < k:
            why = f"{len(cands)} provider(s) may be asked, {len(voters)} may count"
            raise NoProvidersAvailable(
                f"quorum {k} needs {k} eligible providers"
                + (f" serving {model}" if model else "")
                + f"; {why} (policy {policy.name})"
            )
        explored: tuple[str, ...] = ()
        chosen: list[Candidate] = []
        # Record-less foreign DVMs rank below everyone else: the policy fills from them only
        # the places the others leave open.
        for tier in (
            [c for c in voters if not c.foreign],
            [c for c in voters if c.foreign],
        ):
            want = size - len(chosen)
            if want <= 0 or not tier:
                continue
            if isinstance(policy, Explore):
                picked, fresh = policy.pick(tier, want, self.rng)
                explored += tuple(c.pubkey for c in fresh)
            else:
                picked = policy.choose(tier, want, self.rng)
            chosen += picked
        if len(chosen) < k:
            raise NoProvidersAvailable(
                f"policy {policy.name} found {len(chosen)} provider(s) for quorum {k}"
                + (f" serving {model}" if model else "")
            )
        targets = [c.pubkey for c in chosen]
        if isinstance(policy, Explore) and self.membership is not None:
            # Newcomers cannot count under a membership policy: ask some as observers so they
            # can earn a record without deciding anything.
            taken = set(targets)
            outsiders = [c for c in cands if not self._counts(c) and c.pubkey not in taken]
            fresh = policy.newcomers(outsiders)
            if fresh and policy.explore_now(self.rng):
                picks = self.rng.sample(fresh, min(policy.slots, len(fresh)))
                targets += [c.pubkey for c in picks]
                explored += tuple(c.pubkey for c in picks)
        members = frozenset(c.pubkey for c in chosen)
        reason = f"{policy.name}: {len(members)} member(s)" + (
            f", {len(explored)} newcomer(s)" if explored else ""
        )
        return Selection(tuple(targets), members, False, policy.name, explored, reason)

    def admit_for(self, selection: Selection) -> Callable[[str], bool]:
        """Whose votes count in a job: its members, or (broadcast) anyone who :meth:`counts`."""
        if selection.broadcast:
            return self.counts
        members = selection.members
        return members.__contains__

    def quorum(
        self, k: int, selection: Selection, comparator: Comparator | None, n: int | None = None
    ) -> GatedQuorum:
        """The quorum engine for a job with this selection."""
        if n is None and not selection.broadcast:
            n = len(selection.members)
        return GatedQuorum(k, n, comparator, admit=self.admit_for(selection))

    def figures(self, k: int, model: str | None = None) -> Figures | None:
        """What the ledger expects for a job of quorum ``k`` under this policy (exploration left
        out); None without a ledger or when no candidate has a record."""
        if self.ledger is None:
            return None
        policy = self.policy.base if isinstance(self.policy, Explore) else self.policy
        cands = [c for c in self.candidates(model) if self._counts(c)]
        if isinstance(policy, Broadcast):
            chosen = cands
        else:
            chosen = policy.choose(cands, k + self.spare, random.Random(0))
        if not any(c.experience > 0 for c in chosen):
            return None
        if len(chosen) < k:
            return Figures(None, 1.0, None, len(chosen))
        lat = sorted(c.latency_ms for c in chosen if c.latency_ms is not None)
        prices = sorted(c.price_msats for c in chosen if c.price_msats is not None)
        return Figures(
            latency_ms=lat[k - 1] if len(lat) >= k else None,
            failure_rate=1.0 - success_probability([c.score for c in chosen], k),
            price_msats=sum(prices[:k]) if len(prices) >= k else None,
            providers=len(chosen),
        )

    def record(
        self, result: Any, selection: Selection, comparator: Comparator | None = None
    ) -> None:
        """Update the ledger from one job's outcome (a SwarmResult)."""
        if self.ledger is not None:
            self.ledger.record_result(result, selection.targets, comparator=comparator)
