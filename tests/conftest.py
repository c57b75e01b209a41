"""Fixtures shared by the whole suite. Everything starts on 127.0.0.1 with port 0."""

from __future__ import annotations
