"""The server's shortcut past websockets' frame parser: any split of the byte stream, any mix of
frames, the same replies in the same order as through the ordinary path."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
from types import SimpleNamespace

import pytest
from websockets.frames import Frame, Opcode

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Relay
from relay_mock.server import _Connection

KEYS = Keys.generate()


def frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=True)


async def handshake(relay: Relay) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(length)


def program(rng: random.Random) -> tuple[bytes, list[str]]:
    """A byte stream of mixed frames and the verbs (or event ids) of the replies it must get."""
    stream = b""
    expect: list[str] = []
    for i in range(40):
        choice = rng.random()
        if choice < 0.55:
            size = rng.choice([5, 200, 70_000])  # 7-bit, 16-bit and 64-bit lengths
            ev = Event.create(KEYS, 1, f"{i} " + "x" * size)
            stream += frame(Opcode.TEXT, ('["EVENT",' + ev.to_json() + "]").encode())
            expect.append(ev.id)
        elif choice < 0.65:
            stream += frame(Opcode.PING, b"p%d" % i)
            expect.append("PONG")
        elif choice < 0.75:  # a fragmented REQ
            text = json.dumps(["REQ", f"s{i}", {"ids": ["0" * 64]}]).encode()
            cut = rng.randrange(1, len(text))
            stream += frame(Opcode.TEXT, text[:cut], fin=False)
            if rng.random() < 0.5:
                stream += frame(Opcode.PING, b"mid")
                expect.append("PONG")
            stream += frame(Opcode.CONT, text[cut:])
            expect.append("EOSE")
        elif choice < 0.85:
            stream += frame(Opcode.BINARY, b"\x00\x01")
            expect.append("NOTICE")
        else:
            stream += frame(Opcode.TEXT, b"not json")
            expect.append("NOTICE")
    return stream, expect


async def replies(reader: asyncio.StreamReader, n: int) -> list[str]:
    got: list[str] = []
    while len(got) < n:
        opcode, data = await asyncio.wait_for(read_frame(reader), 10)
        if opcode == Opcode.PONG.value:
            got.append("PONG")
            continue
        msg = json.loads(data)
        got.append(msg[1] if msg[0] == "OK" else msg[0])
    return got


@pytest.mark.parametrize("seed", range(6))
async def test_any_split_of_any_mix_of_frames_is_answered_in_order(seed: int) -> None:
    rng = random.Random(seed)
    stream, expect = program(rng)
    async with Relay() as relay:
        reader, writer = await handshake(relay)
        try:
            pos = 0
            while pos < len(stream):  # chunks from 1 byte to 3 frames' worth
                step = rng.choice([1, 2, 3, 7, 13, 100, 1000, 5000, 100_000])
                writer.write(stream[pos : pos + step])
                await writer.drain()
                pos += step
            got = await replies(reader, len(expect))
            # Pongs are written as websockets parses the ping, which may be before the replies
            # to messages ahead of it: control frames have no order with messages.
            assert [r for r in got if r != "PONG"] == [r for r in expect if r != "PONG"]
            assert got.count("PONG") == expect.count("PONG")
        finally:
            writer.close()


async def test_frames_sent_with_the_handshake_take_the_ordinary_path() -> None:
    async with Relay() as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        ev = Event.create(KEYS, 1, "early")
        first = frame(Opcode.TEXT, ('["EVENT",' + ev.to_json() + "]").encode())
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + first[:9]
        )
        await reader.readuntil(b"\r\n\r\n")
        later = Event.create(KEYS, 1, "later")
        writer.write(first[9:] + frame(Opcode.TEXT, ('["EVENT",' + later.to_json() + "]").encode()))
        assert await replies(reader, 2) == [ev.id, later.id]
        writer.close()


def test_the_boundary_walker_follows_frames_across_any_split() -> None:
    frames = [frame(Opcode.TEXT, b"a" * n) for n in (0, 1, 125, 126, 65535, 65536)] + [
        frame(Opcode.PING, b""),
        Frame(Opcode.TEXT, b"unmasked").serialize(mask=False),
    ]
    stream = b"".join(frames)
    ends = set()
    pos = 0
    for f in frames:
        pos += len(f)
        ends.add(pos)
    rng = random.Random(1)
    for _ in range(200):
        state = SimpleNamespace(_skip=0, _partial=b"")
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 5, 11, 300, 70_000])
            _Connection._walk(state, stream[pos : pos + step])  # type: ignore[arg-type]
            pos = min(len(stream), pos + step)
            at_boundary = not state._skip and not state._partial
            assert at_boundary == (pos in ends), pos
