"""Claim checks between two paragraphs. Pure: no I/O.

Closeness is not agreement: "the capital of Portugal is Lisbon" and "... is Porto" are near
twins to a sentence-embedding model, and so is a paragraph with one claim negated. These checks
align each sentence of one answer with its most similar sentence in the other (by shared
content words) and call a *conflict* when an aligned pair differs in a claim: its polarity (one
negates), its numbers, its names, or one swapped key term in an otherwise identical sentence.
Sentences with no counterpart (an honest answer that says more, or less) never conflict.
"""

from __future__ import annotations

from client.customer.agreement.extract import ParagraphClaims, Sentence

__all__ = ["paragraph_conflict"]

ALIGN_MIN_SHARED = 3  # content words two sentences must share to be about the same thing
ALIGN_MIN_JACCARD = 0.4
TWIN_JACCARD = 0.6  # above this, one swapped word is a changed claim, not a paraphrase


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _best(s: Sentence, others: tuple[Sentence, ...]) -> tuple[Sentence | None, float]:
    best, score = None, 0.0
    for o in others:
        if len(s.words & o.words) < ALIGN_MIN_SHARED:
            continue
        j = _jaccard(s.words, o.words)
        if j > score:
            best, score = o, j
    return (best, score) if score >= ALIGN_MIN_JACCARD else (None, 0.0)


def _pair_conflict(a: Sentence, b: Sentence, jaccard: float) -> str | None:
    if (a.negations > 0) != (b.negations > 0):
        return "negation"
    if a.numbers and b.numbers and not (a.numbers & b.numbers):
        return "number"
    if (a.names - b.names) and (b.names - a.names) and not (a.names & b.names):
        return "entity"
    if jaccard >= TWIN_JACCARD:
        only_a, only_b = a.words - b.words, b.words - a.words
        if 1 <= len(only_a) <= 2 and 1 <= len(only_b) <= 2:
            return "swapped term"
    return None


DENIAL_MIN_WORDS = 2  # what a denial denies must be at least a subject and a predicate


def _denies(s: Sentence, other: ParagraphClaims) -> bool:
    """``s`` denies what a clause of ``other`` asserts: the words ``s`` negates (its first
    content word and the one after the negation) stand together in a clause of ``other``
    without a negation. "Sunlight is not scattered by the air" against "sunlight ... scatters in all
    directions", even when the two clauses share too little to line up."""
    if len(s.denied) < DENIAL_MIN_WORDS:
        return False
    return any(not o.negations and s.denied <= o.words for o in other.sentences)


def paragraph_conflict(a: ParagraphClaims, b: ParagraphClaims) -> str | None:
    """Why ``a`` and ``b`` make conflicting claims (``"negation"``, ``"number"``,
    ``"entity"``, ``"swapped term"``, ``"denial"``), or ``None``."""
    for s in a.sentences:
        other, j = _best(s, b.sentences)
        if other is not None:
            reason = _pair_conflict(s, other, j)
            if reason:
                return reason
        elif _denies(s, b):
            return "denial"
    return None
