"""A small seeded mutation fuzzer: valid protocol objects with a few things changed.

Hypothesis draws one integer per case and :class:`Mutator` turns it into inputs. Drawing the
frames themselves with hypothesis strategies cost 3-7 ms per case on this machine, which made
10,000 cases per target take minutes; a seeded generator costs microseconds, and a failing case
is still reproduced exactly by its seed (hypothesis prints it).

Mutations are the ones that break parsers: a field replaced by another JSON type, a key dropped
or added, one hex digit changed or upper-cased, a string cut, junk appended, escaped lone
surrogates, deep nesting, huge numbers, text edits at the character level.
"""

from __future__ import annotations

import json
import random
from typing import Any

from client.nostr.event import Event
from client.nostr.keys import Keys

KEYS = [Keys.generate() for _ in range(3)]
HEX64 = "a" * 64
NOW = 1_800_000_000

_SAMPLES: list[tuple[int, str, list[list[str]]]] = [
    (1, "hello", []),
    (1, "", [["t", "x"]]),
    (5050, "", [["i", "2+2?", "text"], ["bid", "1000"]]),
    (6050, "4", [["e", HEX64], ["p", KEYS[1].public_key]]),
    (7000, "", [["status", "processing"], ["e", HEX64]]),
    (30023, "long", [["d", "a"]]),
    (0, '{"name":"x"}', []),
    (10002, "", [["r", "ws://x"]]),
    (5, "", [["e", HEX64], ["k", "5050"]]),
    (20001, "ephemeral", []),
    (1, "exp", [["expiration", str(NOW + 100)]]),
    (1, 'ünïcödé \x00 " quotes \U0001f600', [["e", "x", "y", "z"]]),
]
# Signed once: signing in every case would dominate the run time.
EVENTS = [
    Event.create(keys, kind, content, tags, created_at=NOW + i - j)
    for i, (kind, content, tags) in enumerate(_SAMPLES)
    for j, keys in enumerate(KEYS)
]

WORDS = [
    "EVENT",
    "REQ",
    "CLOSE",
    "AUTH",
    "COUNT",
    "OK",
    "EOSE",
    "CLOSED",
    "NOTICE",
    "",
    "e",
    "#e",
    "#p",
    "ids",
    "kinds",
    "authors",
    "since",
    "until",
    "limit",
    "id",
    "sig",
    "content",
    "tags",
    HEX64,
    "A" * 64,
    "0" * 128,
    "\u0000",
    "\\",
    '"',
    "💥",
    "ws://127.0.0.1:1",
    "null",
]
SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**53 + 1,
    2**64,
    -(2**63),
    1.5,
    -0.0,
    1e308,
    "",
    "x",
]


class Mutator:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    # --- primitive values --------------------------------------------------------------

    def text(self, n: int = 12) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.3:
            return r.choice(WORDS)
        if pick < 0.6:
            return "".join(chr(r.randrange(32, 127)) for _ in range(r.randrange(n + 1)))
        pools = (0x20, 0x7F), (0x80, 0x800), (0x800, 0xD7FF), (0xE000, 0x10FFFF), (0, 0x20)
        out = []
        for _ in range(r.randrange(n + 1)):
            lo, hi = r.choice(pools)
            out.append(chr(r.randrange(lo, hi)))
        return "".join(out)

    def value(self, depth: int = 0) -> Any:
        r = self.r
        pick = r.random()
        if depth >= 3 or pick < 0.5:
            return r.choice(SCALARS) if r.random() < 0.5 else self.text()
        if pick < 0.75:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {self.text(6): self.value(depth + 1) for _ in range(r.randrange(4))}

    # --- structures --------------------------------------------------------------------

    def event(self) -> Event:
        return self.r.choice(EVENTS)

    def mutate(self, obj: Any, times: int | None = None) -> Any:
        """``obj`` (JSON-like) with 0..3 random structural changes (copied, not in place)."""
        obj = json.loads(json.dumps(obj))
        r = self.r
        for _ in range(r.randrange(4) if times is None else times):
            obj = self._mutate_once(obj)
        return obj

    def _mutate_once(self, obj: Any) -> Any:
        r = self.r
        nodes: list[Any] = []

        def walk(node: Any) -> None:
            if isinstance(node, (list, dict)):
                nodes.append(node)
                for child in node.values() if isinstance(node, dict) else node:
                    walk(child)

        walk(obj)
        if not nodes or r.random() < 0.05:
            return self.value()
        node = r.choice(nodes)
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        op = r.randrange(6)
        if op == 0 and keys:  # replace a value
            node[r.choice(keys)] = self.value()
        elif op == 1 and keys:  # remove one
            del node[r.choice(keys)]
        elif op == 2:  # add one
            if isinstance(node, dict):
                node[r.choice(WORDS) if r.random() < 0.5 else self.text(6)] = self.value()
            else:
                node.insert(r.randrange(len(node) + 1), self.value())
        elif op == 3 and keys:  # change one character of a string
            k = r.choice(keys)
            if isinstance(node[k], str) and node[k]:
                s = node[k]
                i = r.randrange(len(s))
                repl = r.choice(["0", "f", "F", "g", " ", "", "é", "\ud800", s[i].upper()])
                node[k] = s[:i] + repl + s[i + 1 :]
            elif isinstance(node[k], int) and not isinstance(node[k], bool):
                node[k] = r.choice([node[k] + 1, -node[k], node[k] * 2**40, str(node[k])])
        elif op == 4 and keys:  # duplicate an element
            k = r.choice(keys)
            if isinstance(node, list):
                node.append(json.loads(json.dumps(node[k])))
        elif op == 5 and keys:  # wrap in a list
            k = r.choice(keys)
            node[k] = [node[k]]
        return obj

    def dumps(self, obj: Any) -> str:
        """JSON text, sometimes with escapes, spaces or edits at the character level."""
        r = self.r
        try:
            text = json.dumps(
                obj,
                ensure_ascii=r.random() < 0.3,
                separators=(",", ":") if r.random() < 0.7 else (" , ", " : "),
            )
        except (ValueError, TypeError):
            text = "[]"
        pick = r.random()
        if pick < 0.08 and text:  # cut short
            return text[: r.randrange(len(text))]
        if pick < 0.14:  # junk after it
            return text + self.text(4)
        if pick < 0.2 and text:  # one character changed
            i = r.randrange(len(text))
            return text[:i] + chr(r.randrange(0, 0x2FF)) + text[i + 1 :]
        if pick < 0.22:
            return "[" * r.randrange(1, 3000) + "]" * r.randrange(3000)
        return text

    # --- whole messages --------------------------------------------------------------

    def filters(self) -> list[Any]:
        r = self.r
        out: list[Any] = []
        for _ in range(r.randrange(1, 4)):
            ev = self.event()
            f: dict[str, Any] = r.choice(
                [
                    {"kinds": [ev.kind]},
                    {"ids": [ev.id]},
                    {"authors": [ev.pubkey], "limit": r.randrange(5)},
                    {"#e": [HEX64]},
                    {"since": NOW - 5, "until": NOW + 50},
                    {},
                ]
            )
            out.append(f)
        return out

    def client_message(self) -> Any:
        """A client->relay message as a JSON value, usually mutated."""
        r = self.r
        pick = r.randrange(10)
        sub = r.choice(["s", "sub", "x" * 64, self.text(8)])
        if pick < 4:
            msg: Any = ["EVENT", self.event().to_dict()]
        elif pick < 6:
            msg = ["REQ", sub, *self.filters()]
        elif pick == 6:
            msg = ["COUNT", sub, *self.filters()]
        elif pick == 7:
            msg = ["CLOSE", sub]
        elif pick == 8:
            msg = ["AUTH", self.event().to_dict()]
        else:
            return self.value()
        return self.mutate(msg) if r.random() < 0.7 else msg

    def client_frame(self) -> str | bytes:
        r = self.r
        if r.random() < 0.03:
            return bytes(r.randrange(256) for _ in range(r.randrange(40)))
        return self.dumps(self.client_message())

    def relay_message(self) -> Any:
        """A relay->client message as a JSON value, usually mutated."""
        r = self.r
        ev = self.event()
        sub = r.choice(["s", "x" * 64, self.text(8)])
        msg = r.choice(
            [
                ["EVENT", sub, ev.to_dict()],
                ["OK", ev.id, r.random() < 0.5, self.text(10)],
                ["EOSE", sub],
                ["CLOSED", sub, "error: " + self.text(6)],
                ["NOTICE", self.text(10)],
                ["AUTH", self.text(16)],
                ["COUNT", sub, {"count": r.randrange(100)}],
            ]
        )
        return self.mutate(msg) if r.random() < 0.7 else msg

    def edit_chars(self, text: str, alphabet: str, edits: int | None = None) -> str:
        """``text`` with a few characters replaced, inserted or deleted (from ``alphabet``)."""
        r = self.r
        for _ in range(r.randrange(1, 4) if edits is None else edits):
            i = r.randrange(len(text) + 1)
            op = r.randrange(3)
            if op == 0 and i < len(text):
                text = text[:i] + r.choice(alphabet) + text[i + 1 :]
            elif op == 1:
                text = text[:i] + r.choice(alphabet) + text[i:]
            elif i < len(text):
                text = text[:i] + text[i + 1 :]
        return text
