"""Backends the router can send completions to."""

from __future__ import annotations

from .auth import BackendAuth, BasicAuth, BearerAuth, HeaderAuth, parse_auth
from .base import LmBackend
from .mock import MockBackend
from .ollama import OllamaBackend
from .openai_compat import OpenAICompatBackend

__all__ = [
    "BackendAuth",
    "BasicAuth",
    "BearerAuth",
    "HeaderAuth",
    "LmBackend",
    "MockBackend",
    "OllamaBackend",
    "OpenAICompatBackend",
    "parse_auth",
]
