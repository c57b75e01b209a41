"""A PostgreSQL host that stops answering (a dropped route, a frozen machine), played by a TCP
proxy in front of the test's PostgreSQL that can go silent: it still accepts connections but
passes nothing on. The store's callers are held at most ``RECONNECT_WAIT_S`` once, then fail at
once while a connection is made in the background; when the host answers again, the store
works again by itself."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from client.storage import StateUnavailable
from router.state_db import PostgresStore
from tests.support.servers import Postgres


class SilenceableProxy:
    """127.0.0.1:port -> PostgreSQL. ``silent``: new connections are accepted and left
    unanswered, and open ones are cut (as a host that vanished: nothing comes back)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.silent = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(conn)
            if self.silent:
                continue  # held open, never answered
            up = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._open.append(up)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def go_silent(self) -> None:
        self.silent = True
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()

    def close(self) -> None:
        self._server.close()
        self.go_silent()


@pytest.fixture
def proxy(postgres: Postgres) -> Iterator[SilenceableProxy]:
    p = SilenceableProxy(postgres.port)
    yield p
    p.close()


def _within(seconds: float, call: Any) -> BaseException | None:
    """What ``call()`` raised (None if nothing), failing the test if it takes longer than
    ``seconds``: the bound is the behaviour under test, the store's own timeout being longer."""
    done: Future[BaseException | None] = Future()

    def run() -> None:
        try:
            call()
            done.set_result(None)
        except BaseException as exc:  # the outcome is the test's to judge
            done.set_result(exc)

    threading.Thread(target=run, daemon=True).start()
    return done.result(timeout=seconds)


def test_a_silent_host_holds_a_caller_once_then_fails_fast_and_recovers(
    proxy: SilenceableProxy, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    # connect_timeout 3: the background attempt outlives RECONNECT_WAIT_S (1 s) by far.
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}?connect_timeout=3"
    store = PostgresStore(url, lock="t")
    try:
        assert store.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        proxy.go_silent()
        # The cut connection is found before a statement goes out on it; connecting again
        # holds this call at most RECONNECT_WAIT_S (1 s), not connect_timeout (3 s).
        outcome = _within(2.5, lambda: store.execute("SELECT 1"))
        assert isinstance(outcome, StateUnavailable) and "not answering" in str(outcome)
        # While that attempt goes on, calls fail at once, for as long as it lasts.
        for _ in range(3):
            outcome = _within(0.5, lambda: store.execute("SELECT 1"))
            assert isinstance(outcome, StateUnavailable) and "not answering" in str(outcome)
        # The host answers again; once the silent attempt has given up, the next call
        # connects, and the store works as before.
        proxy.silent = False
        attempt = store._attempt
        if attempt is not None:
            attempt.exception(timeout=10)  # connect_timeout ends it
        assert _within(5, lambda: store.execute("SELECT 2 AS two")) is None
        assert store.execute("SELECT 2 AS two").fetchone() == {"two": 2}
    finally:
        store.close()
