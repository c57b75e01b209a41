"""Providers for the copy-resistance tests: real ProviderNodes for the honest, scripted attackers
over a real RelayPool.

- :func:`honest_node`: a ProviderNode answering with a MockBackend (optionally gated, so it is
  "slightly delayed" until a test says so).
- :class:`Copycat`: runs no model. It watches the relay for other providers' results to each job
  and republishes the first one under its own key as fast as it can. ``mode``:
  ``resign`` (copy content and tags, re-signed), ``late_commit`` (commit-reveal: after seeing a
  reveal, publish a commitment to the copied text and reveal it), ``early_commit`` (commit to
  nothing as soon as the job appears, then reveal the copied text with a made-up salt).
- :class:`HonestCommitter`: a scripted honest provider for commit-reveal runs whose order must
  be fixed: it commits at once and reveals when called *and* its ``gate`` is open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Literal

from client.dvm.nip90 import JobRequest, build_result, parse_request
from client.dvm.sealing import (
    KIND_REVEAL_CALL,
    build_commitment,
    commit,
    new_salt,
    parse_reveal_call,
)
from client.net.pool import RelayPool, Subscription
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from provider.node import ProviderNode
from router.backends import MockBackend
from router.types import LmUsage

ANSWER = "Paris"
USAGE = LmUsage(5, 1, 6)


def backend(reply: str = ANSWER, gate: asyncio.Event | None = None) -> MockBackend:
    b = MockBackend("mock").with_model("m1").with_response(reply).with_usage(5, 1)
    return b.with_gate(gate) if gate is not None else b


@contextlib.asynccontextmanager
async def honest_node(
    url: str, *, gate: asyncio.Event | None = None, reply: str = ANSWER, **kw: Any
) -> AsyncIterator[ProviderNode]:
    kw.setdefault("announce", False)
    kw.setdefault("connect_timeout", 3.0)
    async with ProviderNode(Keys.generate(), [url], backend(reply, gate), **kw) as node:
        yield node


class _Scripted:
    """A key, a pool and one subscription served by :meth:`_on_event` until closed."""

    filters: list[Filter]

    def __init__(self, url: str) -> None:
        self.keys = Keys.generate()
        self.url = url
        self.pool: RelayPool | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pubkey(self) -> str:
        return self.keys.public_key

    async def __aenter__(self) -> Any:
        self.pool = RelayPool([self.url], keys=self.keys)
        await self.pool.start()
        sub = self.pool.subscribe(self.filters)
        await sub.wait_eose()
        self._task = asyncio.create_task(self._serve(sub))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        assert self.pool is not None
        await self.pool.close()

    async def _serve(self, sub: Subscription) -> None:
        async for event in sub:
            await self._on_event(event)

    async def _on_event(self, event: Event) -> None:
        raise NotImplementedError

    async def publish(self, event: Event) -> None:
        assert self.pool is not None
        await self.pool.publish(event)


CopyMode = Literal["resign", "late_commit", "early_commit"]


class Copycat(_Scripted):
    """Republishes the first result another provider sends for a job, under its own key."""

    def __init__(self, url: str, mode: CopyMode = "resign") -> None:
        super().__init__(url)
        self.mode = mode
        self.filters = [Filter(kinds=[5050]), Filter(kinds=[6050])]
        self.requests: dict[str, JobRequest] = {}
        self.copied: dict[str, Event] = {}  # job id -> the result it copied
        self.acted = asyncio.Event()  # set once its copy is on the relay

    async def _on_event(self, event: Event) -> None:
        if event.kind == 5050:
            try:
                req = parse_request(event, keys=self.keys, verify=False)
            except JobRejected:
                return  # sealed for someone else: nothing to read
            self.requests[req.id] = req
            if self.mode == "early_commit":
                # Commit to nothing in time, hoping to fill the answer in later.
                await self.publish(build_commitment(self.keys, req, new_salt()))
            return
        job_id = event.tag_value("e") or ""
        req = self.requests.get(job_id)
        if event.pubkey == self.pubkey or req is None or job_id in self.copied:
            return
        self.copied[job_id] = event
        text = event.content
        tags = [t for t in event.tags if t[0] not in ("amount", "salt")]
        if self.mode == "late_commit":
            salt = new_salt()
            await self.publish(
                build_commitment(self.keys, req, commit(req.id, self.pubkey, text, salt))
            )
            tags.append(["salt", salt])
        elif self.mode == "early_commit":
            tags.append(["salt", new_salt()])
        await self.publish(Event.create(self.keys, event.kind, text, tags))
        self.acted.set()


class HonestCommitter(_Scripted):
    """Does the work, commits at once, reveals when the customer's call names it and ``gate``
    is open."""

    def __init__(self, url: str, answer: str = ANSWER, *, gate: asyncio.Event) -> None:
        super().__init__(url)
        self.answer = answer
        self.gate = gate
        self.filters = [Filter(kinds=[5050]), Filter(kinds=[KIND_REVEAL_CALL])]
        self.held: dict[str, tuple[JobRequest, str]] = {}
        self.revealed = asyncio.Event()

    async def _on_event(self, event: Event) -> None:
        if event.kind == 5050:
            req = parse_request(event, keys=self.keys, verify=False)
            salt = new_salt()
            self.held[req.id] = (req, salt)
            value = commit(req.id, self.pubkey, self.answer, salt)
            await self.publish(build_commitment(self.keys, req, value))
            return
        call = parse_reveal_call(event)
        for request_id in call.request_ids:
            held = self.held.pop(request_id, None)
            if held is None or not call.names(self.pubkey):
                continue
            req, salt = held
            asyncio.get_running_loop().create_task(self._reveal(req, salt))

    async def _reveal(self, req: JobRequest, salt: str) -> None:
        await self.gate.wait()
        await self.publish(
            build_result(
                self.keys,
                req,
                self.answer,
                model="m1",
                usage=USAGE,
                salt=salt,
                seal=req.params.get("sealed"),
            )
        )
        self.revealed.set()
