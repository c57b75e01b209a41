"""The provider's job book under 10,000 random runs (``pytest -m fuzz``): the stateful property
test of tests/provider/test_jobs.py (requests, duplicates, payments late or never, backend
failures, reveal calls, cancellations, lease losses, takeovers, shutdowns, crash restarts, fleet
nodes dying at any point or stalling past their lease) with its invariants, at the depth of the
other fuzz targets. The default suite runs it at ~200."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.provider.test_jobs import JobBookMachine

from .profiles import DEEP


@pytest.mark.fuzz
class TestJobBookFuzz(JobBookMachine.TestCase):
    settings = settings(DEEP, stateful_step_count=40)
