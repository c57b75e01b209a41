"""A node whose backend does not answer at start says so, announces nothing, and keeps asking:
a provider must not advertise a model it cannot serve (issue #24: `swarm provider run` with
Ollama not running printed "serving llama3.2:1b" and waited for jobs it could not do)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

import provider.node as node_module
from client.cli import main
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from router.backends import OllamaBackend
from tests.provider.test_node_lifecycle import Announcements
from tests.support.nodes import NodeFactory, mock_backend


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CountedChecks:
    """Wraps a backend's health_check; ``reached(n)`` waits for the n-th call to finish."""

    def __init__(self, backend: Any) -> None:
        self.calls = 0
        self._inner = backend.health_check
        self._changed = asyncio.Condition()
        backend.health_check = self

    async def __call__(self) -> Any:
        try:
            return await self._inner()
        finally:
            async with self._changed:
                self.calls += 1
                self._changed.notify_all()

    async def reached(self, n: int) -> None:
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(lambda: self.calls >= n)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_module, "BACKEND_RETRY_S", 0.01)
    monkeypatch.setattr(node_module, "BACKEND_RETRY_MAX_S", 0.02)


async def test_ollama_not_running_warns_and_announces_nothing(
    start_node: NodeFactory, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    backend = OllamaBackend(f"http://127.0.0.1:{closed_port()}", models=["llama3.2:1b"])
    checks = CountedChecks(backend)
    keys = Keys.generate()
    with caplog.at_level(logging.WARNING, logger="provider"):
        async with start_node(backend, keys=keys, models=["llama3.2:1b"]) as node:
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(
                "does not answer" in m and "not announcing llama3.2:1b" in m for m in warnings
            ), warnings
            await checks.reached(4)  # the start-up check and three retries in the background
            assert not node.backend_ready.is_set()
            announced = relay.stored_events(Filter(kinds=[31990], authors=[keys.public_key]))
            assert announced == []
    await backend.close()


async def test_the_node_announces_once_the_backend_answers(
    start_node: NodeFactory, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    backend = mock_backend("m1")
    backend.healthy = False
    checks = CountedChecks(backend)
    keys = Keys.generate()
    async with (
        Announcements(relay, keys.public_key) as watch,
        start_node(backend, keys=keys) as node,
    ):
        await checks.reached(2)
        assert relay.stored_events(Filter(kinds=[31990], authors=[keys.public_key])) == []
        with caplog.at_level(logging.INFO, logger="provider"):
            backend.healthy = True
            first = await watch.next()
        assert node.backend_ready.is_set()
        assert json.loads(first.content)["nostrSwarm"]["models"] == ["m1"]
        assert any("the backend answers now: serving m1" in r.getMessage() for r in caplog.records)


async def test_a_healthy_backend_is_announced_at_once_without_retries(
    start_node: NodeFactory, relay: Relay
) -> None:
    backend = mock_backend("m1")
    checks = CountedChecks(backend)
    keys = Keys.generate()
    async with (
        Announcements(relay, keys.public_key) as watch,
        start_node(backend, keys=keys) as node,
    ):
        await watch.next()
        assert node.backend_ready.is_set() and checks.calls == 1


async def test_provider_run_says_the_backend_does_not_answer(tmp_path: Path, relay: Relay) -> None:
    path = tmp_path / "provider.toml"
    url = f"http://127.0.0.1:{closed_port()}"
    init = ["provider", "init", "--config", str(path), "--backend", "ollama", "--url", url]
    assert main([*init, "--model", "llama3.2:1b", "--relay", relay.url]) == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "provider",
        "run",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "started, but its backend does not answer" in line and "serving" not in line
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "does not answer: not announcing llama3.2:1b" in err.decode()


async def test_a_model_ollama_has_not_pulled_is_not_offered(
    start_node: NodeFactory, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.upstreams import FakeOllama

    async with FakeOllama(models=["llama3:latest"]) as ollama:
        backend = OllamaBackend(ollama.base_url, models=["llama3", "qwen2.5:0.5b"])
        keys = Keys.generate()
        with caplog.at_level(logging.WARNING, logger="provider"):
            async with (
                Announcements(relay, keys.public_key) as watch,
                start_node(backend, keys=keys, models=["llama3", "qwen2.5:0.5b"]) as node,
            ):
                first = await watch.next()
                assert json.loads(first.content)["nostrSwarm"]["models"] == ["llama3"]
                assert node.models == ("llama3",)
        assert any(
            "does not have model qwen2.5:0.5b" in r.getMessage() and "ollama pull" in r.getMessage()
            for r in caplog.records
        )
        await backend.close()


async def test_none_of_the_configured_models_pulled_announces_nothing(
    start_node: NodeFactory, relay: Relay
) -> None:
    from tests.support.upstreams import FakeOllama

    async with FakeOllama(models=["llama3:latest"]) as ollama:
        backend = OllamaBackend(ollama.base_url, models=["qwen2.5:0.5b"])
        checks = CountedChecks(backend)
        keys = Keys.generate()
        async with start_node(backend, keys=keys, models=["qwen2.5:0.5b"]) as node:
            await checks.reached(3)
            assert not node.backend_ready.is_set()
            announced = relay.stored_events(Filter(kinds=[31990], authors=[keys.public_key]))
            assert announced == []
        await backend.close()
