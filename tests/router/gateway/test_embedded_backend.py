"""config.yaml takes the embedded model too (the backend schema provider.toml uses): the
gateway's router answers from it in process."""

from __future__ import annotations

import pytest

from router.gateway.build import build_router
from router.gateway.config import parse_config

pytestmark = pytest.mark.local_model


async def test_an_embedded_backend_answers_through_the_gateways_router() -> None:
    cfg = parse_config({"backends": [{"type": "embedded"}]}, env={})
    router = build_router(cfg)
    try:
        [name] = router.backends
        assert name == "embedded"
        reply = await router.complete("smollm2-135m-instruct", "Say hello.", 8)
    finally:
        await router.close()
    assert reply.text.strip() and reply.backend == "embedded"
    assert 1 <= reply.usage.completion_tokens <= 8
