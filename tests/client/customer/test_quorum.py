"""The pure quorum engine: grouping, early exit, one vote per provider, comparators."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from client.customer.quorum import (
    Quorum,
    Vote,
    canonical_json,
    comparator_by_name,
    custom,
    exact,
    lexical_similarity,
    normalize_text,
    normalized,
    numeric,
    similarity,
)

A, B, C, D, E = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)


def test_two_of_three_honest_reaches_on_second_vote() -> None:
    q = Quorum(2, 3)
    d1 = q.add(Vote(A, "Paris"))
    assert not d1.reached and d1.text is None
    d2 = q.add(Vote(B, "Paris"))
    assert d2.reached and d2.text == "Paris"
    assert d2.agreeing == (A, B) and d2.dissenting == ()


def test_lying_minority_is_dissenting() -> None:
    q = Quorum(2, 3)
    q.add(Vote(A, "Paris"))
    q.add(Vote(B, "Lyon"))
    d = q.add(Vote(C, "Paris"))
    assert d.reached and d.text == "Paris"
    assert d.agreeing == (A, C)
    assert d.dissenting == (B,)
    assert [v.provider for v in d.votes] == [A, B, C]


def test_second_vote_from_same_provider_is_rejected_and_counted() -> None:
    q = Quorum(2, 3)
    q.add(Vote(A, "Paris"))
    d = q.add(Vote(A, "Paris"))
    assert not d.reached
    assert d.rejected == 1
    assert len(d.votes) == 1
    assert q.has_voted(A)


def test_decision_is_final_once_reached() -> None:
    q = Quorum(2)
    q.add(Vote(A, "x"))
    q.add(Vote(B, "x"))
    d = q.add(Vote(C, "y"))
    assert d.text == "x" and d.agreeing == (A, B)
    assert d.dissenting == ()  # a late vote neither agrees nor dissents
    assert d.late == 1 and len(d.votes) == 3


def test_not_reached_reports_leading_group_and_exhaustion() -> None:
    q = Quorum(3, 4)
    q.add(Vote(A, "x"))
    q.add(Vote(B, "y"))
    d = q.add(Vote(C, "x"))
    assert not d.reached and not d.exhausted
    assert d.agreeing == (A, C) and d.dissenting == (B,) and d.leading == 2
    d = q.abstain(D)
    assert d.exhausted  # 2 agree, nobody left to vote
    assert d.text is None


def test_exhausted_when_every_provider_disagrees() -> None:
    q = Quorum(2, 3)
    q.add(Vote(A, "x"))
    q.add(Vote(B, "y"))
    d = q.add(Vote(C, "z"))
    assert d.exhausted and not d.reached
    assert len(d.groups) == 3


def test_abstain_after_vote_is_ignored() -> None:
    q = Quorum(2, 2)
    q.add(Vote(A, "x"))
    d = q.abstain(A)
    assert not d.exhausted


def test_bad_k_and_n() -> None:
    with pytest.raises(ValueError):
        Quorum(0)
    with pytest.raises(ValueError):
        Quorum(3, 2)


def test_k_of_one() -> None:
    d = Quorum(1).add(Vote(A, "only"))
    assert d.reached and d.text == "only" and d.agreeing == (A,)


def test_protection_and_metadata_are_carried() -> None:
    q = Quorum(1)
    d = q.add(Vote(A, "t", event_id="f" * 64, received_at=1.5, protection="sealed"))
    v = d.vote_of(A)
    assert v is not None and v.protection == "sealed" and v.event_id == "f" * 64
    assert d.vote_of(B) is None


# --- comparators -------------------------------------------------------------------------


def test_normalize_text() -> None:
    assert normalize_text("  «Paris»  ") == "paris"
    assert normalize_text("The\tcapital \n is   PARIS.") == "the capital is paris"
    assert normalize_text("ﬁne") == "fine"  # NFKC ligature
    assert normalize_text("U.S.A.") == "u.s.a"  # inner punctuation kept


def test_normalized_comparator_groups_variants() -> None:
    q = Quorum(3, comparator=normalized())
    q.add(Vote(A, "Paris."))
    q.add(Vote(B, "  paris"))
    d = q.add(Vote(C, "PARIS!"))
    assert d.reached and d.text == "Paris."


def test_exact_comparator_is_strict() -> None:
    q = Quorum(2, comparator=exact())
    q.add(Vote(A, "Paris"))
    assert not q.add(Vote(B, "Paris.")).reached


def test_numeric_with_tolerance() -> None:
    q = Quorum(2, comparator=numeric(abs_tol=0.01))
    q.add(Vote(A, "3.14159"))
    q.add(Vote(B, "I think 2.5"))
    d = q.add(Vote(C, "The answer is 3.14."))
    assert d.reached and d.agreeing == (A, C) and d.dissenting == (B,)


def test_numeric_rejects_ambiguous_and_missing_numbers() -> None:
    cmp = numeric()
    assert cmp.canonical("1 or 2") is None
    assert cmp.canonical("no number") is None
    assert cmp.canonical("1,234.5") == 1234.5
    assert cmp.canonical("−3") == -3.0
    q = Quorum(2, comparator=cmp)
    q.add(Vote(A, "none"))
    assert not q.add(Vote(B, "none")).reached  # unparsable answers never agree


def test_numeric_relative_tolerance() -> None:
    cmp = numeric(abs_tol=0, rel_tol=0.01)
    assert cmp.same(cmp.canonical("1000"), cmp.canonical("1005"))
    assert not cmp.same(cmp.canonical("1000"), cmp.canonical("1100"))
    with pytest.raises(ValueError):
        numeric(abs_tol=-1)


def test_canonical_json() -> None:
    cmp = canonical_json()
    assert cmp.canonical('{"b": 1, "a": [1.0, 2]}') == cmp.canonical('{"a":[1,2],"b":1}')
    assert cmp.canonical('```json\n{"a": 1}\n```') == cmp.canonical('{"a":1}')
    assert cmp.canonical("not json") is None
    assert cmp.canonical("NaN") is None
    q = Quorum(2, comparator=cmp)
    q.add(Vote(A, '{"x": 1}'))
    q.add(Vote(B, '{"x": 2}'))
    d = q.add(Vote(C, '{ "x" : 1.0 }'))
    assert d.reached and d.agreeing == (A, C)


def test_lexical_similarity_measure() -> None:
    assert lexical_similarity("the cat sat", "The cat sat.") == pytest.approx(1.0)
    assert lexical_similarity("the cat sat on the mat", "a dog ran in the park") < 0.3
    assert lexical_similarity("", "") == 1.0
    assert lexical_similarity("", "x") == 0.0


def test_similarity_comparator_threshold() -> None:
    q = Quorum(2, comparator=similarity(0.7))
    q.add(Vote(A, "The capital of France is Paris."))
    q.add(Vote(B, "Bananas are yellow fruit."))
    d = q.add(Vote(C, "The capital of France is Paris, of course."))
    assert d.reached and d.agreeing == (A, C) and d.dissenting == (B,)
    with pytest.raises(ValueError):
        similarity(1.5)


def test_similarity_with_embedding_hook() -> None:
    calls: list[str] = []

    def embed(text: str) -> list[float]:
        calls.append(text)
        return [1.0, 0.0] if "yes" in text else [0.0, 1.0]

    q = Quorum(2, comparator=similarity(0.9, embed=embed))
    q.add(Vote(A, "yes indeed"))
    q.add(Vote(B, "no"))
    d = q.add(Vote(C, "oh yes"))
    assert d.reached and d.agreeing == (A, C)
    assert calls == ["yes indeed", "no", "oh yes"]  # each answer embedded once


def test_failing_user_comparator_does_not_break_engine() -> None:
    def boom(a: str, b: str) -> bool:
        raise RuntimeError("model down")

    q = Quorum(2, comparator=custom(boom))
    q.add(Vote(A, "x"))
    d = q.add(Vote(B, "x"))
    assert not d.reached and len(d.groups) == 2


def test_custom_comparator() -> None:
    q = Quorum(2, comparator=custom(lambda a, b: a[0] == b[0], name="first-letter"))
    q.add(Vote(A, "apple"))
    d = q.add(Vote(B, "avocado"))
    assert d.reached and d.comparator == "first-letter"


def test_comparator_by_name() -> None:
    assert comparator_by_name("normalized").name == "normalized"
    assert comparator_by_name("json").name == "json"
    num = comparator_by_name("numeric", tolerance=0.5)
    assert num.same(num.canonical("1"), num.canonical("1.4"))
    sim = comparator_by_name("similarity", tolerance=0.5)
    assert sim.name == "similarity"
    with pytest.raises(ValueError):
        comparator_by_name("nope")


def test_anchor_rule_for_tolerant_comparators() -> None:
    # Each vote joins the earliest group whose first vote it agrees with.
    q = Quorum(3, comparator=numeric(abs_tol=1.0))
    q.add(Vote(A, "10"))
    q.add(Vote(B, "11"))
    d = q.add(Vote(C, "9"))
    assert d.reached and d.agreeing == (A, B, C)
    q2 = Quorum(2, comparator=numeric(abs_tol=1.0))
    q2.add(Vote(A, "10"))
    q2.add(Vote(B, "12"))
    d2 = q2.add(Vote(C, "11.5"))
    assert d2.reached and d2.agreeing == (B, C)  # 11.5 is 1.5 from 10: B's group
    assert d2.dissenting == (A,)


def test_a_comparator_that_groups_by_every_member() -> None:
    """Closeness is not transitive: 12.4 and 10 are each within 1.5 of 11, not of each other.
    Grouped by the anchor (11), both join its group; grouped by every member, 10 must agree
    with 12.4 too, so it starts a group of its own and 12.4 never counts with it."""

    @dataclass(frozen=True)
    class Near:
        grouping: str
        name: str = "near"
        hashable: bool = False

        def canonical(self, text: str) -> float:
            return float(text)

        def same(self, a: float, b: float) -> bool:
            return abs(a - b) <= 1.5

    anchor = Quorum(3, comparator=Near("anchor"))
    every = Quorum(3, comparator=Near("all"))
    for q in (anchor, every):
        for voter, text in ((A, "11"), (B, "12.4"), (C, "10"), (D, "10.5")):
            d = q.add(Vote(voter, text))
    assert anchor.decision().agreeing == (A, B, C)
    assert not every.decision().reached and every.decision().groups == ((A, B), (C, D))
    d = every.add(Vote(E, "10.2"))
    assert d.reached and d.agreeing == (C, D, E) and d.dissenting == (A, B)
    with pytest.raises(ValueError, match="grouping"):
        Quorum(2, comparator=Near("some"))


def test_many_votes_hashable_grouping() -> None:
    q = Quorum(50, comparator=normalized())
    for i in range(49):
        q.add(Vote(f"{i:064x}", "same"))
        q.add(Vote(f"{i + 1000:064x}", f"other {i}"))
    d = q.add(Vote(f"{9999:064x}", "SAME"))
    assert d.reached and len(d.agreeing) == 50 and len(d.dissenting) == 49
