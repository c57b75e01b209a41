"""Prices for completions, in millisats: per 1,000 prompt tokens, per 1,000 completion tokens, and
a minimum per job, with optional per-model prices. Pure: no I/O.

A provider quotes before it works, from the prompt's estimated size and the request's
``max_tokens`` (the most it could cost); it charges after, from the tokens actually used, never
more than the quote. The customer's ``bid`` is compared with the quote. Both the quote and a
charge without reported usage count tokens with :func:`client.dvm.tokens.estimate_tokens`, the
one estimate the customer's bid uses too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from client.dvm.nip89 import PriceList


class Price(BaseModel):
    """One price list: millisats per 1,000 tokens of each side, and the least a job costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    msats_per_1k_prompt: int = Field(0, ge=0)
    msats_per_1k_completion: int = Field(0, ge=0)
    min_msats: int = Field(0, ge=0)

    @property
    def is_free(self) -> bool:
        return self.msats_per_1k_prompt == self.msats_per_1k_completion == self.min_msats == 0

    @property
    def announced(self) -> PriceList:
        """This price as the NIP-89 announcement states it (and customers compute quotes)."""
        return PriceList(self.msats_per_1k_prompt, self.msats_per_1k_completion, self.min_msats)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Millisats for these token counts, rounded up; never below the minimum (the formula
        customers use on the announced price, so quotes agree)."""
        return self.announced.cost(prompt_tokens, completion_tokens)


class Pricing(BaseModel):
    """The node's prices: the default price list (same fields as :class:`Price`) plus ``models``
    overriding it per model name. ``Pricing()`` is free."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    msats_per_1k_prompt: int = Field(0, ge=0)
    msats_per_1k_completion: int = Field(0, ge=0)
    min_msats: int = Field(0, ge=0)
    models: dict[str, Price] = Field(default_factory=dict)

    @property
    def default(self) -> Price:
        return Price(
            msats_per_1k_prompt=self.msats_per_1k_prompt,
            msats_per_1k_completion=self.msats_per_1k_completion,
            min_msats=self.min_msats,
        )

    def for_model(self, model: str) -> Price:
        return self.models.get(model) or self.default

    @property
    def is_free(self) -> bool:
        return self.default.is_free and all(p.is_free for p in self.models.values())

    def quote(self, model: str, prompt_tokens: int, max_tokens: int) -> int:
        """The most this job can cost: the prompt plus ``max_tokens`` of completion."""
        return self.for_model(model).cost(prompt_tokens, max_tokens)

    def charge(self, model: str, prompt_tokens: int, completion_tokens: int, quote: int) -> int:
        """What to bill after the work: the tokens used, capped at ``quote`` (a tokenizer that
        counts the prompt higher than our estimate must not make the customer pay more)."""
        return min(quote, self.for_model(model).cost(prompt_tokens, completion_tokens))


def bid_refusal(bid_msats: int | None, quote_msats: int, model: str, max_tokens: int) -> str | None:
    """The polite refusal text when ``bid_msats`` is below the quote, or None when it is enough
    (or absent: no bid means the customer accepts the quoted price)."""
    if bid_msats is None or bid_msats >= quote_msats:
        return None
    return (
        f"bid {bid_msats} msats is below this node's price of {quote_msats} msats for "
        f"{model} with max_tokens {max_tokens}; bid at least {quote_msats} msats "
        f"or ask for fewer tokens"
    )


def sats(msats: int) -> int:
    """Millisats to whole sats for display (rounded down)."""
    return msats // 1000
