"""The dashboards as the commands serve them: ``swarm serve`` and ``swarm provider run
--dashboard`` as real processes, on a paid swarm running in the test.

:func:`paid_world` starts, on 127.0.0.1: a relay_mock relay, paid provider nodes answering
:data:`~tests.router.dashboard.stage.ANSWER` (tests/support/market.py: one SQLite ledger plays
Lightning), the customer of that market, and an NWC wallet service on the same ledger, so that a
process outside the test (the gateway) can pay from the customer's account too.
:class:`Process` runs a command and reads its output up to the line that says it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from client.nostr.keys import Keys
from relay_mock import Relay
from relay_mock.lightning.service import WalletService
from tests.support.market import MODEL, PRICING, Market, mock

from .stage import ADMIN_KEY, ANSWER

SWARM = str(Path(sys.executable).parent / "swarm")


@dataclass
class World:
    relay: Relay
    market: Market
    service: WalletService
    tmp: Path

    def nwc(self) -> str:
        """A new NWC connection to the market's customer account (10,000 sats)."""
        return self.service.connection_uri(self.market.customer.id)


@contextlib.asynccontextmanager
async def paid_world(
    tmp: Path, *, providers: int = 2, latency_ms: float = 0.0
) -> AsyncIterator[World]:
    """``providers`` nodes answering ANSWER after ``latency_ms``."""
    async with Relay(seed=0) as relay, Market(tmp, [relay.url]) as market:
        for _ in range(providers):
            await market.add_provider(mock(ANSWER, latency_ms=latency_ms), settle_check_s=0.1)
        await market.open_customer()
        async with WalletService(market.ledger, [relay.url]) as service:
            yield World(relay, market, service, tmp)


class Process:
    """A command on its own, stdout read line by line (kept in ``lines``), stderr in a file."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **env}
        self.log = log
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self, ready: str, *, within: float = 60.0) -> str:
        """Start it; return its first line containing ``ready``."""
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=self.env,
            )
        return await self.wait_for(ready, within=within)

    async def wait_for(self, text: str, *, within: float = 60.0) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.lines:
            if text in line:
                return line
        async with asyncio.timeout(within):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError(
                        f"{self.argv[1:3]} ended before printing {text!r}:\n"
                        + "".join(self.lines)
                        + self.log.read_text(errors="replace")[-3000:]
                    )
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if text in line:
                    return line

    def drain(self) -> None:
        """Go on reading its output in the background (a full pipe would block it)."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout

        async def read() -> None:
            while raw := await stdout.readline():
                self.lines.append(raw.decode(errors="replace"))

        self._drain = asyncio.create_task(read())

    async def stop(self) -> int:
        """SIGTERM, and its exit code (killed after 30 s)."""
        proc = self.proc
        assert proc is not None
        try:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(30):
                    await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if self._drain is not None:
                await asyncio.gather(self._drain, return_exceptions=True)
        return proc.returncode


def gateway_config(world: World, **config: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A gateway's config and environment on ``world``: the swarm (quorum 2 on the world's
    relay, paying from the customer's account over NWC), the admin key ``$GATEWAY_ADMIN_KEY``
    (:data:`ADMIN_KEY`) and a state file of its own, and ``config`` besides."""
    tmp = world.tmp
    cfg = {
        "swarm": {
            "relays": [world.relay.url],
            "quorum": 2,
            "bid_sats": 10,
            "nwc_uri_env": "SWARM_NWC",
            "payment_ledger": str(tmp / "gateway-payments.db"),
            "models": [MODEL],
            "job_timeout_s": 15,
        },
        "admin": {"key_env": "GATEWAY_ADMIN_KEY"},
        "state": {"url": f"sqlite:///{tmp / 'gateway-state.sqlite'}"},
        **config,
    }
    env = {
        "SWARM_NWC": world.nwc(),
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "NOSTR_SWARM_HOME": str(tmp / "home"),
    }
    return cfg, env


@contextlib.asynccontextmanager
async def swarm_serve(world: World, config: dict[str, Any]) -> AsyncIterator[tuple[Process, str]]:
    """``swarm serve --config FILE --port 0`` with :func:`gateway_config`; yields the process
    and its base URL."""
    tmp = world.tmp
    cfg, env = gateway_config(world, **config)
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = Process(
        [SWARM, "serve", "--config", str(path), "--port", "0"], env=env, log=tmp / "serve.log"
    )
    line = await proc.start("listening on")
    proc.drain()
    try:
        yield proc, line.split("listening on ")[1].split()[0]
    finally:
        assert await proc.stop() == 0, (tmp / "serve.log").read_text()[-3000:]


@contextlib.asynccontextmanager
async def provider_run(
    world: World, *extra: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[Process, Keys, int]]:
    """``swarm provider run --config provider.toml EXTRA...``: a node answering ANSWER with
    payment ``after`` into its own account of the world's ledger (which it opens itself),
    checking its invoices every 0.2 s. Yields the process once it serves, its keys and its
    ledger account."""
    tmp = world.tmp
    keys = Keys.generate()
    account = world.market.ledger.create_account("process-node").id
    p = PRICING
    path = tmp / "provider.toml"
    path.write_text(
        f"""[node]
secret_key = "{keys.secret_hex}"
relays = ["{world.relay.url}"]
models = ["{MODEL}"]
name = "dashboard node"
announce = false
store = "{tmp / "node.db"}"

[[backends]]
type = "mock"
models = ["{MODEL}"]
response = "{ANSWER}"
usage = [5, 3]

[pricing]
msats_per_1k_prompt = {p.msats_per_1k_prompt}
msats_per_1k_completion = {p.msats_per_1k_completion}
min_msats = {p.min_msats}

[payment]
policy = "after"
ledger = "{world.market.ledger.path}"
ledger_account = {account}
settle_check_s = 0.2
"""
    )
    proc = Process(
        [SWARM, "provider", "run", "--config", str(path), *extra],
        env={"NOSTR_SWARM_HOME": str(tmp / "home"), **(env or {})},
        log=tmp / "provider.log",
    )
    await proc.start("serving")
    try:
        yield proc, keys, account
    finally:
        assert await proc.stop() == 0, (tmp / "provider.log").read_text()[-3000:]
