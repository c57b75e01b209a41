"""ProviderNode in front of real HTTP backends: the fake OpenAI-compatible and Ollama servers
from tests/support/upstreams.py, alone and behind an LmRouter that fails over."""

from __future__ import annotations

import socket

from client.dvm.nip90 import JobSpec
from provider.assemble import build_backends
from router.backends import OllamaBackend, OpenAICompatBackend
from router.backends.config import OllamaBackendConfig, OpenAIBackendConfig
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory
from tests.support.upstreams import FakeOllama, FakeOpenAI


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_openai_compatible_upstream(start_node: NodeFactory, customer: Customer) -> None:
    async with FakeOpenAI(models=["qwen2.5", "phi3"]) as up:
        backend = OpenAICompatBackend(up.base_url, name="llamacpp")
        async with start_node(backend) as node:
            assert node.models == ("qwen2.5", "phi3")  # discovered from /v1/models
            job = await customer.submit(
                JobSpec(prompt="two words here", model="phi3", max_tokens=20, temperature=0.3)
            )
            result = await customer.result(job)
            wrong = await customer.submit(JobSpec(prompt="x", model="llama3"))
            err = await customer.error(wrong)
        await backend.close()
    assert result.content == "Echo: two words here"
    # The fake counts whitespace-separated words as tokens.
    assert result.event.tags_named("usage") == [["usage", "3", "4", "7"]]
    body = up.requests[-1].json
    assert body["model"] == "phi3" and body["max_tokens"] == 20 and body["temperature"] == 0.3
    assert "models: qwen2.5, phi3" in err.extra


async def test_ollama_upstream(start_node: NodeFactory, customer: Customer) -> None:
    async with FakeOllama(models=["llama3:latest"], reply="Bonjour") as up:
        backend = OllamaBackend(up.base_url)
        async with start_node(backend) as node:
            job = await customer.submit(JobSpec(prompt="hello", model="llama3"))
            result = await customer.result(job)
        await backend.close()
    assert node.models == ("llama3:latest",)
    assert result.content == "Bonjour" and result.event.tag_value("model") == "llama3:latest"
    assert up.completion_calls == 1


async def test_upstream_errors_become_error_feedback(
    start_node: NodeFactory, customer: Customer
) -> None:
    async with FakeOpenAI(models=["m"]) as up:
        backend = OpenAICompatBackend(up.base_url, models=["m"])
        async with start_node(backend) as node:
            up.fail_next(1, status=400, message="context length exceeded")
            job = await customer.submit(JobSpec(prompt="x", model="m"))
            err = await customer.error(job)
            ok = await customer.submit(JobSpec(prompt="y", model="m"))
            await customer.result(ok)
        await backend.close()
    assert "backend failed" in err.extra and "context length exceeded" in err.extra
    assert up.base_url.split("//")[1] not in err.extra
    assert node.stats.failed["backend"] == 1 and node.stats.completed == 1


async def test_dead_upstream_is_reported_and_the_node_survives(
    start_node: NodeFactory, customer: Customer
) -> None:
    backend = OpenAICompatBackend(f"http://127.0.0.1:{closed_port()}", models=["m"])
    async with start_node(backend) as node:
        job = await customer.submit(JobSpec(prompt="x", model="m"))
        err = await customer.error(job)
        again = await customer.submit(JobSpec(prompt="y", model="m"))
        await customer.error(again)
    await backend.close()
    assert "backend failed" in err.extra and "another provider" in err.extra
    assert node.stats.failed["backend"] == 2


async def test_router_fails_over_from_dead_openai_to_ollama(
    start_node: NodeFactory, customer: Customer
) -> None:
    async with FakeOllama(models=["m"], reply="from ollama") as up:
        backend = build_backends(
            [
                OpenAIBackendConfig(url=f"http://127.0.0.1:{closed_port()}", models=["m"]),
                OllamaBackendConfig(url=up.base_url, models=["m"]),
            ]
        )
        async with start_node(backend) as node:
            job = await customer.submit(JobSpec(prompt="x", model="m"))
            result = await customer.result(job)
        await backend.close()
    assert result.content == "from ollama"
    assert node.models == ("m",)
