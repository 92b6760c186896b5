"""The operations console in real headless Chromium (Debian's ``chromium``, driven by Playwright with
its ``executable_path``; no browser is downloaded): an operator's round, a viewer's, the Korean
interface, and the screenshots in ``docs/``.

Set ``NOTIFIER_SCREENSHOTS=docs`` to write the screenshots where the README shows them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page, async_playwright

from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.store import SqlStore
from tests.chromium import find_chromium, png_size
from tests.console_seed import NOW, PASSWORD, console_app, console_deps, seed
from tests.stores import sqlite_store

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@dataclass
class Console:
    base: str
    store: SqlStore
    ids: dict[str, str]
    context: BrowserContext
    foreign: list[str]
    refused: list[str]

    async def login(self, username: str, password: str = PASSWORD) -> Page:
        page = await self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda r: None if r.url.startswith(self.base) else self.foreign.append(r.url))
        page.on(
            "console", lambda m: self.refused.append(m.text) if "Content Security Policy" in m.text else None
        )
        await page.goto(f"{self.base}/console/queue")
        assert page.url == f"{self.base}/console/login"
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", password)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{self.base}/console/")
        return page


async def _console(tmp_path: Path, locale: str) -> AsyncIterator[Console]:
    binary = find_chromium()
    store = await sqlite_store(tmp_path)
    ids = await seed(store, tmp_path / "outbox")
    server = TestServer(console_app(console_deps(store, tmp_path / "outbox", SimulatedClock(NOW))))
    await server.start_server()
    profile = tmp_path / "profile"
    profile.mkdir()
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=binary,
                headless=True,
                args=FLAGS,
                locale=locale,
                viewport={"width": 1360, "height": 900},
                env={**os.environ, "HOME": str(profile)},
            )
            try:
                yield Console(
                    base=str(server.make_url("")).rstrip("/"),
                    store=store,
                    ids=ids,
                    context=context,
                    foreign=[],
                    refused=[],
                )
            finally:
                await context.close()
    finally:
        await server.close()
        await store.close()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async for opened in _console(tmp_path, "en-GB"):
        yield opened


@pytest.fixture
async def korean(tmp_path: Path) -> AsyncIterator[Console]:
    async for opened in _console(tmp_path, "ko-KR"):
        yield opened


def shots() -> Path | None:
    folder = os.environ.get("NOTIFIER_SCREENSHOTS")
    return Path(folder) if folder else None


async def test_an_operator_finds_a_breached_notice_reads_it_and_records_a_portal_submission(
    console: Console, tmp_path: Path
) -> None:
    page = await console.login("olivia")
    folder = shots() or tmp_path
    await page.screenshot(path=str(folder / "console-overview.png"), full_page=True)
    assert png_size(folder / "console-overview.png")[0] >= 1200
    # The overview counts the breached notice on its platform's row; the count leads to it.
    row = page.locator("tr[data-platform=telegram]")
    await row.locator("a.breached-link").click()
    await page.click(f"text={console.ids['breached']}")
    await page.wait_for_url(f"**/console/notices/{console.ids['breached']}")
    timeline = await page.locator("#timeline tbody tr").all_inner_texts()
    kinds = [line.split("\t")[2] for line in timeline]
    assert kinds == ["created", "attempt", "receipt", "reminder", "acknowledgement bound breached"]
    assert "250" in timeline[1]
    assert "184 ms" in timeline[1]
    assert "TG-55821" in timeline[2]
    deadlines = await page.locator("#deadlines").inner_text()
    assert "2024-09-09 23:00:00 UTC" in deadlines  # delivered 40 h ago with a 36 h bound
    assert "KST" in deadlines
    await page.screenshot(path=str(folder / "console-notice.png"), full_page=True)
    # The work queue: a portal notice awaiting submission, its files, and the form to record it.
    await page.click("nav >> text=Work queue")
    portal = console.ids["portal"]
    queued = page.locator(f"tr[data-notice='{portal}']")
    assert "notice.txt" in await queued.inner_text()
    await queued.locator("input[name=ticket]").fill("CS-4410")
    await queued.locator("button[type=submit]").click()
    await page.wait_for_url(f"**/console/notices/{portal}")
    assert await page.locator("#notice-state").inner_text() == "delivered"
    assert await page.locator("#notice-ticket").inner_text() == "CS-4410"
    [notice] = await console.store.get_notices([portal])
    assert (notice.state, notice.ticket) == (NoticeState.DELIVERED, "CS-4410")
    await page.click("nav >> text=Work queue")
    assert await page.locator(f"tr[data-notice='{portal}']").count() == 0
    assert console.foreign == []
    assert console.refused == []


async def test_a_viewer_sees_the_same_pages_and_no_form_that_changes_anything(console: Console) -> None:
    page = await console.login("victor")
    paths = [
        "/console/",
        "/console/queue",
        f"/console/notices/{console.ids['breached']}",
        f"/console/notices/{console.ids['portal']}",
        f"/console/notices/{console.ids['failed']}",
        "/console/search?q=kcsc-2024",
        "/console/report",
    ]
    for path in paths:
        response = await page.goto(f"{console.base}{path}")
        assert response is not None
        assert response.status == 200, path
        actions = await page.eval_on_selector_all(
            "form[method=post]", "forms => forms.map(f => f.getAttribute('action'))"
        )
        assert set(actions) <= {"/console/logout", "/console/language"}, (path, actions)
    await page.goto(f"{console.base}/console/queue")
    assert console.ids["portal"] in await page.locator("#awaiting").inner_text()
    assert console.ids["failed"] in await page.locator("#failed").inner_text()
    assert console.foreign == []


async def test_the_korean_interface_renders_korean_labels(korean: Console) -> None:
    page = await korean.login("olivia")
    assert await page.locator("html").get_attribute("lang") == "ko"
    header = await page.locator("table.grid thead").inner_text()
    for label in ("플랫폼", "기한 위반", "기한 임박", "오늘 전달"):
        assert label in header
    assert "개요" in await page.locator("nav").inner_text()
    await page.goto(f"{korean.base}/console/notices/{korean.ids['breached']}")
    assert "경과" in await page.locator("h2").all_inner_texts()
    # The user's own choice wins over the browser's language.
    await page.click("header form[action='/console/language'] button")
    await page.wait_for_url(f"{korean.base}/console/")
    assert "Overview" in await page.locator("nav").inner_text()


async def test_an_admin_adds_a_user_who_then_logs_in(console: Console) -> None:
    page = await console.login("ada")
    await page.click("nav >> text=Users")
    await page.wait_for_url(f"{console.base}/console/users")
    form = page.locator("#add-user-form")
    await form.locator("input[name=username]").fill("minji")
    await form.locator("select[name=role]").select_option("operator")
    await form.locator("input[name=password]").fill("minji's first passphrase")
    await form.locator("button").click()
    await page.wait_for_url(f"{console.base}/console/users")
    assert "operator" in await page.locator("tr[data-user=minji]").inner_text()
    history = await page.locator("#account-history tbody tr").first.inner_text()
    assert "console:ada" in history
    assert "minji" in history
    await page.click("header form[action='/console/logout'] button")
    await page.wait_for_url(f"{console.base}/console/login")
    await page.close()
    await console.context.clear_cookies()
    joined = await console.login("minji", "minji's first passphrase")
    assert "minji" in await joined.locator("header .who").inner_text()
    assert await joined.locator("#nav-users").count() == 0  # an operator manages no users
    assert console.foreign == []
    assert console.refused == []
