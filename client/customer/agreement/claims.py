"""Claim checks between two paragraphs. Pure: no I/O.

Closeness is not agreement: "the capital of Portugal is Lisbon" and "... is Porto" are near
twins to a sentence-embedding model, and so is a paragraph with one claim negated. These checks
align each sentence of one answer with its most similar sentence in the other (by shared
content words) and call a *conflict* when an aligned pair differs in a claim: its polarity (one
negates), its numbers, its names, or one swapped key term in an otherwise identical sentence.
Two checks read the whole answer instead: a negation of what the question is about that only
one answer makes (:func:`paragraph_conflict`'s ``topic``), and an edited copy
(:func:`edited_copy`). Other sentences with no counterpart (an honest answer that says more, or
less) never conflict.
"""

from __future__ import annotations

from difflib import SequenceMatcher

from client.customer.agreement.extract import TOPIC, ParagraphClaims, Sentence

__all__ = ["edited_copy", "paragraph_conflict"]

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


def _topic_denials(p: ParagraphClaims, topic: frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for s in p.sentences:
        out |= topic if TOPIC in s.negated_heads else s.negated_heads & topic
    return frozenset(out)


EDIT_MIN_WORDS = 6  # a clause shared after a difference must be this long to count
EDIT_MAX_OVERLAP = 0.5  # replaced clauses sharing more words than this are a rewording


def _inserted(a: tuple[tuple[str, ...], ...], b: tuple[tuple[str, ...], ...]) -> bool:
    """Clauses ``a`` stand where ``b`` has others (or none) that say something else: not the
    same clause with a word or two changed, as greedy decoding on another quantization may
    give before it falls back in step."""
    wa = frozenset(w for c in a for w in c)
    wb = frozenset(w for c in b for w in c)
    if not wa or not wb:
        return any(len(c) >= EDIT_MIN_WORDS for c in a + b)
    return len(wa & wb) / len(wa | wb) < EDIT_MAX_OVERLAP


def edited_copy(a: ParagraphClaims, b: ParagraphClaims) -> bool:
    """``a`` and ``b`` are one text with a clause put in or replaced, then the same text
    again: they part on a clause that says something else and later share a whole clause
    word for word. Two samplings (another seed, engine or model) may start alike and part,
    but once parted they do not meet again; an answer copied and changed (a false claim
    slipped in) does. Identical texts are not an edit."""
    matcher = SequenceMatcher(None, a.verbatim, b.verbatim, autojunk=False)
    parted = False
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            parted = parted or _inserted(a.verbatim[i1:i2], b.verbatim[j1:j2])
        elif parted and any(len(c) >= EDIT_MIN_WORDS for c in a.verbatim[i1:i2]):
            return True
    return False


def paragraph_conflict(
    a: ParagraphClaims, b: ParagraphClaims, topic: frozenset[str] = frozenset()
) -> str | None:
    """Why ``a`` and ``b`` make conflicting claims (``"negation"``, ``"number"``,
    ``"entity"``, ``"swapped term"``, ``"denial"``, ``"topic denied"``, ``"edited copy"``), or
    ``None``.

    ``topic`` holds what the question is about (:func:`~client.customer.agreement.extract.
    topic_words`): a negation attached to one of these words in ``a`` ("The sky is *not*
    blue ...", asked why the sky is blue; or "It is not ..." of the subject) that ``b`` does
    not make likewise denies the question's subject, however the rest of ``a`` is worded."""
    if topic and _topic_denials(a, topic) - _topic_denials(b, topic):
        return "topic denied"
    if edited_copy(a, b):
        return "edited copy"
    for s in a.sentences:
        other, j = _best(s, b.sentences)
        if other is not None:
            reason = _pair_conflict(s, other, j)
            if reason:
                return reason
        elif _denies(s, b):
            return "denial"
    return None
