"""`swarm ask`: ask the swarm one question, watch the providers work, print the agreed answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from client.cli.common import add_key_option, add_relay_option
from client.customer.agreement.judge import JUDGE_TIMEOUT_S
from client.customer.copy_guard import SEALING_MODES, protections
from client.customer.directory import ProviderDirectory
from client.customer.prepay import PrepayPolicy
from client.customer.quorum import COMPARATOR_NAMES, comparator_by_name
from client.customer.reputation import ReputationLedger, default_ledger_path
from client.customer.selection import POLICY_NAMES, AccessList, Selector, policy_by_name
from client.customer.swarm import DEFAULT_MAX_SATS, Progress, SwarmClient, SwarmResult
from client.nostr import nip19
from client.nostr.errors import InvalidKey, JobError, NostrSwarmError, QuorumNotReached, RelayError
from client.nostr.keys import Keys, parse_pubkey
from client.wallet.invoices import DEFAULT_NETWORK, NETWORKS

EXIT_OK = 0
EXIT_NO_QUORUM = 1
EXIT_USAGE = 2
EXIT_RELAY = 3

EPILOG = """\
exit codes: 0 answer agreed; 1 quorum not reached (what arrived is shown); 2 bad arguments;
3 no relay accepted the job or a relay error.

The answer goes to stdout, the live provider table and the summary to stderr, so
`swarm ask ... > answer.txt` keeps only the answer. Without --key a throwaway key is used
(fine for free jobs). Environment: SWARM_RELAYS (comma- or space-separated) and SWARM_KEY are
used when --relay / --key are not given.

example:
  swarm ask "Capital of France? One word." --relay ws://127.0.0.1:7447 --quorum 2 --timeout 30
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ask",
        help="ask the swarm for a quorum-verified completion",
        description="Publish a NIP-90 text-generation job (kind 5050), show each provider's "
        "status live, and print the answer that QUORUM providers agree on.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompt", help="the prompt (use - to read it from stdin)")
    add_relay_option(p)
    p.add_argument("--quorum", "-k", type=int, default=2, help="providers that must agree (2)")
    p.add_argument("--timeout", "-t", type=float, default=30.0, help="seconds to wait (30)")
    p.add_argument("--model", "-m", help="model name to ask for (param model)")
    p.add_argument(
        "--kind",
        type=int,
        default=5050,
        choices=(5050, 5000, 5001, 5002),
        help="NIP-90 job kind: 5050 text generation (default), 5000 text extraction, 5001 "
        "summarization, 5002 translation (the language as --param language=German)",
    )
    add_key_option(p, what="signs the job; without it and SWARM_KEY, a new throwaway one")
    p.add_argument("--max-tokens", type=int, help="param max_tokens")
    p.add_argument("--temperature", type=float, help="param temperature")
    p.add_argument("--top-p", type=float, help="param top_p")
    p.add_argument("--seed", type=int, help="param seed")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other job param (repeatable)",
    )
    p.add_argument("--bid", type=int, metavar="SATS", help="most each provider may charge (sats)")
    p.add_argument(
        "--max-sats",
        type=int,
        metavar="SATS",
        help="most the whole job may pay; the bid defaults to it split over the quorum. With a "
        "wallet and neither --max-sats nor --bid, the cap is $SWARM_MAX_SATS, else "
        f"{DEFAULT_MAX_SATS} sats: an invoice above it is refused",
    )
    p.add_argument(
        "--target",
        "-p",
        action="append",
        default=[],
        metavar="NPUB",
        help="address this provider (npub or hex; repeatable)",
    )
    p.add_argument(
        "--encrypt",
        choices=("nip44", "nip04"),
        help="seal the prompt for each --target (one request per provider)",
    )
    p.add_argument(
        "--compare",
        "--comparator",
        choices=COMPARATOR_NAMES,
        default="normalized",
        help="how answers are compared (normalized; auto picks by the prompt, docs/quorum.md)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        help="numeric: absolute tolerance; similarity: threshold 0..1",
    )
    p.add_argument(
        "--judge-url",
        metavar="URL",
        help="with --comparator auto or judge: ask the language model at this OpenAI-compatible "
        "endpoint (e.g. http://127.0.0.1:8080/v1) whether two paragraph answers make the same "
        "claims (docs/quorum.md); needs --judge-model",
    )
    p.add_argument("--judge-model", metavar="MODEL", help="the judge's model name")
    p.add_argument(
        "--judge-key-env",
        metavar="VAR",
        help="the environment variable holding the judge endpoint's API key (sent as a bearer "
        "token)",
    )
    p.add_argument(
        "--judge-timeout",
        type=float,
        metavar="SECONDS",
        help="how long one judge call may take (30); a call that fails leaves that pair to the "
        "comparator without a judge",
    )
    p.add_argument(
        "--policy",
        choices=POLICY_NAMES,
        default="broadcast",
        help="who to ask: broadcast (anyone), or target providers found on the relays by "
        "reputation: best, cheapest, fastest, explore (best plus a share for newcomers)",
    )
    p.add_argument(
        "--spare",
        type=int,
        default=1,
        help="with --policy: providers asked beyond the quorum size (1)",
    )
    p.add_argument(
        "--block",
        action="append",
        default=[],
        metavar="NPUB",
        help="never ask or count this provider (repeatable)",
    )
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="NPUB",
        help="only ask and count these providers (repeatable)",
    )
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help="reputation ledger this job updates (default: SWARM_REPUTATION or "
        "~/.local/share/nostr-swarm/reputation.sqlite)",
    )
    p.add_argument("--no-reputation", action="store_true", help="do not record this job's outcome")
    p.add_argument(
        "--nwc",
        metavar="URI",
        help="pay the agreeing providers from this Nostr Wallet Connect wallet "
        "(nostr+walletconnect://…; default: SWARM_NWC); without it nothing is paid",
    )
    p.add_argument(
        "--prepay",
        action="store_true",
        help="pay providers that ask to be paid before they work (payment-required), within "
        "--bid/--max-sats: at most --quorum of them, once each, before any answer is in "
        "(a prepaid provider may still dissent; docs/wire-profile.md §9.7)",
    )
    p.add_argument(
        "--network",
        choices=("auto", *NETWORKS),
        default="auto",
        help="the Lightning network the --nwc wallet pays on; invoices for another are refused "
        "(auto, the default: what the wallet's get_info says, else "
        f"{DEFAULT_NETWORK}; bitcoin for a mainnet wallet)",
    )
    p.add_argument(
        "--payments-db",
        metavar="PATH",
        help="payment ledger that makes paying idempotent (default ~/.nostr-swarm/payments.db)",
    )
    p.add_argument(
        "--sealing",
        choices=SEALING_MODES,
        default="prefer",
        help="ask providers to encrypt their answers to you so others cannot copy them: "
        "require (clear-text answers do not count), prefer (they count, marked copyable; "
        "the default), off (do not ask)",
    )
    p.add_argument(
        "--commit-reveal",
        action="store_true",
        help="providers commit to a hash of their answer first and reveal it once the "
        "commitment window closes: a provider cannot copy an answer it has not seen",
    )
    p.add_argument(
        "--commit-window",
        type=float,
        metavar="SECONDS",
        help="close the commitment window this long after publishing (half the timeout)",
    )
    p.add_argument(
        "--commit-quota",
        type=int,
        metavar="N",
        help="close the commitment window as soon as N commitments are in "
        "(default: the number of --target providers, if any)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no live table or summary")
    p.set_defaults(handler=_ask)


def _short(pubkey: str) -> str:
    npub = nip19.encode("npub", bytes.fromhex(pubkey))
    return npub[:12] + "…" + npub[-4:]


class _Board:
    """The live provider table."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        self.rows: dict[str, tuple[str, str, float]] = {}
        self.protection: dict[str, str] = {}
        self.state = "waiting for providers"
        self.rejected = 0

    def update(self, p: Progress) -> None:
        if p.kind == "published":
            self.state = "job published, waiting for providers"
        elif p.kind == "rejected":
            self.rejected += 1
        elif p.kind == "reached":
            self.state = "quorum reached"
            if p.decision is not None:
                for pk in p.decision.agreeing:
                    self.rows[pk] = ("agreed", self.rows.get(pk, ("", "", 0))[1], p.elapsed_ms)
                for pk in p.decision.dissenting:
                    self.rows[pk] = ("dissented", self.rows.get(pk, ("", "", 0))[1], p.elapsed_ms)
        elif p.kind == "failed":
            self.state = "no agreement possible"
        elif p.kind == "window":
            self.state = f"commitment window closed ({p.detail}), waiting for reveals"
        if p.decision is not None:
            self.protection.update(protections(p.decision))
        if p.provider is not None and p.kind in ("feedback", "result"):
            detail = p.detail.replace("\n", " ")[:60]
            self.rows[p.provider] = (p.status, detail, p.elapsed_ms)

    def render(self) -> Table:
        t = Table(title=f"quorum {self.quorum}: {self.state}", title_justify="left")
        t.add_column("provider")
        t.add_column("status")
        t.add_column("ms", justify="right")
        t.add_column("protection")
        t.add_column("detail", overflow="ellipsis", max_width=60)
        styles = {"agreed": "green", "dissented": "red", "error": "red", "answered": "cyan"}
        for pk, (status, detail, ms) in self.rows.items():
            st = styles.get(status, "yellow")
            prot = _protection_label(self.protection.get(pk, ""))
            t.add_row(_short(pk), f"[{st}]{status}[/]", f"{ms:.0f}", prot, detail)
        if self.rejected:
            t.caption = f"{self.rejected} bad event(s) ignored"
        return t


def _protection_label(protection: str) -> str:
    return "clear (copyable)" if protection == "clear" else protection


def _outcome_json(result: SwarmResult) -> dict[str, Any]:
    return {
        "reached": result.reached,
        "text": result.text,
        "job_id": result.job_id,
        "agreeing": list(result.agreeing),
        "dissenting": list(result.dissenting),
        "statuses": result.statuses,
        "answers": {r.provider: r.content for r in result.results},
        "rejected": dict(result.rejected),
        "protection": result.protection,
        "copyable": list(result.copyable),
        "sats_paid": result.sats_paid,
        "msats_paid": result.msats_paid,
        "msats_unknown": result.msats_unknown,
        "payments": _payments_json(result),
        "timings_ms": {
            "published": result.timings.published_ms,
            "first_feedback": result.timings.first_feedback_ms,
            "first_result": result.timings.first_result_ms,
            "quorum": result.timings.quorum_ms,
            "total": result.timings.total_ms,
        },
    }


def _payments_json(result: SwarmResult) -> dict[str, dict[str, Any]]:
    outcomes = getattr(result.payment, "outcomes", None) or {}
    return {
        p: {"status": o.status, "msats": o.amount_msats, "reason": o.reason}
        for p, o in outcomes.items()
    }


def _payment_lines(console: Console, result: SwarmResult) -> None:
    """Say who was not paid and why (refused above the bid, failed, unknown outcome)."""
    outcomes = getattr(result.payment, "outcomes", None) or {}
    for provider, o in outcomes.items():
        if o.status in ("refused", "failed", "unknown"):
            console.print(f"  payment to {provider[:16]}… {o.status}: {o.reason}")
    if result.msats_unknown:
        console.print(
            f"  {result.msats_unknown} msats may have left the wallet without an answer yet: "
            "recorded as unknown and looked up again on the next run (`swarm wallet history`)"
        )


def _summary(console: Console, result: SwarmResult) -> None:
    t = result.timings
    agreed = len(result.agreeing)
    console.print(
        f"[bold]{'agreed' if result.reached else 'NOT agreed'}[/]: {agreed} agreeing, "
        f"{len(result.dissenting)} dissenting, {len(result.results)} answer(s); "
        f"{t.total_ms:.0f} ms; paid {result.sats_paid} sats; job {result.job_id[:16]}…"
    )
    _payment_lines(console, result)
    note = result.decision.note  # what auto picked; what the judge was asked
    if note:
        console.print(f"  compared by {result.decision.comparator}: {note}")
    prot = result.protection
    if result.reached:
        counts = Counter(prot.get(pk, "clear") for pk in result.agreeing)
        parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        console.print(f"  protection of the agreeing answers: {parts}")
        for pk in result.copyable:
            console.print(
                f"  [yellow]copyable[/] {_short(pk)}: its answer was readable on the relay, "
                "so its agreement may be a copy"
            )
    for pk in result.dissenting:
        answer = next((r.content for r in result.results if r.provider == pk), "")
        console.print(f"  [red]dissent[/] {_short(pk)}: {answer[:80]!r}")
    if result.rejected:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(result.rejected.items()))
        console.print(f"  ignored: {parts}")


def _params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param wants NAME=VALUE, got {item!r}")
        out[name.strip()] = value
    return out


# Comparators that read the question: auto picks by it, the paragraph ones check its subject.
_READS_PROMPT = frozenset({"auto", "claims", "semantic", "judge"})


def _judge(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:
    """The --judge-* options as a judge and its bounds (None, None without --judge-url)."""
    given = [f for f in ("judge_model", "judge_key_env", "judge_timeout") if getattr(args, f)]
    if not args.judge_url:
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValueError(f"{flag} needs --judge-url")
        return None, None
    if not args.judge_model:
        raise ValueError("--judge-url needs --judge-model")
    from client.customer.judge_endpoint import EndpointJudge

    api_key = None
    if args.judge_key_env:
        api_key = os.environ.get(args.judge_key_env)
        if not api_key:
            raise ValueError(f"--judge-key-env: {args.judge_key_env} is not set")
    timeout = args.judge_timeout if args.judge_timeout is not None else JUDGE_TIMEOUT_S
    if not timeout > 0:
        raise ValueError("--judge-timeout must be > 0")
    judge = EndpointJudge(args.judge_url, args.judge_model, api_key=api_key, timeout_s=timeout)
    return judge, {"timeout_s": timeout}


def _ask(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False)
    relays = args.relay  # the flags, else SWARM_RELAYS
    if not relays:
        err.print("swarm ask: give at least one --relay URL (or set SWARM_RELAYS)")
        return EXIT_USAGE
    try:
        secret = args.key or os.environ.get("SWARM_KEY")
        keys = Keys.from_secret(secret) if secret else Keys.generate()
        targets = [parse_pubkey(t) for t in args.target]
        params = _params(args.param)
        judge, bounds = _judge(args)
        comparator = comparator_by_name(
            args.compare, tolerance=args.tolerance, judge=judge, judge_options=bounds
        )
    except (InvalidKey, ValueError) as exc:
        err.print(f"swarm ask: {exc}")
        return EXIT_USAGE
    if args.encrypt and not targets:
        err.print("swarm ask: --encrypt needs at least one --target provider")
        return EXIT_USAGE
    if args.quorum < 1 or (targets and args.quorum > len(targets)):
        err.print("swarm ask: --quorum must be at least 1 and at most the number of targets")
        return EXIT_USAGE
    for flag, value in (("--max-sats", args.max_sats), ("--bid", args.bid)):
        if value is not None and value < 0:
            err.print(f"swarm ask: {flag} must not be negative")
            return EXIT_USAGE
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.compare in _READS_PROMPT:  # they read the question, known only now
        comparator = comparator_by_name(
            args.compare, tolerance=args.tolerance, prompt=prompt, judge=judge, judge_options=bounds
        )
    kwargs: dict[str, Any] = {
        "model": args.model,
        "quorum": args.quorum,
        "kind": args.kind,
        "timeout": args.timeout,
        "max_sats": args.max_sats,
        "bid_msats": args.bid * 1000 if args.bid is not None else None,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "seed": args.seed,
        "params": params,
        "targets": targets or None,
        "encrypt": args.encrypt or False,
        "comparator": comparator,
        "sealing": args.sealing,
        "commit_reveal": args.commit_reveal,
        "commit_window": args.commit_window,
        "commit_quota": args.commit_quota,
    }
    if args.prepay:  # its ceilings are the job's bid and --max-sats (SwarmClient.complete)
        kwargs["prepay"] = PrepayPolicy()
    return asyncio.run(_run(relays, keys, prompt, kwargs, args, err))


async def _run(
    relays: list[str],
    keys: Keys,
    prompt: str,
    kwargs: dict[str, Any],
    args: argparse.Namespace,
    err: Console,
) -> int:
    board = _Board(args.quorum)
    live_display = err.is_terminal and not args.quiet
    started = time.monotonic()
    nwc = getattr(args, "nwc", None) or os.environ.get("SWARM_NWC")
    wallet: Any = None
    ledger: Any = None
    selector: Any = None
    try:
        if not args.no_reputation or args.policy != "broadcast":
            ledger = ReputationLedger(
                args.ledger or default_ledger_path(), customer=keys.public_key
            )
        if args.policy != "broadcast" or args.allow or args.block:
            selector = Selector(
                directory=ProviderDirectory() if args.policy != "broadcast" else None,
                ledger=ledger,
                policy=policy_by_name(args.policy),
                access=AccessList.parse(allow=args.allow or None, block=args.block),
                spare=args.spare,
            )
        limit = min(5.0, args.timeout)  # a dead relay must not outlast the user's patience
        if nwc:
            from client.wallet import NwcWallet

            wallet = NwcWallet(nwc, timeout=max(limit, 10.0))
            await wallet.connect()
        cap_note = wallet is not None and args.max_sats is None and args.bid is None
        async with SwarmClient(
            keys,
            relays,
            wallet,
            payments_db=getattr(args, "payments_db", None),
            selector=selector,
            reputation=None if args.no_reputation else ledger,
            connect_timeout=limit,
            publish_timeout=limit,
        ) as swarm:
            if swarm.payer is not None:  # every invoice, prepaid or not, must be for this network
                network = args.network
                if network == "auto":
                    from client.wallet.network import wallet_network

                    network = await wallet_network(wallet, limit) or DEFAULT_NETWORK
                swarm.payer.guard.network = network
            if cap_note and not args.quiet:
                err.print(
                    f"paying at most {swarm.max_sats} sats for this job (the default cap; "
                    "--max-sats or SWARM_MAX_SATS changes it)",
                    style="dim",
                )
            if live_display:
                with Live(board.render(), console=err, refresh_per_second=12) as live:

                    def show(p: Progress) -> None:
                        board.update(p)
                        live.update(board.render())

                    result = await swarm.complete(prompt, on_progress=show, **kwargs)
            else:
                result = await swarm.complete(prompt, on_progress=board.update, **kwargs)
    except QuorumNotReached as exc:
        received = exc.received
        if isinstance(received, SwarmResult):
            if args.json:
                print(json.dumps(_outcome_json(received), indent=2))
            if not args.quiet:
                _summary(err, received)
        err.print(f"swarm ask: {exc}")
        return EXIT_NO_QUORUM
    except RelayError as exc:
        err.print(f"swarm ask: relay trouble: {exc}")
        return EXIT_RELAY
    except (JobError, NostrSwarmError, ValueError) as exc:
        err.print(f"swarm ask: {exc}")
        return EXIT_USAGE
    finally:
        if wallet is not None:
            await wallet.close()
        if ledger is not None:
            ledger.close()
    if args.json:
        print(json.dumps(_outcome_json(result), indent=2))
    else:
        print(result.text)
    if not args.quiet:
        _summary(err, result)
        err.print(f"  ({time.monotonic() - started:.2f} s including connecting)", style="dim")
    return EXIT_OK
