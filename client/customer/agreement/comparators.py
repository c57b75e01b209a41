"""Comparators that compare what answers claim, not how they are worded. Pure: no I/O (the
embedding function is passed in; :mod:`client.customer.agreement.embedding` is the shell that loads
one).

- :class:`AnswerComparator` ``(kind, prompt="")``: extracts the claim first (final number,
  yes/no, option letter, JSON value, a short fact's head entity) and compares claims.
- :class:`SemanticComparator` ``(embed, threshold, prompt, min_lexical)``: cosine of sentence
  embeddings at least ``threshold``, the lexical cosine of
  :func:`client.customer.quorum.lexical_similarity` at least ``min_lexical``, *and* no claim
  conflict (:func:`client.customer.agreement.claims.paragraph_conflict`: negation, numbers,
  names, a swapped key term, the question's subject denied, an edited copy); with
  ``embed=None`` the lexical cosine stands in for the embedding's (name ``claims``).
- :class:`AutoComparator` ``(prompt, response_format, embed, judge)``: picks one of the above by
  the request's shape (:func:`client.customer.agreement.extract.classify`) and says which in
  ``note``; for paragraphs it asks ``judge`` when one is given
  (:class:`client.customer.agreement.judge.JudgeComparator`).

Every comparator offers ``score(a, b) -> float`` in [0, 1] on canonical values, which the quorum
engine puts in its decision (agreement 1.0 / 0.0 for claim comparators, the cosine for
semantic ones). The paragraph comparators group by ``"all"`` (a vote joins a group only if it
agrees with every member: closeness is not transitive); see :class:`client.customer.quorum.Quorum`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from client.customer.agreement.claims import paragraph_conflict
from client.customer.agreement.extract import (
    FactClaim,
    Kind,
    ParagraphClaims,
    classify,
    fact_claim,
    final_number,
    json_value,
    option_letter,
    paragraph_claims,
    parse_options,
    topic_words,
    yes_no,
)

__all__ = [
    "LEXICAL_CLAIMS_THRESHOLD",
    "PARAGRAPH_POLICY",
    "SEMANTIC_THRESHOLD",
    "AnswerComparator",
    "AutoComparator",
    "ParagraphPolicy",
    "SemanticComparator",
    "paragraph_comparator",
]

Embed = Callable[[str], Sequence[float]]

# Calibrated on bench/data/agreement.jsonl by bench/agreement.py --calibrate (docs/quorum.md):
# the highest cosine that keeps honest paragraph pairs at >= 95% agreement. Cosine barely tells
# the wrong paragraphs apart (they are as close as honest ones); the claim checks do that.
SEMANTIC_THRESHOLD = 0.55
LEXICAL_CLAIMS_THRESHOLD = 0.3


@dataclass(frozen=True, slots=True)
class ParagraphPolicy:
    """How strict ``auto`` is with paragraphs when no judge is configured: the least embedding
    cosine (with the embedding model), the least lexical cosine, and, without the embedding
    model, the least lexical cosine of ``claims``. The claim checks apply in every case."""

    cosine: float
    lexical: float
    claims_lexical: float


# Chosen on the calibration half of the benchmark by bench/agreement.py --operating-point, by
# the rule written there and in docs/quorum.md ("The operating point for paragraphs").
PARAGRAPH_POLICY = ParagraphPolicy(cosine=0.70, lexical=0.50, claims_lexical=0.55)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@dataclass(frozen=True, slots=True)
class AnswerComparator:
    """Compare extracted claims of one ``kind`` (``number``, ``yesno``, ``choice``, ``json``,
    ``fact``). ``prompt`` gives the options of a multiple-choice question and the question words
    a short fact's answer is stripped of. A text with no such claim cannot agree (``None``)."""

    kind: Kind
    prompt: str = ""
    rel_tol: float = 1e-9
    abs_tol: float = 1e-9
    name: str = ""
    hashable: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "paragraph":
            raise ValueError("paragraphs are compared by SemanticComparator")
        if not self.name:
            object.__setattr__(self, "name", f"answer:{self.kind}")
        if self.kind == "choice" and not self.options and self.prompt:
            object.__setattr__(self, "options", parse_options(self.prompt))

    def canonical(self, text: str) -> Any | None:
        if self.kind == "number":
            return final_number(text)
        if self.kind == "yesno":
            return yes_no(text)
        if self.kind == "choice":
            return option_letter(text, self.options or None)
        if self.kind == "json":
            return json_value(text)
        return fact_claim(text, self.prompt)

    def same(self, a: Any, b: Any) -> bool:
        if self.kind == "number":
            return math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        if self.kind == "fact":
            return _same_fact(a, b)
        return bool(a == b)

    def score(self, a: Any, b: Any) -> float:
        return 1.0 if self.same(a, b) else 0.0


def _same_fact(a: FactClaim, b: FactClaim) -> bool:
    # "William Shakespeare" and "Shakespeare wrote it" name the same entity: each answer's claim
    # must meet the other's words. A denial never agrees with an assertion.
    if a.negated != b.negated:
        return False
    return bool(a.claim & b.words) and bool(b.claim & a.words)


@dataclass(frozen=True, slots=True)
class _Para:
    vector: Any  # embedding tuple, or a word-count Counter for the lexical stand-in
    claims: ParagraphClaims
    bag: Counter[str] | None = None  # words and word pairs, when a lexical floor is set


@dataclass(frozen=True, slots=True)
class SemanticComparator:
    """Paragraphs agree when they are close (embedding cosine, or lexical cosine without
    ``embed``), share at least ``min_lexical`` lexical cosine, and no aligned sentences
    conflict in a claim."""

    embed: Embed | None = None
    threshold: float = SEMANTIC_THRESHOLD
    name: str = "semantic"
    hashable: bool = False
    prompt: str = ""  # what was asked: an explanation's subject may not be denied by one side
    topic: frozenset[str] = frozenset()
    min_lexical: float = 0.0
    grouping: str = "all"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if not 0.0 <= self.min_lexical <= 1.0:
            raise ValueError("min_lexical must be between 0 and 1")
        if self.embed is None and self.name == "semantic":
            object.__setattr__(self, "name", "claims")
        # An explanation does not deny its subject; a yes/no answer may ("No, it is not").
        if self.prompt and not self.topic and classify(self.prompt)[0] == "paragraph":
            object.__setattr__(self, "topic", topic_words(self.prompt))

    def canonical(self, text: str) -> Any | None:
        if not text.strip():
            return None
        from client.customer.quorum import _bag

        bag = _bag(text) if self.embed is None or self.min_lexical > 0 else None
        vector: Any = tuple(self.embed(text)) if self.embed is not None else bag
        return _Para(vector=vector, claims=paragraph_claims(text), bag=bag)

    def closeness(self, a: _Para, b: _Para) -> float:
        if self.embed is not None:
            return max(0.0, _cosine(a.vector, b.vector))
        from client.customer.quorum import _cosine_bags

        va: Counter[str] = a.vector
        return _cosine_bags(va, b.vector)

    def lexical(self, a: _Para, b: _Para) -> float:
        """The lexical cosine (words and word pairs); 1.0 when no floor is set."""
        if a.bag is None or b.bag is None:
            return 1.0
        from client.customer.quorum import _cosine_bags

        return _cosine_bags(a.bag, b.bag)

    def conflict(self, a: _Para, b: _Para) -> str | None:
        return paragraph_conflict(a.claims, b.claims, self.topic) or paragraph_conflict(
            b.claims, a.claims, self.topic
        )

    def same(self, a: Any, b: Any) -> bool:
        return (
            self.closeness(a, b) >= self.threshold
            and (self.min_lexical <= 0 or self.lexical(a, b) >= self.min_lexical)
            and self.conflict(a, b) is None
        )

    def score(self, a: Any, b: Any) -> float:
        return round(self.closeness(a, b), 4)


def paragraph_comparator(
    prompt: str, embed: Embed | None, threshold: float | None = None
) -> SemanticComparator:
    """The paragraph comparator without a judge, at :data:`PARAGRAPH_POLICY` (``threshold``
    replaces its closeness threshold)."""
    policy = PARAGRAPH_POLICY
    if embed is not None:
        return SemanticComparator(
            embed=embed,
            threshold=policy.cosine if threshold is None else threshold,
            prompt=prompt,
            min_lexical=policy.lexical,
        )
    return SemanticComparator(
        threshold=policy.claims_lexical if threshold is None else threshold, prompt=prompt
    )


@dataclass(frozen=True, slots=True, eq=False)
class AutoComparator:
    """Picks a comparator by the request's shape: ``response_format`` JSON or a prompt asking
    for JSON -> ``answer:json``; lettered options -> ``answer:choice``; an explanation ->
    ``judge`` when a ``judge`` is given, else ``semantic`` (``claims`` without an embedding
    model) at :data:`PARAGRAPH_POLICY`; a number -> ``answer:number``; a yes/no question ->
    ``answer:yesno``; a short factual question -> ``answer:fact``; anything else -> as an
    explanation. ``note`` says what was picked and why (and, with a judge, what it was asked).
    ``judge_options`` are :class:`~client.customer.agreement.judge.JudgeComparator`'s bounds
    (``threshold``, ``max_calls``, ``timeout_s``, ``max_chars``)."""

    prompt: str = ""
    response_format: Any = None
    embed: Embed | None = None
    threshold: float | None = None
    judge: Callable[[str, str, str], float] | None = None
    judge_options: Mapping[str, Any] = field(default_factory=dict)
    name: str = "auto"
    hashable: bool = False
    inner: Any = None
    picked: str = ""

    def __post_init__(self) -> None:
        kind, why = classify(self.prompt, self.response_format)
        inner: Any
        if kind == "paragraph":
            inner = paragraph_comparator(self.prompt, self.embed, self.threshold)
            if self.judge is not None:
                from client.customer.agreement.judge import JudgeComparator

                inner = JudgeComparator(
                    judge=self.judge, fallback=inner, prompt=self.prompt, **self.judge_options
                )
        else:
            inner = AnswerComparator(kind=kind, prompt=self.prompt)
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "picked", f"auto picked {inner.name}: {why}")

    @property
    def note(self) -> str:
        extra = getattr(self.inner, "note", "")
        return f"{self.picked}; {extra}" if extra else self.picked

    @property
    def grouping(self) -> str:
        return str(getattr(self.inner, "grouping", "anchor"))

    @property
    def blocking(self) -> bool:
        return bool(getattr(self.inner, "blocking", False))

    def canonical(self, text: str) -> Any | None:
        return self.inner.canonical(text)

    def same(self, a: Any, b: Any) -> bool:
        return bool(self.inner.same(a, b))

    def score(self, a: Any, b: Any) -> float:
        return float(self.inner.score(a, b))
