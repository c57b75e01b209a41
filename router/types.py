"""The values every backend returns: :class:`LmResponse`, :class:`LmUsage`, chat messages.

These are plain slotted dataclasses rather than pydantic models because one is built per completion
on the hot path; the HTTP gateway converts them into its own API models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from .strategy import RoutingDecision

# The one token estimate (client/dvm/tokens.py), for backends that report no usage.
from client.dvm.tokens import estimate_tokens as estimate_tokens

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict):
    """One chat message, in the OpenAI shape: ``{"role": "user", "content": "Hi"}``.

    ``content`` is usually a string; the gateway also passes on OpenAI's other shapes unchanged
    (a list of content parts, ``None`` beside an assistant's ``tool_calls``), and any other
    field (``tool_calls``, ``tool_call_id``, ...). :func:`message_text` reads the text of any.
    """

    role: str
    content: Any
    name: NotRequired[str]
    tool_calls: NotRequired[list[Any]]
    tool_call_id: NotRequired[str]


class TextPrompt(str):
    """A prompt for a text completion (``/v1/completions``) rather than a chat turn. Backends
    with a native text endpoint send it there; to every other backend it is a plain string."""

    __slots__ = ()


class EmbeddingInput(str):
    """What ``/v1/embeddings`` asks to embed, routed through ``complete`` like a prompt so that
    it gets the router's failover, limits and usage accounting. The string is the text (for
    token estimates); ``input`` is the request's input as sent (a string, a list of strings or
    of token arrays). Only backends with ``embeds = True`` may be given one."""

    input: Any

    def __new__(cls, text: str, value: Any) -> EmbeddingInput:
        self = super().__new__(cls, text)
        self.input = value
        return self


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


@dataclass(frozen=True, slots=True)
class SwarmOutcome:
    """What a quorum-verified answer says beyond its text: who agreed and who did not (public
    keys, hex), the NIP-90 job id, what was paid (msats) and what may have been paid (msats
    whose outcome the wallet has not told yet: they stay counted until resolved), and the
    comparator's note and per-provider agreement scores."""

    agreeing: tuple[str, ...]
    dissenting: tuple[str, ...] = ()
    job_id: str | None = None
    msats_paid: int = 0
    msats_unknown: int = 0
    comparator_note: str | None = None
    scores: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class LmResponse:
    """One completion. ``backend`` is the name of the backend that produced it (set by the router
    when the backend did not); ``decision`` is the router's routing decision for it (``None``
    from a backend called directly); ``swarm`` is set on quorum-verified answers."""

    text: str
    usage: LmUsage = field(default_factory=LmUsage)
    model: str = ""
    finish_reason: str = "stop"
    latency_ms: float = 0.0
    backend: str = ""
    #: What the upstream answered beyond the text, returned to the caller unchanged: for chat,
    #: the message's other fields (``tool_calls``, ``refusal``, ``content: None``, ...); for
    #: embeddings, ``data``.
    extra: dict[str, Any] | None = None
    #: The choice's ``logprobs`` as the upstream sent them.
    logprobs: Any = None
    swarm: SwarmOutcome | None = None
    decision: RoutingDecision | None = None


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed completion. The last chunk may carry ``usage``/``finish_reason``
    with empty ``text``; a swarm stream's last chunk carries the quorum's verdict (``swarm``)."""

    text: str = ""
    usage: LmUsage | None = None
    finish_reason: str | None = None
    #: The upstream's delta fields beyond the text (``tool_calls``, ``reasoning_content``, ...),
    #: relayed unchanged.
    delta: dict[str, Any] | None = None
    logprobs: Any = None
    swarm: SwarmOutcome | None = None


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
            content = m.get("content")
            if not isinstance(content, (str, list)) and content is not None:
                raise TypeError(f"message {i} must have string (or parts) 'content'")
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
    return "\n".join(message_text(m) for m in prompt)


def message_text(message: Message) -> str:
    """A message's text: its content string, or the text of its ``text`` parts."""
    content = message.get("content")
    if type(content) is str:
        return content
    if isinstance(content, list):
        return "".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""
