"""The dashboard in headless Chromium (Debian's, driven by Playwright): it loads clean, follows a
real swarm job to its agreed answer without a reload, shows a provider's earnings change after a
paid job, logs in with the admin key (and refuses a wrong one), and asks a question from the demo
page. Screenshots of each page at laptop and phone widths go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import client, gateway, user

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


async def test_a_swarm_job_appears_and_reaches_agreed_without_a_reload(tmp_path: Path) -> None:
    async with market_stage(tmp_path) as stage, chromium() as context:
        page, problems = await open_page(context, stage.url)
        await page.wait_for_selector("#conn.live")
        await page.evaluate("window.__sameDocument = true")
        result = await stage.ask("What is the capital of France?")
        job = page.locator(f'[data-job="{result.job_id}"]')
        await job.and_(page.locator('[data-outcome="reached"]')).wait_for()
        assert ANSWER in (await job.locator(".job-answer").text_content() or "")
        assert "Quorum reached" in (await job.locator(".outcome").text_content() or "")
        # Each agreeing provider ends paid; the page announced the quorum in its live log.
        await page.wait_for_function(
            "id => [...document.querySelectorAll(`[data-job='${id}'] [data-provider]`)]"
            ".filter(c => c.dataset.state === 'paid').length === 2",
            arg=result.job_id,
        )
        log = await page.text_content("#changes") or ""
        assert "quorum reached" in log
        assert await page.evaluate("window.__sameDocument") is True  # never reloaded
        assert await page.text_content("#card-reached") == "1"
        assert problems.all() == []


async def test_a_providers_earnings_change_after_a_paid_job(tmp_path: Path) -> None:
    async with market_stage(tmp_path, kind="provider") as stage, chromium() as context:
        page, problems = await open_page(context, stage.url)
        await page.wait_for_selector("#conn.live")
        await page.wait_for_function(
            "() => document.querySelector('#earn-paid').textContent !== '–'"
        )
        before = await page.text_content("#earn-paid")
        assert before == "0 sats"
        await stage.ask()
        node = stage.sellers[0].node
        await node.check_invoices()  # the node sees its invoice paid now, not at its next round
        paid = node.earnings().paid_msats
        assert paid > 0
        expected = f"{paid // 1000} sats"
        await page.wait_for_function(
            "t => document.querySelector('#earn-paid').textContent === t", arg=expected
        )
        assert await page.is_visible("#panel-earnings")
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


async def test_the_demo_page_asks_a_question_and_shows_the_agreed_answer(tmp_path: Path) -> None:
    async with market_stage(tmp_path) as stage, chromium() as context:
        page, problems = await open_page(context, stage.url)
        await page.wait_for_selector("#conn.live")
        # Reading is open; asking changes state, so it needs the admin key (the demo prints it).
        assert await page.is_hidden("#ask")
        await page.click("#login-open")
        await log_in(page, ADMIN_KEY)
        await page.wait_for_selector("#ask", state="visible")
        assert await page.is_hidden("#login") and await page.is_hidden("#login-open")
        await page.fill("#ask-prompt", "What is the capital of France?")
        await page.click("#ask-button")
        await page.wait_for_selector("#ask-answer", state="visible")
        assert await page.text_content("#ask-answer-text") == ANSWER
        assert "2 providers agreed" in (await page.text_content("#ask-status") or "")
        (result,) = stage.results
        job = page.locator(f'[data-job="{result.job_id}"][data-outcome="reached"]')
        await job.wait_for()
        assert problems.all() == []


async def test_screenshots_of_each_page(tmp_path: Path) -> None:
    """Demo, provider and gateway pages at 1366x768 and 390x844, with data on them."""
    written: list[Path] = []
    for part in ("demo", "provider", "gateway"):
        (tmp_path / part).mkdir()
    async with chromium() as context:
        async with market_stage(tmp_path / "demo") as stage:
            page, problems = await open_page(context, stage.url)
            await page.click("#login-open")
            await log_in(page, ADMIN_KEY)
            await page.wait_for_selector("#ask", state="visible")
            for prompt in ("What is the capital of France?", "Name the capital of France."):
                await page.fill("#ask-prompt", prompt)
                await page.click("#ask-button")
                await page.wait_for_selector("#ask-answer", state="visible")
                await page.evaluate("document.getElementById('ask-answer').hidden = true")
            await page.evaluate("document.getElementById('ask-answer').hidden = false")
            await stage.ask("Which city is the capital of France?")
            await page.wait_for_function(
                "() => document.querySelectorAll('[data-job]').length === 3"
            )
            await points_drawn(page)
            written += await screenshots(page, "demo")
            assert problems.all() == []
            await page.close()
        async with market_stage(tmp_path / "provider", kind="provider") as stage:
            page, problems = await open_page(context, stage.url)
            await page.wait_for_selector("#conn.live")
            for _ in range(2):
                await stage.ask()
            await stage.sellers[0].node.check_invoices()
            await page.wait_for_function(
                "() => document.querySelector('#earn-jobs').textContent === '2'"
            )
            await points_drawn(page)
            written += await screenshots(page, "provider")
            assert problems.all() == []
            await page.close()
        written += await gateway_screenshots(context, tmp_path / "gateway")
    assert all(p.stat().st_size > 10_000 for p in written), written


async def points_drawn(page: Any) -> None:
    """Wait until the charts have a closed time bucket to draw."""
    await page.wait_for_function(
        "() => [...document.querySelectorAll('figcaption')]"
        ".some(c => c.textContent.startsWith('Latest'))"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def gateway_screenshots(context: Any, tmp: Path) -> list[Path]:
    down = f"http://127.0.0.1:{_closed_port()}/v1"  # nothing listens: its breaker opens
    cfg = {
        "backends": [
            {"name": "fast", "type": "mock", "models": ["llama3"], "cost_sats": 1},
            {"name": "smart", "type": "mock", "models": ["qwen"], "latency_ms": 40},
            {"name": "remote", "type": "openai", "url": down, "models": ["gpt-x"]},
        ],
        "resilience": {"circuit_breaker": {"failure_threshold": 2}},
        "keys": [
            {"name": "alice", "key": "sk-alice-key", "budget_sats": 50},
            {"name": "bob", "key": "sk-bob-key"},
        ],
        "admin": {"key_env": "GATEWAY_ADMIN_KEY"},
        "state": {"url": f"sqlite:///{tmp / 'state.sqlite'}"},
    }
    async with gateway(cfg, env={"GATEWAY_ADMIN_KEY": ADMIN_KEY}) as gw:
        gw.dashboard_hub.bucket_s = 1.0  # points every second, for a chart worth a picture
        alice, bob = client(gw, "sk-alice-key"), client(gw, "sk-bob-key")
        page, problems = await open_page(context, gw.url + "/dashboard/")
        await log_in(page, ADMIN_KEY)
        await page.wait_for_selector("#conn.live")
        for i in range(12):
            await alice.chat.completions.create(model="llama3", messages=user(f"q{i}"))
            if i % 2:
                await bob.chat.completions.create(model="qwen", messages=user(f"q{i}"))
            if i < 3:
                async with aiohttp.ClientSession() as s:
                    await s.post(
                        gw.url + "/v1/chat/completions",
                        json={"model": "gpt-x", "messages": user("q")},
                        headers={"Authorization": "Bearer sk-bob-key"},
                    )
            await asyncio.sleep(0.25)  # spread the traffic over a few chart buckets
        await page.wait_for_function(
            "() => document.querySelector('#breakers-body').textContent.includes('open')"
        )
        await points_drawn(page)
        paths = await screenshots(page, "gateway")
        assert problems.all() == []
        await page.close()
    return paths
