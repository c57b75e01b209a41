"""Server-sent events exactly as OpenAI streams completions.

Chat (fields abbreviated)::

    data: {"object":"chat.completion.chunk",..,"choices":[{"delta":{"role":"assistant",..}}]}
    data: {..,"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}
    data: {..,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}
    data: {..,"choices":[],"usage":{...}}          (only with stream_options.include_usage)
    data: [DONE]

With ``include_usage`` every chunk before the last carries ``"usage":null``. Text completions
stream ``text_completion`` objects with ``choices[0].text``. An error after the stream started is
sent as ``data: {"error": {...}}`` and the stream ends without ``[DONE]``.

:class:`ChunkEncoder` serializes the constant part of a chunk once per stream, so each chunk costs
one ``json.dumps`` of its text.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..types import StreamChunk
from .errors import ApiError
from .protocol import new_id, swarm_verdict

DONE = b"data: [DONE]\n\n"
_dumps = json.dumps

#: Response headers for an event stream (proxies must not buffer it).
STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def event(payload: str) -> bytes:
    """One SSE event carrying ``payload`` (already JSON) as its data."""
    return b"data: " + payload.encode() + b"\n\n"


class ChunkEncoder:
    """Builds the events of one streamed completion."""

    __slots__ = ("_head", "_tail", "chat", "include_usage")

    def __init__(self, *, chat: bool, model: str, include_usage: bool) -> None:
        self.chat = chat
        self.include_usage = include_usage
        ident = new_id("chatcmpl" if chat else "cmpl")
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._head = (
            f'{{"id":{_dumps(ident)},"object":"{obj}","created":{int(time.time())},'
            f'"model":{_dumps(model)},"system_fingerprint":null,"choices":'
        )
        self._tail = ',"usage":null}' if include_usage else "}"

    def _choice(self, text: str | None, finish: str | None, role: bool = False) -> bytes:
        fin = "null" if finish is None else _dumps(finish)
        if self.chat:
            if role:
                delta = '{"role":"assistant","content":""}'
            elif text is None:
                delta = "{}"
            else:
                delta = '{"content":' + _dumps(text) + "}"
            body = f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{fin}}}]'
        else:
            t = _dumps(text or "")
            body = f'[{{"index":0,"text":{t},"logprobs":null,"finish_reason":{fin}}}]'
        return event(self._head + body + self._tail)

    def start(self) -> bytes:
        """The first chunk: the assistant role (chat); nothing for text completions."""
        return self._choice(None, None, role=True) if self.chat else b""

    def text(self, text: str) -> bytes:
        return self._choice(text, None)

    def rich(self, chunk: StreamChunk) -> bytes:
        """A chunk with more than text (tool call deltas, reasoning, logprobs, the swarm's
        verdict as ``delta.swarm``): the upstream's delta fields and logprobs relayed unchanged,
        with the text if there is some. (The finish reason comes last in a chunk of its own, as
        for every stream.)"""
        logprobs = _dumps(chunk.logprobs)
        if self.chat:
            delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
            if chunk.delta:
                delta.update(chunk.delta)
            if chunk.swarm is not None:
                delta["swarm"] = swarm_verdict(chunk.swarm)
            body = (
                f'[{{"index":0,"delta":{_dumps(delta)},"logprobs":{logprobs},'
                '"finish_reason":null}]'
            )
        else:
            t = _dumps(chunk.text)
            body = f'[{{"index":0,"text":{t},"logprobs":{logprobs},"finish_reason":null}}]'
        return event(self._head + body + self._tail)

    def finish(self, reason: str | None) -> bytes:
        """The chunk with the finish reason and no content."""
        return self._choice(None, reason or "stop")

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The last chunk, when usage was asked for: no choices, the usage object."""
        return event(self._head + "[]" + ',"usage":' + _dumps(usage) + "}")


def error_event(err: ApiError) -> bytes:
    """An error inside a stream that has already started (OpenAI's clients raise on it)."""
    return event(_dumps(err.body()))
