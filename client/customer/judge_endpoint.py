"""A judge model on an OpenAI-compatible endpoint (``swarm ask --judge-url URL --judge-model M``):
the I/O shell behind :class:`client.customer.agreement.judge.JudgeComparator`.

One blocking ``POST {url}/chat/completions`` per pair (the standard library's HTTP client: the
customer core needs no other), at temperature 0 with a few tokens: the reply's first word, yes
or no, or the first token's log-probabilities when the server returns them
(:func:`~client.customer.agreement.judge.judge_verdict`). The swarm client calls a judge
comparator off its event loop; called on a thread that runs an event loop, the judge refuses
(raises) rather than stall it, and the comparator decides that pair without it.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from client.customer.agreement.judge import JUDGE_TIMEOUT_S, judge_messages, judge_verdict

__all__ = ["EndpointJudge", "JudgeUnavailable", "chat_completions_url"]

MAX_REPLY_BYTES = 1 << 20


class JudgeUnavailable(RuntimeError):
    """The judge could not give a verdict (refused, unreachable, or an unusable reply)."""


def chat_completions_url(url: str) -> str:
    """``http://host:8080/v1`` (or ``.../v1/chat/completions``) -> the chat completions URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the judge URL must be http:// or https://, not {url!r}")
    base = url.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def _top_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content or not isinstance(content[0], dict):
        return None
    top = content[0].get("top_logprobs") or []
    found = {
        t["token"]: float(t["logprob"])
        for t in top
        if isinstance(t, dict) and isinstance(t.get("token"), str) and "logprob" in t
    }
    return found or None


class EndpointJudge:
    """``judge(question, a, b) -> P(same claims)`` from ``model`` at ``url`` (an
    OpenAI-compatible server's base, e.g. ``http://127.0.0.1:8080/v1``). ``api_key``: sent as a
    bearer token. Each call is cut off after ``timeout_s``."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = JUDGE_TIMEOUT_S,
        max_tokens: int = 4,
    ) -> None:
        if not model:
            raise ValueError("the judge needs a model name")
        if not timeout_s > 0:
            raise ValueError("the judge's timeout must be > 0")
        self.url = chat_completions_url(url)
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"EndpointJudge({self.url!r}, {self.model!r})"

    def __call__(self, question: str, a: str, b: str) -> float:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise JudgeUnavailable("a judge call would block this thread's event loop")
        body = {
            "model": self.model,
            "messages": judge_messages(question, a, b),
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise JudgeUnavailable(f"the judge answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise JudgeUnavailable(f"the judge is unreachable: {exc}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise JudgeUnavailable("the judge's reply is too large")
        try:
            choice = json.loads(raw)["choices"][0]
            text = choice["message"]["content"] or ""
            return judge_verdict(text, _top_logprobs(choice))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeUnavailable(f"the judge's reply has no verdict: {exc}") from None
