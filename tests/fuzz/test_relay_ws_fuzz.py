"""relay_mock over a real websocket under random frames: the same frames as the pure core target,
through the server layer (framing, text vs binary, the per-connection loop, write coalescing).

The relay runs in its own thread and event loop for the whole module; each case sends 1-3 frames
on a long-lived connection, then a probe (a COUNT with a fresh id) and reads up to the probe's
answer. Every reply parses as a relay message, the connection survives every frame (the frames
here are all valid UTF-8 and far below the hard size limit), and the relay answers the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from websockets.sync.client import ClientConnection, connect

from relay_mock import Relay

from .mutate import HEX64, Mutator
from .profiles import DEEP, QUICK, seeds
from .test_relay_core_fuzz import check_reply

WAIT = 10.0


class RelayThread:
    """A relay_mock.Relay serving from a background thread; a sync client talks to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.relay = Relay(seed=0)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self.uses = 0
        self.probes = itertools.count()

    def __enter__(self) -> RelayThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.relay.start(), self.loop).result(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        asyncio.run_coroutine_threadsafe(self.relay.close(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def connection(self) -> ClientConnection:
        # A fresh connection now and then, so per-connection state (subscriptions) varies.
        if self.ws is None or self.uses >= 200:
            self._stack.close()
            self._stack = contextlib.ExitStack()
            self.ws = self._stack.enter_context(
                connect(self.relay.url, compression=None, max_size=None, open_timeout=WAIT)
            )
            self.uses = 0
        self.uses += 1
        return self.ws


@pytest.fixture(scope="module")
def served() -> Iterator[RelayThread]:
    with RelayThread() as rt:
        yield rt


def ws_case(rt: RelayThread, seed: int) -> None:
    m = Mutator(seed)
    ws = rt.connection()
    for _ in range(m.r.randrange(1, 4)):
        frame = m.client_frame()
        if isinstance(frame, str):  # a text frame must be UTF-8: lone surrogates become '?'
            frame = frame.encode("utf-8", "replace").decode("utf-8")
        ws.send(frame)
    probe = f"probe{next(rt.probes)}"
    ws.send(json.dumps(["COUNT", probe, {"ids": [HEX64]}]))
    while True:
        text = ws.recv(timeout=WAIT)
        assert isinstance(text, str)
        check_reply(text)
        msg = json.loads(text)
        if msg[0] == "COUNT" and msg[1] == probe:
            assert msg[2] == {"count": 0}
            return


@QUICK
@given(seed=seeds)
def test_relay_over_websocket_answers_any_frame(served: RelayThread, seed: int) -> None:
    ws_case(served, seed)


@pytest.mark.fuzz
@DEEP
@given(seed=seeds)
def test_fuzz_relay_over_websocket_answers_any_frame(served: RelayThread, seed: int) -> None:
    ws_case(served, seed)
