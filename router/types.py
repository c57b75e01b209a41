"""The values every backend returns: :class:`LmResponse`, :class:`LmUsage`, chat messages.

These are plain slotted dataclasses rather than pydantic models because one is built per completion
on the hot path; the HTTP gateway converts them into its own API models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict):
    """One chat message, in the OpenAI shape: ``{"role": "user", "content": "Hi"}``."""

    role: str
    content: str
    name: NotRequired[str]


#: What ``complete``/``stream`` accept as their second argument: a plain prompt or chat messages.
Prompt = str | Sequence[Message]


@dataclass(slots=True)
class LmUsage:
    """Tokens used by one completion and what it cost (``None`` when unknown)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    cost_sats: int | None = None

    @classmethod
    def of(
        cls,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cost_usd: float | None = None,
        cost_sats: int | None = None,
    ) -> LmUsage:
        """Usage with ``total_tokens`` filled in as the sum."""
        return cls(
            prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, cost_usd, cost_sats
        )


@dataclass(slots=True)
class LmResponse:
    """One completion. ``backend`` is the name of the backend that produced it (set by the router
    when the backend did not). ``meta`` holds backend-specific details, e.g. the swarm's
    ``agreeing``/``dissenting`` provider keys and ``job_id``."""

    text: str
    usage: LmUsage = field(default_factory=LmUsage)
    model: str = ""
    finish_reason: str = "stop"
    latency_ms: float = 0.0
    backend: str = ""
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed completion. The last chunk may carry ``usage``/``finish_reason``
    with empty ``text``."""

    text: str = ""
    usage: LmUsage | None = None
    finish_reason: str | None = None


def validate_prompt(prompt: object) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``prompt`` is a string or a list of messages."""
    if isinstance(prompt, str):
        return
    if isinstance(prompt, (list, tuple)):
        if not prompt:
            raise ValueError("messages must not be empty")
        for i, m in enumerate(prompt):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise TypeError(f"message {i} must be a dict with a string 'role'")
            if not isinstance(m.get("content"), str):
                raise TypeError(f"message {i} must have string 'content'")
        return
    raise TypeError(f"prompt must be a str or a list of messages, not {type(prompt).__name__}")


def to_messages(prompt: Prompt) -> list[Message]:
    """A prompt as chat messages (a plain string becomes one user message)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def prompt_text(prompt: Prompt) -> str:
    """A prompt as one string: the text itself, or the messages' contents joined by newlines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def estimate_tokens(text: str) -> int:
    """A rough token count for backends that report none (about 4 characters per token)."""
    return (len(text) + 3) // 4
