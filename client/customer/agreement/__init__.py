"""Agreement on free-form answers: claim extraction, claim checks, semantic and automatic
comparators (pure), and the sentence-embedding shell (``embedding``). See docs/quorum.md."""

from client.customer.agreement.comparators import (
    AnswerComparator,
    AutoComparator,
    SemanticComparator,
)
from client.customer.agreement.extract import classify

__all__ = ["AnswerComparator", "AutoComparator", "SemanticComparator", "classify"]
