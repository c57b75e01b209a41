"""A deterministic backend for tests and demos: :class:`MockBackend`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Self

from ..errors import BackendError
from ..request import LmRequest
from ..types import LmResponse, LmUsage, Prompt, StreamChunk, estimate_tokens, prompt_text
from .base import LmBackend

_DEFAULT_MODEL = "mock-model"

ErrorFactory = Callable[[], BaseException]


class MockBackend(LmBackend):
    """Answers every request with a fixed text, configured fluently::

        MockBackend().with_name("m").with_model("test-model").with_response("Hi").with_usage(10, 5)

    ``{prompt}`` in the response is replaced by the prompt text. Until ``with_model`` is called the
    backend serves ``"mock-model"``; ``with_any_model()`` makes it accept every model name.

    For tests: ``latency_ms`` (a real delay per call), ``with_failure(rate)`` / ``fail_next(n)``
    (raise a retryable ``BackendError`` or the given error), ``with_gate(event)`` (hold each call
    until the event is set), ``with_stream_failure(after_chunks)``; and the counters ``calls``,
    ``in_flight``, ``max_in_flight``, ``last_prompt``, ``last_request`` (the whole
    :class:`~router.request.LmRequest`). Sampling options, swarm terms and passthrough fields
    change nothing in the answer.
    """

    def __init__(self, name: str = "mock", *, seed: int | None = 0) -> None:
        self.name = name
        self._models: list[str] = [_DEFAULT_MODEL]
        self._explicit_models = False
        self._any_model = False
        self.response = "Mock response"
        self._templated = False
        self.usage: tuple[int, int] | None = None
        self.cost_usd: float | None = None
        self.cost_sats: int | None = None
        self.latency_ms = 0.0
        self.expected_latency_ms = 0.0
        self.failure_rate = 0.0
        self.failures_left = 0
        self.error: ErrorFactory | None = None
        self.gate: asyncio.Event | None = None
        self.stream_fail_after: int | None = None
        self.healthy = True
        self.finish_reason = "stop"
        self._rng = random.Random(seed)
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_prompt: Prompt | None = None
        self.last_request: LmRequest | None = None
        self._arrivals: asyncio.Condition | None = None

    # --- fluent configuration ----------------------------------------------------------------

    def with_name(self, name: str) -> Self:
        self.name = name
        return self

    def with_model(self, model: str) -> Self:
        """Serve ``model`` (the first call replaces the default ``"mock-model"``)."""
        if not self._explicit_models:
            self._models = []
            self._explicit_models = True
        if model not in self._models:
            self._models.append(model)
        return self

    def with_models(self, *models: str) -> Self:
        for m in models:
            self.with_model(m)
        return self

    def with_any_model(self) -> Self:
        self._any_model = True
        return self

    def with_response(self, text: str) -> Self:
        self.response = text
        self._templated = "{prompt}" in text
        return self

    def with_usage(self, prompt_tokens: int, completion_tokens: int) -> Self:
        self.usage = (prompt_tokens, completion_tokens)
        return self

    def with_cost(self, usd: float | None = None, sats: int | None = None) -> Self:
        """Report this cost on every response (otherwise the router prices it from its options)."""
        self.cost_usd = usd
        self.cost_sats = sats
        return self

    def max_cost_msats(self, max_tokens: int) -> int:
        """The sats this backend charges per response, as msats (for budgets to reserve)."""
        return (self.cost_sats or 0) * 1000

    def with_latency(self, ms: float) -> Self:
        self.latency_ms = ms
        self.expected_latency_ms = ms
        return self

    def with_failure(self, rate: float = 1.0, error: ErrorFactory | None = None) -> Self:
        """Fail this fraction of calls (seeded, so repeatable)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("failure rate must be within [0, 1]")
        self.failure_rate = rate
        self.error = error
        return self

    def fail_next(self, n: int = 1, error: ErrorFactory | None = None) -> Self:
        """Fail the next ``n`` calls, then answer normally."""
        self.failures_left = n
        if error is not None:
            self.error = error
        return self

    def with_gate(self, gate: asyncio.Event | None) -> Self:
        self.gate = gate
        return self

    def with_stream_failure(self, after_chunks: int | None) -> Self:
        """Break streamed answers after this many chunks (``None``: never)."""
        self.stream_fail_after = after_chunks
        return self

    # --- LmBackend ---------------------------------------------------------------------------

    def supported_models(self) -> list[str]:
        return list(self._models)

    def supports_model(self, model: str) -> bool:
        return self._any_model or model in self._models

    def _fail(self) -> BaseException:
        if self.error is not None:
            return self.error()
        return BackendError(f"{self.name}: simulated failure", backend=self.name, retryable=True)

    def _should_fail(self) -> bool:
        if self.failures_left > 0:
            self.failures_left -= 1
            return True
        return self.failure_rate > 0.0 and self._rng.random() < self.failure_rate

    def _text(self, prompt: Prompt) -> str:
        if self._templated:
            return self.response.replace("{prompt}", prompt_text(prompt))
        return self.response

    def _usage(self, prompt: Prompt, text: str) -> LmUsage:
        if self.usage is not None:
            p, c = self.usage
        else:
            p, c = estimate_tokens(prompt_text(prompt)), estimate_tokens(text)
        return LmUsage(p, c, p + c, self.cost_usd, self.cost_sats)

    async def send(self, request: LmRequest) -> LmResponse:
        self.calls += 1
        prompt = request.prompt
        self.last_prompt = prompt
        self.last_request = request
        if self.gate is not None or self.latency_ms > 0:
            await self._wait()
        if self.failures_left or self.failure_rate:
            if self._should_fail():
                raise self._fail()
        text = self._text(prompt)
        return LmResponse(
            text,
            self._usage(prompt, text),
            request.model,
            self.finish_reason,
            self.latency_ms,
            self.name,
        )

    async def wait_for_in_flight(self, n: int = 1) -> None:
        """Wait until ``n`` calls are held inside this backend (by the gate or latency)."""
        if self._arrivals is None:
            self._arrivals = asyncio.Condition()
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: self.in_flight >= n)

    async def _wait(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self._arrivals is not None:
            async with self._arrivals:
                self._arrivals.notify_all()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.latency_ms > 0:
                await asyncio.sleep(self.latency_ms / 1000)
        finally:
            self.in_flight -= 1

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        prompt = request.prompt
        self.last_prompt = prompt
        self.last_request = request
        if self.gate is not None or self.latency_ms > 0:
            await self._wait()
        if self._should_fail():
            raise self._fail()
        text = self._text(prompt)
        words = text.split(" ")
        for i, w in enumerate(words):
            if self.stream_fail_after is not None and i >= self.stream_fail_after:
                raise BackendError(f"{self.name}: stream broke", backend=self.name, retryable=True)
            yield StreamChunk(w if i == 0 else " " + w)
        yield StreamChunk("", self._usage(prompt, text), self.finish_reason)

    async def health_check(self) -> bool:
        return self.healthy
