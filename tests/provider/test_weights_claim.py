"""A provider running the embedded model announces which weights it runs (the GGUF file's
sha256 and the engine), so customers can flag nodes that claim the same weights and disagree."""

from __future__ import annotations

import hashlib

import pytest

from client.nostr.keys import Keys
from provider.announce import build_announcement
from provider.node import ProviderNode
from router.backends.llamacpp import LlamaCppBackend, default_model_path

pytestmark = pytest.mark.local_model


def test_the_announcement_carries_the_gguf_sha256() -> None:
    backend = LlamaCppBackend()
    want = hashlib.sha256(default_model_path().read_bytes()).hexdigest()
    [(model, digest, engine)] = backend.weights()
    assert (digest, engine) == (f"sha256:{want}", "llama.cpp")
    node = ProviderNode(Keys.generate(), ["ws://127.0.0.1:1"], backend, announce=False)
    node.models = (model,)
    offer = node._offer()
    assert offer.weights == ((model, f"sha256:{want}", "llama.cpp"),)
    event = build_announcement(Keys.generate(), offer, created_at=1_700_000_000)
    assert ["model", model, f"sha256:{want}", "llama.cpp"] in [list(t) for t in event.tags]
