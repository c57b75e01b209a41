"""The real sentence-embedding model behind `semantic` (the `semantic` extra): it runs offline,
and it shows why closeness alone is not agreement."""

from __future__ import annotations

import math
import os

import pytest

from client.customer.agreement.embedding import INSTALL_HINT, MiniLmEmbedder, embedding_available
from client.customer.quorum import comparator_by_name

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not embedding_available(), reason=f"no embedding model: {INSTALL_HINT}"),
]


@pytest.fixture(scope="module")
def embed() -> MiniLmEmbedder:
    return MiniLmEmbedder()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_unit_length_deterministic_and_offline(embed: MiniLmEmbedder) -> None:
    a = list(embed("The capital of Portugal is Lisbon."))
    assert len(a) == 384 and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4)
    fresh = MiniLmEmbedder()  # a second session computes the same vector
    assert list(fresh("The capital of Portugal is Lisbon.")) == pytest.approx(a, abs=1e-6)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_near_twin_wrong_claim_is_close_but_rejected(embed: MiniLmEmbedder) -> None:
    honest = "The capital of Portugal is Lisbon, a city on the Atlantic coast."
    paraphrase = "Lisbon is Portugal's capital, on the Atlantic coast."
    wrong = "The capital of Portugal is Porto, a city on the Atlantic coast."
    # The model alone: the wrong claim is closer than the honest paraphrase.
    assert cosine(list(embed(honest)), list(embed(wrong))) > 0.8
    semantic = comparator_by_name("semantic", embed=embed)
    h, p, w = (semantic.canonical(t) for t in (honest, paraphrase, wrong))
    assert semantic.same(h, p)
    assert not semantic.same(h, w)
