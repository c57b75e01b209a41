"""The embedded default (SmolLM2-135M in process): a provider that needs no server at all."""

from __future__ import annotations

import pytest

from client.dvm.nip90 import JobSpec
from router.backends.config import EmbeddedBackendConfig
from router.backends.factory import build_backend
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory


@pytest.mark.local_model
async def test_embedded_model_answers_a_job(start_node: NodeFactory, customer: Customer) -> None:
    backend, _ = build_backend(EmbeddedBackendConfig())
    async with start_node(backend) as node:
        assert node.models == ("smollm2-135m-instruct",)
        job = await customer.submit(JobSpec(prompt="Say hello.", max_tokens=8))
        result = await customer.result(job, within=60)
    await backend.close()
    usage = result.event.tags_named("usage")[0]
    assert result.content.strip()
    assert 1 <= int(usage[2]) <= 8
