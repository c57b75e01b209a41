"""More than 5050: the text kinds deployed DVMs serve (5000 extraction, 5001 summarization,
5002 translation), asked with `SwarmClient.complete(kind=...)` and served by our node from its
model through a prompt template, with quorum and payment as for 5050; announced as `k` tags."""

from __future__ import annotations

import contextlib
import json

import pytest

from client.customer.swarm import SwarmClient
from client.nostr.errors import QuorumNotReached
from client.nostr.keys import Keys
from provider.kinds import prompt_for
from relay_mock import Relay
from tests.provider.test_node_lifecycle import Announcements
from tests.support.nodes import NodeFactory, mock_backend


async def test_summarization_and_translation_reach_a_quorum(
    start_node: NodeFactory, relay: Relay
) -> None:
    kinds = [5050, 5001, 5002]
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(start_node(mock_backend(), kinds=kinds))
            for _ in range(2)
        ]
        targets = [n.keys.public_key for n in nodes]
        async with SwarmClient(Keys.generate(), [relay.url]) as swarm:
            summary = await swarm.complete(
                "Long text about Paris.", kind=5001, quorum=2, targets=targets, timeout=10
            )
            assert summary.reached and summary.job.kind == 5001
            assert {r.event.kind for r in summary.results} == {6001}
            assert summary.text is not None
            assert summary.text.startswith("Echo: Summarize the following text")
            german = await swarm.complete(
                "Good morning.",
                kind=5002,
                quorum=2,
                targets=targets,
                timeout=10,
                params={"language": "German"},
            )
            assert german.text is not None and "into German" in german.text
            # a kind the nodes do not serve gets no answer
            with pytest.raises(QuorumNotReached):
                await swarm.complete("x", kind=5000, quorum=2, targets=targets, timeout=1)


async def test_the_kinds_served_are_announced(start_node: NodeFactory, relay: Relay) -> None:
    keys = Keys.generate()
    async with (
        Announcements(relay, keys.public_key) as watch,
        start_node(mock_backend(), keys=keys, kinds=[5050, 5001]),
    ):
        event = await watch.next()
    assert [t[1] for t in event.tags if t[0] == "k"] == ["5050", "5001"]
    assert json.loads(event.content)


def test_templates_and_bad_kinds() -> None:
    assert prompt_for(5050, "hi", {}) == "hi"
    assert "into English" in prompt_for(5002, "hola", {})
    assert prompt_for(5000, "doc", {}).endswith("doc")
    from provider.kinds import check_kinds

    with pytest.raises(ValueError, match="5999"):
        check_kinds([5999])


async def test_swarm_ask_kind(start_node: NodeFactory, relay: Relay) -> None:
    import asyncio
    import os
    import sys
    from pathlib import Path

    async with start_node(mock_backend(), kinds=[5001]) as node:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "swarm"),
            "ask",
            "Some long text.",
            "--relay",
            relay.url,
            "--kind",
            "5001",
            "--quorum",
            "1",
            "--target",
            node.keys.public_key,
            "--json",
            "--timeout",
            "10",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "SWARM_NWC"},
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["text"].startswith("Echo: Summarize")
