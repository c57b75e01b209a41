"""k-of-n quorum over provider answers. Pure: no I/O, no clock (callers stamp votes).

Usage::

    from client.customer.quorum import Quorum, Vote, normalized

    q = Quorum(k=2, n=3, comparator=normalized())
    d = q.add(Vote(provider=pk_a, text="Paris."))     # Decision(reached=False, ...)
    d = q.add(Vote(provider=pk_b, text="paris"))      # Decision(reached=True, text="Paris.")
    d.agreeing, d.dissenting                          # provider public keys (hex)

API (kept small; the router's SwarmSimulator uses it too):

- :class:`Vote` ``(provider, text, event_id="", received_at=0.0, protection="clear")``: one
  provider's answer. ``protection`` says how the answer travelled: ``"clear"`` (plain result),
  later ``"sealed"`` (encrypted) or ``"committed"`` (commit-reveal); the engine only carries it.
- :class:`Quorum` ``(k, n=None, comparator=exact())``:
  ``add(vote) -> Decision`` counts a vote; a second vote from a provider that already voted is
  rejected (``rejected`` goes up, the decision does not change). ``abstain(provider)`` records a
  provider that will not vote (error feedback), so ``Decision.exhausted`` can say early that k
  can no longer be reached. ``decision()`` returns the current state. Once ``k`` agree the
  decision is final: later votes are kept in ``votes`` (and counted in ``late``) but never change
  ``text``, ``agreeing`` or ``dissenting``.
- :class:`Decision`: ``reached``, ``text`` (the agreed text: the group's first answer; ``None``
  until reached), ``agreeing`` and ``dissenting`` (provider keys; before the quorum they describe
  the leading group), ``votes`` (every accepted vote, in arrival order), ``groups``, ``rejected``,
  ``late``, ``exhausted``, and why: ``comparator`` (its name), ``note`` (what ``auto``
  picked and why), ``scores`` (each agreeing provider's score against the group's first answer)
  and ``dissent_scores`` (each dissenter's score against it), scores in [0, 1] from the
  comparator's ``score`` (1.0/0.0 for comparators that only say same or not).
- Comparators, each a small object with ``canonical(text) -> value | None`` (``None``: the text
  cannot take part, e.g. not a number for :func:`numeric`) and ``same(a, b) -> bool`` on
  canonical values: :func:`exact`, :func:`normalized` (NFKC, case, whitespace, punctuation at the
  ends), :func:`numeric` (absolute/relative tolerance), :func:`canonical_json`, :func:`similarity`
  (a built-in lexical cosine above a threshold, or cosine of vectors from an ``embed`` function
  you pass in), :func:`custom` (any ``(str, str) -> bool``). Comparators that read the claim
  in free-form text (``answer:*``, ``semantic``, ``claims``, ``judge``, ``auto``) are in
  :mod:`client.customer.agreement`. :func:`comparator_by_name` maps CLI names to all of these.

Grouping rule: each vote joins the earliest group it agrees with, or starts its own group. For
transitive comparators (exact, normalized, JSON) groups are equivalence classes and the group's
first vote (its anchor) stands for all of it. For tolerant ones agreement is not transitive (A
close to B and B close to C does not make A close to C), so a comparator says how a vote must
agree with a group through its ``grouping`` attribute: ``"anchor"`` (the default: with the
anchor, as for numeric and similarity) or ``"all"`` (with every member: the comparators for
free-form text, where a liar close to one honest answer must not join a group on that alone).
The quorum is reached the moment a group holds k votes, so with k = 2 the first two votes that
agree decide, whichever comes first: an answer that arrives early is compared with every later
one (docs/quorum.md, "The quorum, not the pair").
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal, Protocol, runtime_checkable

Protection = Literal["clear", "sealed", "committed"]
Grouping = Literal["anchor", "all"]

__all__ = [
    "CanonicalJson",
    "Comparator",
    "Custom",
    "Decision",
    "Exact",
    "Grouping",
    "Normalized",
    "Numeric",
    "Quorum",
    "Similarity",
    "Vote",
    "canonical_json",
    "comparator_by_name",
    "custom",
    "exact",
    "lexical_similarity",
    "normalize_text",
    "normalized",
    "numeric",
    "similarity",
]


# --- votes and decisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vote:
    """One provider's answer. ``provider`` is the provider's public key (hex)."""

    provider: str
    text: str
    event_id: str = ""
    received_at: float = 0.0
    protection: Protection = "clear"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the quorum stands. ``text`` is set only when ``reached``."""

    reached: bool
    k: int
    text: str | None
    agreeing: tuple[str, ...]
    dissenting: tuple[str, ...]
    votes: tuple[Vote, ...]
    groups: tuple[tuple[str, ...], ...] = ()
    rejected: int = 0
    late: int = 0
    exhausted: bool = False
    comparator: str = "exact"
    note: str = ""
    scores: tuple[tuple[str, float], ...] = ()
    dissent_scores: tuple[tuple[str, float], ...] = ()

    @property
    def leading(self) -> int:
        """Size of the largest group (how close the quorum came)."""
        return max((len(g) for g in self.groups), default=0)

    def vote_of(self, provider: str) -> Vote | None:
        for v in self.votes:
            if v.provider == provider:
                return v
        return None


# --- comparators -----------------------------------------------------------------------------


@runtime_checkable
class Comparator(Protocol):
    """Decides whether two answers agree. ``hashable`` comparators use ``==`` on canonical values
    (and let the engine group in O(1))."""

    # Read-only: the comparators are frozen dataclasses.
    @property
    def name(self) -> str: ...

    @property
    def hashable(self) -> bool: ...

    def canonical(self, text: str) -> Any | None: ...

    def same(self, a: Any, b: Any) -> bool: ...


_WS = re.compile(r"\s+")


def _strip_edges(text: str) -> str:
    """Drop whitespace, punctuation and symbols like quotes at both ends (not inside)."""
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_edge(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return ch.isspace() or cat[0] == "P"


def normalize_text(text: str) -> str:
    """NFKC, case-folded, runs of whitespace as one space, punctuation stripped at both ends."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", _strip_edges(text))


@dataclass(frozen=True, slots=True)
class Exact:
    name: str = "exact"
    hashable: bool = True

    def canonical(self, text: str) -> Any | None:
        return text

    def same(self, a: Any, b: Any) -> bool:
        return bool(a == b)


@dataclass(frozen=True, slots=True)
class Normalized:
    name: str = "normalized"
    hashable: bool = True

    def canonical(self, text: str) -> Any | None:
        return normalize_text(text)

    def same(self, a: Any, b: Any) -> bool:
        return bool(a == b)


_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")


@dataclass(frozen=True, slots=True)
class Numeric:
    """Answers agree when their numbers are within ``abs_tol`` or ``rel_tol`` of each other.

    The number is the whole (normalized) text, or else the only number in it ("The answer is
    42." -> 42); a text with no number or several numbers cannot agree with anything.
    """

    abs_tol: float = 1e-9
    rel_tol: float = 1e-9
    name: str = "numeric"
    hashable: bool = False

    def canonical(self, text: str) -> Any | None:
        text = unicodedata.normalize("NFKC", text).strip()
        found = _NUMBER.findall(text)
        if len(found) != 1:
            return None
        try:
            value = float(found[0].replace(",", "").replace("−", "-"))
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def same(self, a: Any, b: Any) -> bool:
        return math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol)


_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```$", re.S)


def _json_normal(value: Any) -> Any:
    # 1 and 1.0 are the same JSON number to a reader; make them the same to the comparator.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_json_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_normal(v) for k, v in value.items()}
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class CanonicalJson:
    """Answers agree when they parse to the same JSON value (key order, spacing, 1 vs 1.0 and a
    surrounding Markdown code fence do not matter). Text that is not JSON cannot agree."""

    name: str = "json"
    hashable: bool = True

    def canonical(self, text: str) -> Any | None:
        body = text.strip()
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group(1)
        try:
            value = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError):
            return None
        return json.dumps(
            _json_normal(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    def same(self, a: Any, b: Any) -> bool:
        return bool(a == b)


_TOKEN = re.compile(r"\w+", re.UNICODE)


def _bag(text: str) -> Counter[str]:
    """Words and word pairs of the normalized text: pairs make word order count a little."""
    words = _TOKEN.findall(normalize_text(text))
    bag = Counter(words)
    bag.update(f"{a} {b}" for a, b in pairwise(words))
    return bag


def _cosine_bags(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 1.0 if not a and not b else 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(n * b[t] for t, n in a.items() if t in b)
    na = math.sqrt(sum(n * n for n in a.values()))
    nb = math.sqrt(sum(n * n for n in b.values()))
    return dot / (na * nb)


def lexical_similarity(a: str, b: str) -> float:
    """Cosine of word and word-pair counts of the normalized texts, in [0, 1]."""
    return _cosine_bags(_bag(a), _bag(b))


def _cosine_vectors(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@dataclass(frozen=True, slots=True)
class Similarity:
    """Answers agree when their similarity is at least ``threshold``.

    Without ``embed`` the measure is :func:`lexical_similarity` (cheap, no model). With
    ``embed`` (a function text -> vector, e.g. a sentence-embedding model) it is the cosine of
    the two vectors; the engine embeds each answer once.
    """

    threshold: float = 0.8
    embed: Callable[[str], Sequence[float]] | None = None
    name: str = "similarity"
    hashable: bool = False

    def canonical(self, text: str) -> Any | None:
        if self.embed is not None:
            return tuple(self.embed(text))
        return _bag(text)

    def same(self, a: Any, b: Any) -> bool:
        return self.score(a, b) >= self.threshold

    def score(self, a: Any, b: Any) -> float:
        if self.embed is not None:
            return _cosine_vectors(a, b)
        return _cosine_bags(a, b)


@dataclass(frozen=True, slots=True)
class Custom:
    """Any predicate ``agree(text_a, text_b) -> bool`` (should be symmetric)."""

    agree: Callable[[str, str], bool]
    name: str = "custom"
    hashable: bool = False

    def canonical(self, text: str) -> Any | None:
        return text

    def same(self, a: Any, b: Any) -> bool:
        return bool(self.agree(a, b))


def exact() -> Exact:
    return Exact()


def normalized() -> Normalized:
    return Normalized()


def numeric(abs_tol: float = 1e-9, rel_tol: float = 1e-9) -> Numeric:
    if abs_tol < 0 or rel_tol < 0:
        raise ValueError("tolerances must be >= 0")
    return Numeric(abs_tol=abs_tol, rel_tol=rel_tol)


def canonical_json() -> CanonicalJson:
    return CanonicalJson()


def similarity(
    threshold: float = 0.8, embed: Callable[[str], Sequence[float]] | None = None
) -> Similarity:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be between 0 and 1")
    return Similarity(threshold=threshold, embed=embed)


def custom(agree: Callable[[str, str], bool], name: str = "custom") -> Custom:
    return Custom(agree=agree, name=name)


COMPARATOR_NAMES = (
    "exact",
    "normalized",
    "numeric",
    "json",
    "similarity",
    "lexical",
    "claims",
    "semantic",
    "judge",
    "auto",
)

#: ``judge(question, answer_a, answer_b) -> P(same claims)``: a language model asked whether two
#: answers make the same claims (client.customer.agreement.judge).
JudgeFn = Callable[[str, str, str], float]


def comparator_by_name(
    name: str,
    *,
    tolerance: float | None = None,
    prompt: str = "",
    response_format: Any = None,
    embed: Callable[[str], Sequence[float]] | None = None,
    judge: JudgeFn | None = None,
    judge_options: Mapping[str, Any] | None = None,
) -> Comparator:
    """``exact``, ``normalized``, ``numeric`` (``tolerance`` absolute), ``json``, ``similarity``
    or ``lexical`` (lexical cosine, ``tolerance`` = threshold); ``claims`` (lexical closeness
    plus claim checks), ``semantic`` (sentence embeddings plus claim checks; needs the
    ``semantic`` extra), ``judge`` (claim checks, then ``judge`` for paragraphs; needs one),
    ``auto`` (picks by ``prompt`` and ``response_format``; uses the embedding model when
    installed, and ``judge`` for paragraphs when given). ``embed`` replaces the default
    embedding model; ``judge_options`` bound the judge (``threshold``, ``max_calls``,
    ``timeout_s``, ``max_chars``). Raises ValueError for an unknown name, a missing model or
    judge, or a judge given to a comparator that does not use it."""
    if judge is not None and name not in ("judge", "auto"):
        raise ValueError(f"comparator {name!r} does not use a judge (only judge and auto do)")
    if judge_options and judge is None:
        raise ValueError("judge_options without a judge")
    if name in ("claims", "semantic", "auto", "judge"):
        return _agreement_comparator(
            name, tolerance, prompt, response_format, embed, judge, dict(judge_options or {})
        )
    if name == "exact":
        return exact()
    if name == "normalized":
        return normalized()
    if name == "numeric":
        return numeric(abs_tol=1e-9 if tolerance is None else tolerance)
    if name == "json":
        return canonical_json()
    if name in ("similarity", "lexical"):
        return similarity(0.8 if tolerance is None else tolerance)
    raise ValueError(f"unknown comparator {name!r}; choose one of {', '.join(COMPARATOR_NAMES)}")


def _agreement_comparator(
    name: str,
    tolerance: float | None,
    prompt: str,
    response_format: Any,
    embed: Callable[[str], Sequence[float]] | None,
    judge: JudgeFn | None,
    judge_options: dict[str, Any],
) -> Comparator:
    # Imported here: client.customer.agreement imports this module, and plain names need none of it.
    from client.customer.agreement import AutoComparator, SemanticComparator
    from client.customer.agreement.comparators import (
        LEXICAL_CLAIMS_THRESHOLD,
        SEMANTIC_THRESHOLD,
        paragraph_comparator,
    )
    from client.customer.agreement.embedding import (
        INSTALL_HINT,
        default_embedder,
        embedding_available,
    )
    from client.customer.agreement.judge import JudgeComparator

    if embed is None and name != "claims" and embedding_available():
        embed = default_embedder()
    if name == "auto":
        return AutoComparator(
            prompt=prompt,
            response_format=response_format,
            embed=embed,
            threshold=tolerance,
            judge=judge,
            judge_options=judge_options,
        )
    if name == "judge":
        if judge is None:
            raise ValueError(
                "comparator 'judge' needs a judge model: swarm ask --judge-url URL "
                "--judge-model MODEL, or the gateway's swarm.judge (docs/quorum.md)"
            )
        if tolerance is not None:
            judge_options.setdefault("threshold", tolerance)
        return JudgeComparator(
            judge=judge,
            fallback=paragraph_comparator(prompt, embed),
            prompt=prompt,
            **judge_options,
        )
    if name == "semantic" and embed is None:
        raise ValueError(f"comparator 'semantic' needs a sentence-embedding model: {INSTALL_HINT}")
    default = SEMANTIC_THRESHOLD if name == "semantic" else LEXICAL_CLAIMS_THRESHOLD
    return SemanticComparator(
        embed=embed if name == "semantic" else None,
        threshold=default if tolerance is None else tolerance,
        prompt=prompt,
    )


def _score(comparator: Comparator, a: Any, b: Any) -> float:
    """How alike two canonical values are, in [0, 1]; 1.0/0.0 for a plain same-or-not."""
    if a is None or b is None:
        return 0.0
    try:
        scorer = getattr(comparator, "score", None)
        if scorer is not None:
            return round(min(1.0, max(0.0, float(scorer(a, b)))), 4)
        return 1.0 if comparator.same(a, b) else 0.0
    except Exception:
        return 0.0


# --- the engine ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    anchor: Any  # canonical value of the first vote; None: the text could not take part
    members: list[int] = field(default_factory=list)  # indexes into Quorum._votes


class Quorum:
    """Collects votes until ``k`` agree. ``n`` (optional) is how many providers can vote at most;
    with it, :attr:`Decision.exhausted` turns true as soon as k can no longer be reached."""

    __slots__ = (
        "_abstained",
        "_by_key",
        "_every",
        "_groups",
        "_scores",
        "_values",
        "_voters",
        "_votes",
        "_winner",
        "comparator",
        "k",
        "late",
        "n",
        "rejected",
    )

    def __init__(self, k: int, n: int | None = None, comparator: Comparator | None = None) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError("quorum k must be an integer >= 1")
        if n is not None and n < k:
            raise ValueError(f"quorum k={k} cannot be reached by n={n} providers")
        self.k = k
        self.n = n
        self.comparator: Comparator = comparator if comparator is not None else Exact()
        grouping = getattr(self.comparator, "grouping", "anchor")
        if grouping not in ("anchor", "all"):
            raise ValueError(f"comparator grouping must be 'anchor' or 'all', not {grouping!r}")
        self._every = grouping == "all"
        self.rejected = 0
        self.late = 0
        self._votes: list[Vote] = []
        self._values: list[Any] = []  # canonical value of each vote (None: late or unusable)
        self._scores: dict[tuple[int, int], float] = {}
        self._voters: set[str] = set()
        self._abstained: set[str] = set()
        self._groups: list[_Group] = []
        self._by_key: dict[Hashable, int] = {}
        self._winner: int | None = None  # index of the group that reached k

    @property
    def reached(self) -> bool:
        return self._winner is not None

    def has_voted(self, provider: str) -> bool:
        return provider in self._voters

    def add(self, vote: Vote) -> Decision:
        """Count ``vote``; a provider's second vote is rejected (and counted in ``rejected``)."""
        if vote.provider in self._voters:
            self.rejected += 1
            return self.decision()
        self._voters.add(vote.provider)
        self._abstained.discard(vote.provider)
        index = len(self._votes)
        self._votes.append(vote)
        if self._winner is not None:
            self._values.append(None)
            self.late += 1
            return self.decision()
        try:
            value = self.comparator.canonical(vote.text)
        except Exception:  # a user-supplied embed/agree failing must not break the engine
            value = None
        self._values.append(value)
        group = self._place(value)
        self._groups[group].members.append(index)
        if len(self._groups[group].members) >= self.k:
            self._winner = group
        return self.decision()

    def abstain(self, provider: str) -> Decision:
        """``provider`` will not vote (it reported an error); ignored if it already voted."""
        if provider not in self._voters:
            self._abstained.add(provider)
        return self.decision()

    def _place(self, value: Any) -> int:
        if value is not None:
            if self.comparator.hashable:
                found = self._by_key.get(value)
                if found is not None:
                    return found
            else:
                for i, g in enumerate(self._groups):
                    if g.anchor is not None and self._joins(g, value):
                        return i
        self._groups.append(_Group(anchor=value))
        new = len(self._groups) - 1
        if value is not None and self.comparator.hashable:
            self._by_key[value] = new
        return new

    def _joins(self, group: _Group, value: Any) -> bool:
        if not self._agree(group.anchor, value):
            return False
        # Members other than the anchor have canonical values (a None value never joins).
        return not self._every or all(
            self._agree(self._values[m], value) for m in group.members[1:]
        )

    def _agree(self, a: Any, b: Any) -> bool:
        try:
            return self.comparator.same(a, b)
        except Exception:
            return False

    def decision(self) -> Decision:
        groups = [g for g in self._groups if g.members]
        if self._winner is not None:
            lead: _Group | None = self._groups[self._winner]
            reached = True
        else:
            # Leading group: the largest; on a tie the one that started first.
            lead = max(groups, key=lambda g: len(g.members), default=None)
            reached = False
        agree_idx = set(lead.members) if lead is not None else set()
        # Once reached, votes that came after the quorum are neither agreeing nor dissenting.
        counted = range(len(self._votes)) if not reached else self._counted_until_win()
        dissent = tuple(self._votes[i].provider for i in counted if i not in agree_idx)
        agreeing = tuple(self._votes[i].provider for i in sorted(agree_idx))
        text = self._votes[lead.members[0]].text if reached and lead is not None else None
        best = len(lead.members) if lead is not None else 0
        scores: tuple[tuple[str, float], ...] = ()
        dissent_scores: tuple[tuple[str, float], ...] = ()
        if lead is not None:
            anchor = lead.members[0]
            scores = tuple(
                (self._votes[i].provider, self._score_against(anchor, i)) for i in sorted(agree_idx)
            )
            dissent_scores = tuple(
                (self._votes[i].provider, self._score_against(anchor, i))
                for i in counted
                if i not in agree_idx
            )
        exhausted = False
        if not reached and self.n is not None:
            remaining = self.n - len(self._votes) - len(self._abstained)
            exhausted = best + max(remaining, 0) < self.k
        return Decision(
            reached=reached,
            k=self.k,
            text=text,
            agreeing=agreeing,
            dissenting=dissent,
            votes=tuple(self._votes),
            groups=tuple(tuple(self._votes[i].provider for i in g.members) for g in groups),
            rejected=self.rejected,
            late=self.late,
            exhausted=exhausted,
            comparator=self.comparator.name,
            note=str(getattr(self.comparator, "note", "")),
            scores=scores,
            dissent_scores=dissent_scores,
        )

    def _score_against(self, anchor: int, index: int) -> float:
        if anchor == index:
            return 1.0 if self._values[anchor] is not None else 0.0
        key = (anchor, index)
        found = self._scores.get(key)
        if found is None:
            found = _score(self.comparator, self._values[anchor], self._values[index])
            self._scores[key] = found
        return found

    def _counted_until_win(self) -> range:
        return range(len(self._votes) - self.late)
