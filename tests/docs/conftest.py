"""The doc tests' world: a relay, a wallet service, provider nodes and fake model servers (see
tests/docs/world.py), fresh for each doc file, so no page sees another page's jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .world import running_world


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_world(tmp_path_factory.mktemp("doc-world")) as env:
        yield env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
