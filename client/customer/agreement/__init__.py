"""Agreement on free-form answers: claim extraction, claim checks, semantic and automatic
comparators, a language model as judge (``judge``; pure but for the judge it calls), and the
sentence-embedding shell (``embedding``). See docs/quorum.md."""

from client.customer.agreement.comparators import (
    AnswerComparator,
    AutoComparator,
    SemanticComparator,
)
from client.customer.agreement.extract import classify
from client.customer.agreement.judge import JudgeComparator

__all__ = [
    "AnswerComparator",
    "AutoComparator",
    "JudgeComparator",
    "SemanticComparator",
    "classify",
]
