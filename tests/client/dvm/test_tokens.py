"""One token estimate: every layer that counts before a model has uses the same function."""

from __future__ import annotations

from client.customer import swarm
from client.dvm.tokens import estimate_tokens, tokens_for_chars
from provider import intake
from router import types
from router.backends import openai_wire


def test_four_characters_per_token_rounded_up() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert tokens_for_chars(-3) == 0
    assert all(tokens_for_chars(n) == estimate_tokens("é" * n) for n in range(50))


def test_every_user_imports_the_one_estimate() -> None:
    assert swarm.estimate_tokens is estimate_tokens  # the customer's bid and selection
    assert intake.estimate_tokens is estimate_tokens  # the provider's quote
    assert types.estimate_tokens is estimate_tokens  # the node's charge, backends' usage
    assert openai_wire.estimate_tokens is estimate_tokens
    assert openai_wire.tokens_for_chars is tokens_for_chars
