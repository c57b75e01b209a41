"""Backends the router can send completions to."""

from __future__ import annotations

from .auth import BackendAuth, BasicAuth, BearerAuth, HeaderAuth, parse_auth
from .base import LmBackend
from .mock import MockBackend
from .ollama import OllamaBackend
from .openai_compat import OpenAICompatBackend
from .swarm import SwarmBackend
from .swarm_sim import (
    LatencyDist,
    ProviderProfile,
    SimJob,
    SimStats,
    SwarmSimConfig,
    SwarmSimulator,
    sim_directory,
)

__all__ = [
    "BackendAuth",
    "BasicAuth",
    "BearerAuth",
    "HeaderAuth",
    "LatencyDist",
    "LmBackend",
    "MockBackend",
    "OllamaBackend",
    "OpenAICompatBackend",
    "ProviderProfile",
    "SimJob",
    "SimStats",
    "SwarmBackend",
    "SwarmSimConfig",
    "SwarmSimulator",
    "parse_auth",
    "sim_directory",
]
