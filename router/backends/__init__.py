"""Backends the router can send completions to."""

from __future__ import annotations

from .base import LmBackend
from .mock import MockBackend

__all__ = ["LmBackend", "MockBackend"]
