"""Usage and cost accounting: what the router's successful calls consumed, by model and backend."""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import LmUsage


@dataclass(slots=True)
class UsageStats:
    """Totals for one model, one backend, or everything."""

    call_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    cost_sats: int = 0

    def add(self, u: LmUsage) -> None:
        self.call_count += 1
        self.prompt_tokens += u.prompt_tokens
        self.completion_tokens += u.completion_tokens
        self.total_tokens += u.total_tokens
        if u.cost_usd is not None:
            self.cost_usd += u.cost_usd
        if u.cost_sats is not None:
            self.cost_sats += u.cost_sats

    def merge(self, other: UsageStats) -> None:
        self.call_count += other.call_count
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cost_usd += other.cost_usd
        self.cost_sats += other.cost_sats


#: Names matching the report's fields.
ModelUsage = UsageStats
BackendUsage = UsageStats


@dataclass(slots=True)
class UsageReport:
    """A snapshot: ``total_*`` over every call, ``by_model[m]`` and ``by_backend[b]`` per key."""

    total_calls: int = 0
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    total_tokens: int = 0
    total_cost_usd: float = 0.0
    total_cost_sats: int = 0
    by_model: dict[str, UsageStats] = field(default_factory=dict)
    by_backend: dict[str, UsageStats] = field(default_factory=dict)


#: Distinct (model, backend) pairs counted one by one; past it, new models count as "other"
#: (a catch-all backend would otherwise let callers grow this table with made-up names).
MAX_PAIRS = 2048
OTHER = "other"


class UsageTracker:
    """Counts per (model, backend) pair on the hot path; the report aggregates on demand."""

    __slots__ = ("_pairs", "max_pairs")

    def __init__(self, max_pairs: int = MAX_PAIRS) -> None:
        self._pairs: dict[tuple[str, str], UsageStats] = {}
        self.max_pairs = max_pairs

    def record(self, model: str, backend: str, usage: LmUsage) -> None:
        key = (model, backend)
        stats = self._pairs.get(key)
        if stats is None:
            if len(self._pairs) >= self.max_pairs:
                key = (OTHER, backend)
                stats = self._pairs.get(key)
            if stats is None:
                stats = self._pairs[key] = UsageStats()
        stats.add(usage)

    def report(self) -> UsageReport:
        rep = UsageReport()
        for (model, backend), s in list(self._pairs.items()):
            rep.by_model.setdefault(model, UsageStats()).merge(s)
            rep.by_backend.setdefault(backend, UsageStats()).merge(s)
            rep.total_calls += s.call_count
            rep.total_prompt_tokens += s.prompt_tokens
            rep.total_completion_tokens += s.completion_tokens
            rep.total_tokens += s.total_tokens
            rep.total_cost_usd += s.cost_usd
            rep.total_cost_sats += s.cost_sats
        return rep

    def reset(self) -> None:
        self._pairs = {}
