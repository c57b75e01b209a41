"""A scripted customer for provider tests: publishes NIP-90 jobs through a real RelayPool and
collects every feedback and result addressed to it, parsed strictly by client.dvm.nip90.

    async with Customer([relay.url]) as alice:
        job = await alice.submit(JobSpec(prompt="hi", model="m"))
        result = await alice.result(job)            # JobResult (content decrypted if needed)
        statuses = alice.statuses(job)             # ["processing", "success"]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from client.dvm.nip90 import (
    KIND_FEEDBACK,
    KIND_TEXT_RESULT,
    Job,
    JobFeedback,
    JobResult,
    JobSpec,
    build_job,
    parse_feedback,
    parse_result,
)
from client.net.pool import RelayPool
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys

WAIT = 10.0


@dataclass
class Replies:
    job: Job
    feedback: list[JobFeedback] = field(default_factory=list)
    results: list[JobResult] = field(default_factory=list)
    raw: list[Event] = field(default_factory=list)
    rejected: list[tuple[Event, str]] = field(default_factory=list)


class Customer:
    def __init__(self, relays: Sequence[str], keys: Keys | None = None) -> None:
        self.keys = keys or Keys.generate()
        self.pool = RelayPool(relays, keys=self.keys, connect_timeout=3.0)
        self.jobs: dict[str, Replies] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def public_key(self) -> str:
        return self.keys.public_key

    async def __aenter__(self) -> Customer:
        await self.pool.start()
        self._sub = self.pool.subscribe(
            Filter(kinds=[KIND_TEXT_RESULT, KIND_FEEDBACK], tags={"p": [self.keys.public_key]})
        )
        await asyncio.wait_for(self._sub.wait_eose(), WAIT)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pool.close()

    async def _read(self) -> None:
        async for event in self._sub:
            replies = self.jobs.get(event.tag_value("e") or "")
            if replies is None:
                continue
            replies.raw.append(event)
            try:
                if event.kind == KIND_FEEDBACK:
                    replies.feedback.append(parse_feedback(event, replies.job, self.keys))
                else:
                    replies.results.append(parse_result(event, replies.job, self.keys))
            except JobRejected as exc:
                replies.rejected.append((event, exc.reason))
            async with self._changed:
                self._changed.notify_all()

    # --- sending -----------------------------------------------------------------------------

    def build(self, spec: JobSpec, **kw: Any) -> Job:
        return build_job(self.keys, spec, **kw)

    async def submit(self, spec: JobSpec | Job, **kw: Any) -> Job:
        job = spec if isinstance(spec, Job) else self.build(spec, **kw)
        for request in job.requests:
            self.jobs[request.id] = Replies(job)
        for request in job.requests:
            await self.pool.publish(request)
        return job

    async def publish_raw(self, event: Event) -> Job:
        """Publish a hand-made request (malformed on purpose) and collect its replies."""
        job = Job((event,))
        self.jobs[event.id] = Replies(job)
        await self.pool.publish(event)
        return job

    async def sync(self) -> None:
        """Return once every node on the relay has screened all jobs we published before: a
        job without input is refused at once, and the relay delivers in order."""
        probe = await self.publish_raw(Event.create(self.keys, 5050, "", [["t", "sync"]]))
        await self.error(probe)

    # --- waiting -----------------------------------------------------------------------------

    def replies(self, job: Job | str) -> Replies:
        return self.jobs[job if isinstance(job, str) else job.id]

    async def wait_for(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(waiter(), within)

    async def result(self, job: Job | str, within: float = WAIT) -> JobResult:
        r = self.replies(job)
        await self.wait_for(lambda: bool(r.results), within)
        return r.results[0]

    async def feedback(self, job: Job | str, status: str, within: float = WAIT) -> JobFeedback:
        r = self.replies(job)
        await self.wait_for(lambda: any(f.status == status for f in r.feedback), within)
        return next(f for f in r.feedback if f.status == status)

    async def error(self, job: Job | str, within: float = WAIT) -> JobFeedback:
        return await self.feedback(job, "error", within)

    def statuses(self, job: Job | str) -> list[str]:
        return [f.status for f in self.replies(job).feedback]
