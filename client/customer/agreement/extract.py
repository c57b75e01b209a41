"""Answer extraction: the claim inside a free-form answer. Pure: no I/O.

Two honest providers word the same answer differently ("Lisbon.", "The capital of Portugal is
Lisbon.", "**Lisbon**"); a liar keeps the wording and changes the claim ("… is Porto."). So
before comparing, these functions pull out what the answer *claims*: the final number, yes or
no, the chosen option letter, the JSON value, the head entity of a short fact, and the
features a paragraph's claims are checked on (numbers, negations, names). Each returns ``None``
when the text holds no such claim, so the caller can fall back or refuse to count it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["number", "yesno", "choice", "json", "fact", "paragraph"]

__all__ = [
    "Kind",
    "ParagraphClaims",
    "classify",
    "fact_claim",
    "final_number",
    "json_value",
    "option_letter",
    "paragraph_claims",
    "parse_options",
    "topic_words",
    "yes_no",
]

_MD = re.compile(r"[*_`#]+")
_WS = re.compile(r"\s+")


def _clean(text: str) -> str:
    """NFKC, Markdown emphasis dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    return _WS.sub(" ", _MD.sub("", text)).strip()


# --- numbers ---------------------------------------------------------------------------------

_NUM = r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER = re.compile(_NUM)
# Where a model states its result; the last such statement wins over working shown before it.
_FINAL_NUMBER = re.compile(
    rf"(?:final answer|answer|result|total)\s*(?:is|=|:|would be|will be)?\s*(?:about\s+)?"
    rf"\$?({_NUM})",
    re.I,
)


def _to_float(token: str) -> float | None:
    try:
        return float(token.replace(",", "").replace("−", "-"))
    except ValueError:
        return None


def final_number(text: str) -> float | None:
    """The answer's final number: the last "answer is N" / "final answer: N", else the last
    number after an "=", else the last number in the text."""
    clean = _clean(text)
    stated = _FINAL_NUMBER.findall(clean)
    if stated:
        return _to_float(stated[-1])
    if "=" in clean:
        after = _NUMBER.findall(clean.rsplit("=", 1)[1])
        if after:
            return _to_float(after[0])
    found = _NUMBER.findall(clean)
    return _to_float(found[-1]) if found else None


def numbers(text: str) -> frozenset[float]:
    out: set[float] = set()
    for token in _NUMBER.findall(_clean(text)):
        value = _to_float(token)
        if value is not None:
            out.add(value)
    return frozenset(out)


# --- yes / no --------------------------------------------------------------------------------

_STATED_YN = re.compile(r"\banswer\s*(?:is|:)\s*(yes|no)\b", re.I)
_YN = re.compile(r"\b(yes|no|yeah|nope|correct|incorrect|true|false|right|wrong)\b", re.I)
_YN_VALUE = {
    "yes": True,
    "yeah": True,
    "correct": True,
    "true": True,
    "right": True,
    "no": False,
    "nope": False,
    "incorrect": False,
    "false": False,
    "wrong": False,
}


def yes_no(text: str) -> bool | None:
    """True for yes, False for no: a stated "the answer is yes/no" wins, else the first
    yes/no word (or correct/true/false...)."""
    clean = _clean(text)
    stated: list[str] = _STATED_YN.findall(clean)
    if stated:
        return stated[-1].lower() == "yes"
    m = _YN.search(clean)
    return _YN_VALUE[m.group(1).lower()] if m else None


# --- multiple choice -------------------------------------------------------------------------

_OPTION = re.compile(r"(?:^|\s)\(?([A-H])[).:]\s+(.+?)(?=\s+\(?[A-H][).:]\s|[.?]?\s*$|\.\s)")
_STATED_LETTER = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-H])\b(?![a-z])", re.I)
_LETTER_MARK = re.compile(r"(?:^|[\s(])([A-H])(?:\)|\.(?=\s|$)|:|$|\s*[-—,])")


def parse_options(prompt: str) -> dict[str, str]:
    """``"... A) shark B) dolphin C) trout D) eel."`` -> ``{"A": "shark", ...}`` (at least two
    options in order A, B, ...; else ``{}``)."""
    found = _OPTION.findall(_clean(prompt))
    options: dict[str, str] = {}
    for letter, text in found:
        if letter == "ABCDEFGH"[len(options)]:
            options[letter] = text.strip().rstrip(".")
    return options if len(options) >= 2 else {}


def _norm_words(text: str) -> str:
    words = re.findall(r"\w+", _clean(text).casefold())
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def option_letter(text: str, options: dict[str, str] | None = None) -> str | None:
    """The chosen option: a stated "answer/option X", else a marked letter ("B)", "B.", "(B)",
    a bare "B"), else the one option whose words appear in the text."""
    clean = _clean(text)
    stated: list[str] = _STATED_LETTER.findall(clean)
    if stated:
        return stated[-1].upper()
    marks: set[str] = {m.upper() for m in _LETTER_MARK.findall(clean)}
    if options:
        marks &= set(options)
    if len(marks) == 1:
        return marks.pop()
    if options:
        low = " " + _norm_words(clean) + " "
        hits = [k for k, v in options.items() if f" {_norm_words(v)} " in low]
        if len(hits) == 1:
            return hits[0]
    return None


# --- JSON ------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```", re.S)


def _normal(value: Any) -> Any:
    # A reader takes 1 and 1.0, "Madrid" and "madrid ", "34" and 34 for the same field value.
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        f = float(value)
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    if isinstance(value, str):
        s = _WS.sub(" ", unicodedata.normalize("NFKC", value)).strip().casefold()
        number = _to_float(s) if _NUMBER.fullmatch(s) else None
        return _normal(number) if number is not None else s
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {str(k).strip().casefold(): _normal(v) for k, v in value.items()}
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(body: str) -> Any:
    return json.loads(body, parse_constant=_no_constants)


def json_value(text: str) -> str | None:
    """The answer's JSON value, canonical (sorted keys, normalized strings and numbers): the
    whole text, else a fenced block, else the first ``{...}`` or ``[...]`` span that parses."""
    candidates = [text.strip()]
    candidates += [m.group(1) for m in _FENCE.finditer(text)]
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for body in candidates:
        try:
            value = _loads(body)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict | list):
            return json.dumps(
                _normal(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
    return None


# --- short facts -----------------------------------------------------------------------------

_STOP = frozenset(
    """a an the is are was were be been it its this that these those of in on at to for by with
    from as and or but so do does did has have had i you he she we they my your answer briefly
    what which who whom whose where when why how called known one word please yes no it's that's
    also very just simply here there then than".""".split()
)
_STATED_FACT = re.compile(r"\banswer\s*(?:is|:)\s*(.+?)(?:[.!;\n]|$)", re.I)
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _stem(word: str) -> str:
    # Plurals and verb endings only: enough to make "whales" meet "whale" and "scattered"
    # meet "scatters"; not a real stemmer, and it need not be: both sides get the same cut.
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


_POSSESSIVE = re.compile(r"['’]s\b")


def _content(text: str, drop: frozenset[str]) -> list[str]:
    # "Portugal's" is "portugal", not "portugal" and "s".
    words = [_stem(w) for w in _TOKEN.findall(_POSSESSIVE.sub("", _clean(text).casefold()))]
    return [w for w in words if w not in _STOP and w not in drop]


def prompt_words(prompt: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _TOKEN.findall(_clean(prompt).casefold()))


@dataclass(frozen=True, slots=True)
class FactClaim:
    """A short answer's claim: ``claim`` the words that name its answer (names and numbers not
    taken from the question, else its content words not taken from the question), ``words``
    all its content words; ``negated`` if it denies."""

    claim: frozenset[str]
    words: frozenset[str]
    negated: bool


_INNER_NAME = re.compile(r"(?<![.!?:]\s)(?<=\s)([A-Z][\w'-]*)|\b(\d[\d,.]*)\b")


def fact_claim(text: str, prompt: str = "") -> FactClaim | None:
    """What a short answer names: a stated "the answer is X" wins; otherwise the names and
    numbers in the text that the question does not contain ("The capital of Portugal is
    Lisbon." asked "What is the capital of Portugal?" -> ``lisbon``), else its content words
    minus the question's ("The hardest natural substance is diamond." -> ``diamond``)."""
    clean = _clean(text)
    drop = prompt_words(prompt)
    stated = _STATED_FACT.findall(clean)
    span = stated[-1] if stated else clean
    words = _content(span, drop)
    if not words:
        words = _content(span, frozenset())  # the answer repeats a word of the question
    if not words:
        return None
    names = set()
    for name, number in _INNER_NAME.findall(" " + span):
        token = _stem((name or number).casefold().rstrip(".,"))
        if token and token not in _STOP and token not in drop:
            names.add(token)
    claim = frozenset(names) or frozenset(words)
    return FactClaim(
        claim=claim, words=frozenset(words) | claim, negated=bool(_NEGATION.search(span))
    )


# --- paragraphs ------------------------------------------------------------------------------

_NEGATION = re.compile(r"\b(?:not|no|never|none|nothing|neither|nor|cannot|without)\b|n't\b", re.I)
# Clauses, not just sentences: "X is not scattered; it reflects Y" makes two claims.
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_NEG_WORDS = frozenset({"not", "no", "never", "cannot", "neither", "nor", "without"})
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")


@dataclass(frozen=True, slots=True)
class Sentence:
    words: frozenset[str]  # content words (stemmed), for alignment
    negations: int
    numbers: frozenset[float]
    names: frozenset[str]  # capitalized words not at a sentence start
    # For a negated clause: its first content word and the first one after the negation
    # ("The sky is not blue because ..." -> {sky, blue}): what the clause denies.
    denied: frozenset[str] = frozenset()
    # The content words the negation attaches to: the last one before it (the head of what is
    # denied, "the Moon's phases are not ..." -> phas) and the first one after it.
    negated_heads: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ParagraphClaims:
    sentences: tuple[Sentence, ...]
    words: frozenset[str]
    negations: int
    # Each clause's words as written (case-folded, punctuation dropped), in order: what an
    # edit of a copied answer keeps verbatim.
    verbatim: tuple[tuple[str, ...], ...] = ()


# A clause opening with one of these ("It is not ...", "This process does not ...") speaks of
# what the answer is about: in an explanation, the question's subject.
_BACK_REFERENCE = frozenset({"it", "this", "they", "these", "that"})
TOPIC = "<topic>"  # in ``Sentence.negated_heads``: the negation denies the question's subject


def _denied(clause: str) -> tuple[frozenset[str], frozenset[str]]:
    """(what the first negation of ``clause`` denies, the words it attaches to)."""
    tokens = _TOKEN.findall(clause.casefold().replace("n't", " not"))
    for i, t in enumerate(tokens):
        if t in _NEG_WORDS:
            before = _content(" ".join(tokens[:i]), frozenset())
            after = _content(" ".join(tokens[i + 1 :]), frozenset())[:1]
            heads = before[-1:] + after
            if tokens[0] in _BACK_REFERENCE and len(before) <= 1:
                heads.append(TOPIC)
            return frozenset(before[:1] + after), frozenset(heads)
    return frozenset(), frozenset()


def paragraph_claims(text: str) -> ParagraphClaims:
    clean = _clean(text)
    sentences = []
    verbatim = []
    for raw in _SENTENCE.split(clean):
        if not raw.strip():
            continue
        verbatim.append(tuple(_TOKEN.findall(raw.casefold())))
        words = frozenset(_content(raw, frozenset()))
        names = frozenset(n.casefold() for n in _NAME.findall(raw))
        denied, heads = _denied(raw)
        sentences.append(
            Sentence(
                words=words,
                negations=len(_NEGATION.findall(raw)),
                numbers=numbers(raw),
                names=names,
                denied=denied,
                negated_heads=heads,
            )
        )
    all_words = frozenset().union(*(s.words for s in sentences)) if sentences else frozenset()
    return ParagraphClaims(
        sentences=tuple(sentences),
        words=all_words,
        negations=sum(s.negations for s in sentences),
        verbatim=tuple(verbatim),
    )


# Words of a request that say how to answer, not what about.
_INSTRUCTION = frozenset(
    """explain describe discuss summarize summarise tell write answer reply respond short long
    brief briefly paragraph sentence sentences word words one two three simple simply detail
    please give list works work""".split()
)


def topic_words(prompt: str) -> frozenset[str]:
    """What a request is about: the content words (stemmed) of its first sentence, less the
    words that say how to answer ("Explain why the sky is blue. Answer in one short paragraph."
    -> ``{sky, blue}``). An honest explanation does not deny these; a liar often does."""
    first = re.split(r"(?<=[.?!])\s", _clean(prompt), maxsplit=1)[0]
    return frozenset(w for w in _content(first, frozenset()) if w not in _INSTRUCTION)


# --- what kind of answer a prompt asks for ---------------------------------------------------

_YESNO_START = re.compile(
    r"^(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|am)\b", re.I
)
_NUMBER_ASK = re.compile(
    r"\b(?:how many|how much|how far|how long|how old|what is \d|calculate|compute|sum of|"
    r"product of|\d+\s*(?:[-+*/×x]|times|plus|minus|divided by)\s*\d+|final number)\b",
    re.I,
)
_JSON_ASK = re.compile(r"\bjson\b", re.I)
_SHORT_ASK = re.compile(
    r"^(?:(?:in|on|at|from|of|for|to|by)\s+)?(?:what|which|who|where|when|name)\b.{0,120}\?(?:\s*(?:answer|reply|respond)[^.]*\.)?"
    r"\s*$",
    re.I,
)
_PARAGRAPH_ASK = re.compile(
    r"\b(?:explain|describe|why|paragraph|discuss|summari[sz]e|essay|write|tell me about)\b",
    re.I,
)


def classify(prompt: str, response_format: Any = None) -> tuple[Kind, str]:
    """What shape of answer ``prompt`` asks for, and why (for the decision's note)."""
    fmt = response_format.get("type") if isinstance(response_format, dict) else response_format
    if isinstance(fmt, str) and fmt.startswith("json"):
        return "json", f"response_format {fmt}"
    clean = _clean(prompt)
    if _JSON_ASK.search(clean):
        return "json", "the prompt asks for JSON"
    if parse_options(clean):
        return "choice", "the prompt lists lettered options"
    if _PARAGRAPH_ASK.search(clean):
        return "paragraph", "the prompt asks for an explanation"
    if _NUMBER_ASK.search(clean):
        return "number", "the prompt asks for a number"
    if _YESNO_START.match(clean):
        return "yesno", "the prompt is a yes/no question"
    if _SHORT_ASK.match(clean):
        return "fact", "the prompt asks a short factual question"
    return "paragraph", "free-form prompt"
