"""The token estimate that quotes and bids are made from: about four characters per token (the
usual figure for English with BPE tokenizers), rounded up. Pure.

One rule for everyone who counts before a model has: the customer's bid and provider selection,
the provider's quote and its charge when the backend reports no usage, the router's usage for
backends that report none. A quote and the charge it caps must count the same way, or a customer
pays for the difference between two estimates.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def tokens_for_chars(chars: int) -> int:
    """The estimated tokens of a text ``chars`` characters long."""
    return (max(0, chars) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_tokens(text: str) -> int:
    """The estimated tokens of ``text``."""
    return tokens_for_chars(len(text))
