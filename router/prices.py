"""Prices of well-known hosted models, USD per 1,000 tokens (input, output), as their vendors
published them in 2025. Used for a model whose backend names no price of its own; any price in
the config (per model, per backend) wins. Names match exactly, or with a dated or versioned
suffix (``gpt-4o-2024-08-06`` is priced as ``gpt-4o``)."""

from __future__ import annotations

import re

PRICES_PER_1K_USD: dict[str, tuple[float, float]] = {
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-3.5-turbo": (0.0005, 0.0015),
    "o1": (0.015, 0.06),
    "o3": (0.002, 0.008),
    "o3-mini": (0.0011, 0.0044),
    "o4-mini": (0.0011, 0.0044),
    "text-embedding-3-small": (0.00002, 0.0),
    "text-embedding-3-large": (0.00013, 0.0),
    "claude-3-5-sonnet": (0.003, 0.015),
    "claude-3-7-sonnet": (0.003, 0.015),
    "claude-sonnet-4": (0.003, 0.015),
    "claude-3-5-haiku": (0.0008, 0.004),
    "claude-3-opus": (0.015, 0.075),
    "claude-opus-4": (0.015, 0.075),
    "gemini-1.5-pro": (0.00125, 0.005),
    "gemini-1.5-flash": (0.000075, 0.0003),
    "gemini-2.0-flash": (0.0001, 0.0004),
    "mistral-large": (0.002, 0.006),
    "mistral-small": (0.0002, 0.0006),
}

_SUFFIX = re.compile(r"^-(\d|latest$)")


def table_price(model: str) -> tuple[float, float] | None:
    """The table's (input, output) price for ``model``, or None. A vendor prefix such as
    ``openai/`` is ignored."""
    name = model.rsplit("/", 1)[-1].lower()
    exact = PRICES_PER_1K_USD.get(name)
    if exact is not None:
        return exact
    best = None
    for known, price in PRICES_PER_1K_USD.items():
        if name.startswith(known) and _SUFFIX.match(name[len(known) :]):
            if best is None or len(known) > len(best[0]):
                best = (known, price)
    return best[1] if best else None
