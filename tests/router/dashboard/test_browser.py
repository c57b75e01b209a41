"""The dashboard in headless Chromium (Debian's, driven by Playwright): the page loads clean and
logs in with the admin key (and refuses a wrong one); then each dashboard as its command serves
it, on a paid swarm on 127.0.0.1: ``swarm serve`` follows a swarm job started during the test to
its agreed answer without a reload and revokes a key; ``swarm provider run --dashboard`` shows
the node's earnings change after a paid job; ``swarm demo --web`` (mock models) asks a question
from the page and shows the agreed answer. Each of those writes screenshots of its page at
laptop and phone widths to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from provider.demo import JobTerms, web_demo
from router.backends.base import LmBackend
from router.backends.mock import MockBackend
from tests.support.market import MODEL

from .processes import paid_world, provider_run, swarm_serve
from .stage import (
    ADMIN_KEY,
    ANSWER,
    ARTIFACTS,
    LAPTOP,
    PHONE,
    PageProblems,
    browser_or_skip,
    chromium,
    market_stage,
)

TIMEOUT_MS = 15_000
# Waits are written as functions ("() => ..."): the page's CSP forbids eval, which Playwright
# uses for a bare expression.


@pytest.fixture(autouse=True)
def _browser() -> None:
    browser_or_skip()


async def open_page(context: Any, url: str) -> tuple[Any, PageProblems]:
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = PageProblems(page)
    await page.goto(url)
    return page, problems


async def log_in(page: Any, key: str) -> None:
    await page.wait_for_selector("#login-form", state="visible")
    await page.fill("#login-key", key)
    await page.click("#login-form button[type=submit]")


async def screenshots(page: Any, name: str) -> list[Path]:
    """The page at laptop and phone widths, whole (scrolled) height."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.emulate_media(reduced_motion="reduce")  # no highlight caught mid-fade
    paths = []
    for label, size in (("laptop", LAPTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        # The charts redraw for the new width after their resize debounce.
        await page.wait_for_function(
            "w => [...document.querySelectorAll('.uplot canvas')].every("
            "c => c.offsetParent === null || c.getBoundingClientRect().width <= w)",
            arg=size["width"],
        )
        path = ARTIFACTS / f"dashboard-{name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    return paths


async def test_the_page_loads_with_no_console_errors(tmp_path: Path) -> None:
    async with market_stage(tmp_path) as stage, chromium() as context:
        page, problems = await open_page(context, stage.url)
        await page.wait_for_selector("#conn.live")
        assert await page.title() == "swarm demo \u2013 dashboard"
        assert await page.text_content("#title") == "swarm demo"
        # The demo's panels are shown, the gateway's are not; the charts are drawn.
        for panel in ("jobs", "money", "latency", "earnings", "reputation"):
            assert await page.is_visible(f"#panel-{panel}"), panel
        for panel in ("traffic", "breakers", "keys"):
            assert not await page.is_visible(f"#panel-{panel}"), panel
        assert await page.locator(".uplot canvas").count() == 2
        assert await page.is_hidden("#ask")  # asking needs the admin key: not logged in
        # Landmarks and headings a screen reader navigates by.
        assert await page.locator("header").count() == 1
        assert await page.locator("main#main").count() == 1
        assert await page.locator("nav[aria-label=Sections] a").count() == 5
        assert await page.get_attribute("#changes", "aria-live") == "polite"
        assert problems.all() == []


async def test_the_login_form_refuses_a_wrong_key_and_takes_the_admin_key(tmp_path: Path) -> None:
    async with market_stage(tmp_path, require_key=True) as stage, chromium() as context:
        page, problems = await open_page(context, stage.url)
        await log_in(page, "not-the-admin-key")
        await page.wait_for_function(
            "() => document.querySelector('#login-error').textContent.length > 0"
        )
        assert await page.text_content("#login-error") == "that is not the admin key"
        assert await page.is_hidden("#dash")
        await log_in(page, ADMIN_KEY)
        await page.wait_for_selector("#conn.live")
        assert await page.is_visible("#dash") and await page.is_hidden("#login")
        assert await page.is_visible("#logout")
        # The session cookie is out of the page's reach (HttpOnly).
        assert "swarm_dashboard" not in await page.evaluate("document.cookie")
        cookies = await context.cookies()
        (session,) = [c for c in cookies if c["name"] == "swarm_dashboard"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        await page.click("#logout")
        await page.wait_for_selector("#login-form", state="visible")
        # The refused login is the only thing the console reports (its 401 answer).
        assert problems.errors == [] and problems.failed == []
        assert all("401" in line for line in problems.console), problems.console


async def points_drawn(page: Any) -> None:
    """Wait until the charts have a closed time bucket to draw."""
    await page.wait_for_function(
        "() => [...document.querySelectorAll('figcaption')]"
        ".some(c => c.textContent.startsWith('Latest'))",
        timeout=30_000,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chat(model: str, text: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def post(
    url: str, path: str, body: dict[str, Any], key: str
) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {key}"}
        async with s.post(url + path, json=body, headers=headers) as r:
            return r.status, dict(r.headers), await r.json(content_type=None)


async def test_swarm_serve_shows_a_swarm_job_reach_agreed_and_revokes_a_key(
    tmp_path: Path,
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}/v1"  # nothing listens: its breaker opens
    config = {
        "backends": [
            {"name": "fast", "type": "mock", "models": ["llama3"], "cost_sats": 1},
            {"name": "smart", "type": "mock", "models": ["qwen"], "latency_ms": 40},
            {"name": "remote", "type": "openai", "url": down, "models": ["gpt-x"]},
        ],
        "resilience": {"circuit_breaker": {"failure_threshold": 2}},
        "keys": [
            {"name": "alice", "key": "sk-alice-key", "budget_sats": 200},
            {"name": "bob", "key": "sk-bob-key"},
        ],
    }
    # Providers that take half a second: the job is seen in flight before its quorum.
    async with (
        paid_world(tmp_path, latency_ms=500) as world,
        swarm_serve(world, config) as (_, url),
        chromium() as context,
    ):
        status, _, made = await post(url, "/admin/keys", {"name": "carol"}, ADMIN_KEY)
        assert status == 201
        page, problems = await open_page(context, url + "/dashboard/")
        await log_in(page, ADMIN_KEY)  # the gateway has keys: only the admin sees its dashboard
        await page.wait_for_selector("#conn.live")
        await page.evaluate("window.__sameDocument = true")
        asked = asyncio.create_task(
            post(
                url,
                "/v1/chat/completions",
                chat(f"swarm/{MODEL}", quorum=2, max_tokens=16),
                "sk-alice-key",
            )
        )
        await page.locator('[data-job][data-outcome="running"]').wait_for()
        status, headers, body = await asked
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == ANSWER
        job_id, cost = headers["x-swarm-job-id"], int(headers["x-swarm-cost-msats"])
        job = page.locator(f'[data-job="{job_id}"][data-outcome="reached"]')
        await job.wait_for()
        assert ANSWER in (await job.locator(".job-answer").text_content() or "")
        assert "Quorum reached" in (await job.locator(".outcome").text_content() or "")
        # Both providers agreed, and each ends paid; what went out is what the gateway charged.
        await page.wait_for_function(
            "id => [...document.querySelectorAll(`[data-job='${id}'] [data-provider]`)]"
            ".filter(c => c.dataset.state === 'paid').length === 2",
            arg=job_id,
        )
        assert cost > 0
        assert await page.text_content("#card-sats-out") == f"{cost / 1000:g}"
        assert "quorum reached" in (await page.text_content("#changes") or "")
        assert await page.evaluate("window.__sameDocument") is True  # never reloaded

        # Revoking a key the admin API made (the config's keys offer no button).
        button = page.locator('button[data-revoke="carol"]')
        await button.wait_for()
        assert await page.locator('button[data-revoke="alice"]').count() == 0
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await button.click()
        await page.wait_for_function(
            "() => document.querySelector('#keys-status').textContent === 'Key carol revoked.'"
        )
        await button.wait_for(state="detached")
        status, _, _ = await post(url, "/v1/chat/completions", chat("llama3"), made["key"])
        assert status == 401  # the revoked key stops working at once

        # Traffic for the charts and tables, spread over a few of the page's 5 s buckets.
        for i in range(12):
            await post(url, "/v1/chat/completions", chat("llama3", f"q{i}"), "sk-alice-key")
            if i % 2:
                await post(url, "/v1/chat/completions", chat("qwen", f"q{i}"), "sk-bob-key")
            if i < 3:
                await post(url, "/v1/chat/completions", chat("gpt-x"), "sk-bob-key")
            if i % 4 == 3:
                swarm = chat(f"swarm/{MODEL}", f"Capital of France? ({i})", max_tokens=16)
                await post(url, "/v1/chat/completions", swarm, "sk-alice-key")
            await asyncio.sleep(0.8)
        await page.wait_for_function(
            "() => document.querySelector('#breakers-body').textContent.includes('open')"
        )
        await points_drawn(page)
        await screenshots(page, "gateway")
        assert problems.all() == []


async def test_a_provider_nodes_earnings_change_after_a_paid_job(tmp_path: Path) -> None:
    async with (
        paid_world(tmp_path, providers=1) as world,
        provider_run(world, "--dashboard", "127.0.0.1:0") as (proc, keys, account),
        chromium() as context,
    ):
        url = (await proc.wait_for("dashboard: ")).split("dashboard: ")[1].strip()
        proc.drain()
        page, problems = await open_page(context, url)
        await page.wait_for_selector("#conn.live")
        assert await page.text_content("#title") == "provider dashboard node"
        await page.wait_for_function(
            "() => document.querySelector('#earn-paid').textContent !== '–'"
        )
        assert await page.text_content("#earn-paid") == "0 sats"
        assert await page.is_hidden("#panel-reputation") and await page.is_hidden("#ask")

        result = await world.market.ask("What is the capital of France?", providers_expected=2)
        assert result.reached and keys.public_key in result.agreeing
        # The node finds its invoice paid (it checks every 0.2 s) and its page says so.
        job = page.locator(f'[data-job="{result.job_id}"]')
        await job.locator(f'[data-provider="{keys.public_key}"][data-state="paid"]').wait_for()
        assert "Answered" in (await job.locator(".outcome").text_content() or "")
        assert ANSWER in (await job.locator(".job-answer").text_content() or "")
        received = world.market.ledger.balance(account)
        assert received > 0
        await page.wait_for_function(
            "t => document.querySelector('#earn-paid').textContent === t",
            arg=f"{received // 1000} sats",
        )
        assert await page.text_content("#earn-jobs") == "1"
        assert await page.text_content("#card-sats-in") == f"{received / 1000:g}"
        # Its model run is a request on the page, by backend and model.
        await page.wait_for_function(
            "() => document.querySelector('#traffic-body').textContent.includes('m1')"
        )
        for prompt in ("Name the capital of France.", "Which city is France's capital?"):
            await asyncio.sleep(2.5)  # a job in each of the next buckets, for the charts
            await world.market.ask(prompt, providers_expected=2)
        await page.wait_for_function(
            "() => document.querySelector('#earn-jobs').textContent === '3'"
        )
        await points_drawn(page)
        await screenshots(page, "provider")
        assert problems.all() == []


def honest_mock(index: int, model_path: str | None) -> LmBackend:
    # Slower than the liar (as a real model is), so the liar's vote is in before the quorum.
    mock = MockBackend(f"mock-{index}").with_model("m").with_response("Paris.")
    return mock.with_usage(20, 2).with_latency(300)


async def test_swarm_demo_web_asks_a_question_from_the_page(tmp_path: Path) -> None:
    terms = JobTerms(quorum=2, timeout=30)
    async with (
        web_demo(workdir=tmp_path, terms=terms, backend_factory=honest_mock) as web,
        chromium() as context,
    ):
        web.hub.bucket_s = 1.0  # points every second, for a chart worth a picture
        # The command asks its first question before anyone opens the page: it is there.
        first = await web.ask("What is the capital of France?")
        assert first.ok and first.result is not None
        page, problems = await open_page(context, web.url)
        await page.wait_for_selector("#conn.live")
        await page.locator(f'[data-job="{first.result.job_id}"][data-outcome="reached"]').wait_for()
        # Reading is open; asking changes state, so it needs the admin key the command printed.
        assert await page.is_hidden("#ask")
        await page.click("#login-open")
        await log_in(page, web.admin_key)
        await page.wait_for_selector("#ask", state="visible")
        await page.fill("#ask-prompt", "Name the capital of France.")
        await page.click("#ask-button")
        await page.wait_for_selector("#ask-answer", state="visible")
        assert await page.text_content("#ask-answer-text") == "Paris."
        assert "providers agreed" in (await page.text_content("#ask-status") or "")
        second = web.reports[-1]
        assert second.prompt == "Name the capital of France." and second.ok
        assert second.result is not None
        job = page.locator(f'[data-job="{second.result.job_id}"][data-outcome="reached"]')
        await job.wait_for()
        # The liar dissented; the agreeing were paid; the swarm's earnings and the customer's
        # reputation table are on the page.
        liar = next(p.pubkey for p in web.swarm.providers if not p.honest)
        if liar in second.result.dissenting:
            await job.locator(f'[data-provider="{liar}"][data-state="dissented"]').wait_for()
        await page.wait_for_function(
            "() => document.querySelector('#earn-jobs').textContent !== '–'"
            " && document.querySelectorAll('#reputation-body tr').length >= 2"
        )
        for prompt in ("Which city is the capital of France?", "France's capital?"):
            await asyncio.sleep(1.2)  # the next of the page's 1 s buckets, for the charts
            await web.ask(prompt)  # as the command's first question, or another page's
        await page.wait_for_function("() => document.querySelectorAll('[data-job]').length === 4")
        await points_drawn(page)
        await screenshots(page, "demo")
        assert problems.all() == []
