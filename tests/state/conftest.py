"""PostgreSQL and Redis for the state tests (see servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import Postgres, Redis, start_postgres, start_redis


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pg = start_postgres()
    yield pg
    pg.stop()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres.fresh_database()


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    r = start_redis()
    yield r
    r.kill()
