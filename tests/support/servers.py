"""Private PostgreSQL and Redis servers for tests: started from Debian's packages in a
temporary folder on 127.0.0.1, on free ports, stopped at the end. Outside CI a missing server
skips the tests that need it (with the reason); in CI (``CI=true``) it fails them, since
.ci/run installs both."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed, but .ci/run installs it")
    pytest.skip(f"{what} is not installed (apt-get install postgresql redis-server)")


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the package's postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _wait_closed(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)  # another process going down: nothing to await


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which hold nothing, do not
    count: a container's init may never reap them)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _wait_group_gone(pgid: int) -> None:
    """A killed postmaster's backends attach its shared memory until they exit; a server
    started before that refuses to run ("pre-existing shared memory block is still in use")."""
    deadline = time.monotonic() + 30
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)  # other processes exiting: nothing to await


def _wait_port(port: int, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # another process's start-up: nothing to await
    raise RuntimeError(f"{what} did not listen on {port}")


@dataclass
class Postgres:
    port: int
    data: Path
    bindir: Path
    proc: subprocess.Popen[bytes] | None = None
    counter: int = 0

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def fresh_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self.counter += 1
        name = f"t{os.getpid()}_{self.counter}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            _as_postgres(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.data),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(self.data.parent / "postgres.log", "ab"),
            start_new_session=True,  # its own group: runuser's child goes down with it
        )
        _wait_port(self.port, "postgres", self.proc)
        import psycopg

        deadline = time.monotonic() + 30
        while True:  # after a crash it listens before recovery lets anyone in
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # another process's recovery: nothing to await

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Down at once, as a crash: every process of the server."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(30)
            _wait_group_gone(self.proc.pid)
            _wait_closed(self.port)
            if sig == signal.SIGKILL:
                # A killed postmaster may linger as a zombie nobody reaps in a container, and
                # its pid file would then block the restart: it is gone, so is the file.
                for stale in [self.data / "postmaster.pid", *self.data.glob(".s.PGSQL.*")]:
                    with contextlib.suppress(FileNotFoundError):
                        stale.unlink()
        self.proc = None


def start_postgres() -> Postgres:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        _missing("PostgreSQL")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="swarm-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pg = Postgres(free_port(), data, bindir)
    pg.start()
    return pg


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, "redis-server", self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None


def start_redis() -> Redis:
    if shutil.which("redis-server") is None:
        _missing("Redis")
    r = Redis(free_port())
    r.start()
    return r


# --- fixtures (registered for the whole suite by tests/conftest.py) ---


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
