"""How much each fuzz target runs: ``QUICK`` in the default suite, ``DEEP`` (10,000 cases) under
``pytest -m fuzz``. A case is one seed for :class:`tests.fuzz.mutate.Mutator`."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_CASES = 10_000
QUICK = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
DEEP = settings(
    max_examples=FUZZ_CASES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
seeds = st.integers(min_value=0, max_value=2**63)
