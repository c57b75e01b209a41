"""`swarm demo --web`: the demo's swarm with its dashboard, asked from the page (provider/demo.py
``web_demo``). Mock models in process, like tests/provider/test_demo_processes.py; the command
itself with the embedded model (``local_model``) at the end. The page in a browser:
tests/router/dashboard/test_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from client.cli import main
from provider.demo import DEFAULT_PROMPT, JobTerms, web_demo
from router.backends.base import LmBackend
from router.backends.mock import MockBackend
from tests.support.demo import running_demo

TERMS = JobTerms(quorum=2, timeout=30)


def honest_mock(index: int, model_path: str | None) -> LmBackend:
    # Slower than the liar (as a real model is), so the liar's vote is in before the quorum.
    mock = MockBackend(f"mock-{index}").with_model("m").with_response("Paris.")
    return mock.with_usage(20, 2).with_latency(300)


async def act(url: str, body: Any, key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "actions/ask", json=body, headers=headers) as r:
            return r.status, await r.json()


async def snapshot(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "snapshot") as r:
        assert r.status == 200  # open to read: the demo runs on 127.0.0.1 for its user
        return dict(await r.json())


async def test_the_page_shows_the_first_question_and_asks_more(tmp_path: Path) -> None:
    async with web_demo(workdir=tmp_path, terms=TERMS, backend_factory=honest_mock) as web:
        assert web.url.startswith("http://127.0.0.1:") and web.url.endswith("/dashboard/")
        assert len(web.admin_key) >= 32
        first = await web.ask("What is the capital of France?")
        assert first.ok and first.result is not None and first.result.text == "Paris."
        # Nobody had the page open: it shows the job anyway (the demo's hub always counts).
        snap = await snapshot(web.url)
        (job,) = snap["jobs"]
        assert job["id"] == first.result.job_id and job["outcome"] == "reached"
        assert job["paid_msats"] == first.customer_spent_msats > 0
        assert snap["earnings"]["paid_msats"] == first.customer_spent_msats
        assert {r["provider"] for r in snap["reputation"]} >= set(first.result.agreeing)

        # Asking changes state: the admin key only.
        question = {"prompt": "Name the capital of France."}
        assert (await act(web.url, question, None))[0] == 401
        assert (await act(web.url, question, "not-the-key-at-all"))[0] == 401
        status, answer = await act(web.url, {"prompt": ""}, web.admin_key)
        assert status == 400 and "prompt" in answer["error"]["message"]
        heard: list[str] = []
        web.on_answer = lambda report: heard.append(report.prompt)
        status, answer = await act(web.url, question, web.admin_key)
        assert status == 200 and answer["reached"] is True and answer["text"] == "Paris."
        assert len(answer["agreeing"]) == 2 and heard == [question["prompt"]]
        second = web.reports[-1]
        assert second.result is not None and answer["job_id"] == second.result.job_id
        assert second.ledger_total_before == second.ledger_total_after  # money only moved
        snap = await snapshot(web.url)
        assert [j["id"] for j in snap["jobs"]] == [second.result.job_id, first.result.job_id]
        assert snap["earnings"]["paid_msats"] == (
            first.customer_spent_msats + second.customer_spent_msats
        )


async def test_one_question_at_a_time(tmp_path: Path) -> None:
    async with web_demo(workdir=tmp_path, terms=TERMS, backend_factory=honest_mock) as web:
        async with web._busy:  # a question is being answered (the command's, or the page's)
            status, answer = await act(web.url, {"prompt": "3+3?"}, web.admin_key)
        assert status == 409 and answer["error"]["code"] == "busy"
        assert web.reports == []
        status, answer = await act(web.url, {"prompt": "3+3?"}, web.admin_key)
        assert status == 200 and answer["reached"] is True


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--web", "--json"], "--web and --json do not go together"),
        (["--no-browser"], "are for --web"),
        (["--web-port", "8091"], "are for --web"),
        (["--web", "--web-port", "70000"], "is not a port"),
    ],
)
def test_web_options_that_do_not_go_together(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *args]) == 2
    assert error in capsys.readouterr().err


@pytest.mark.local_model
async def test_swarm_demo_web_serves_its_page_until_sigterm() -> None:
    async with running_demo("--web", "--no-browser") as (proc, lines):
        url = next(ln for ln in lines if ln.startswith("dashboard:")).split()[-1]
        key = next(ln for ln in lines if ln.startswith("admin key:")).split()[-1]
        assert key not in url  # the key is never part of a URL
        assert any(ln.startswith("Agreed answer:") for ln in lines), "".join(lines)
        snap = await snapshot(url)
        assert len(snap["jobs"]) == 1 and snap["jobs"][0]["outcome"] == "reached"
        status, answer = await act(url, {"prompt": DEFAULT_PROMPT}, key)
        assert status == 200 and answer["reached"] is True
        assert "paris" in answer["text"].lower()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    where = urlsplit(url)
    with pytest.raises(OSError):  # the page went with the swarm
        await asyncio.open_connection(where.hostname, where.port)


def test_the_web_option_is_in_the_help() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--web" in out.getvalue() and "--no-browser" in out.getvalue()
