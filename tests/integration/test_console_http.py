"""The operations console over HTTP (SPEC §16): the aiohttp app on a seeded SQLite store, driven by
aiohttp's client as a browser would, cookies and forms included."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.validation import Vocabulary
from notifier.intake.memory import MemoryQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.runtime.console.setup import secure_cookies
from notifier.runtime.http import build_http_app
from notifier.services.monitoring import OpenItemsMonitor
from notifier.settings import load_settings
from notifier.store import SqlStore
from tests.console_seed import NOW, PASSWORD, console_app, console_deps, seed
from tests.stores import sqlite_store

Client = TestClient[web.Request, web.Application]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await sqlite_store(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def ids(store: SqlStore, tmp_path: Path) -> dict[str, str]:
    return await seed(store, tmp_path / "outbox")


@pytest.fixture
async def client(store: SqlStore, ids: dict[str, str], tmp_path: Path) -> AsyncIterator[Client]:
    deps = console_deps(store, tmp_path / "outbox", SimulatedClock(NOW))
    async with TestClient(TestServer(console_app(deps))) as opened:
        yield opened


async def login(client: Client, username: str, password: str = PASSWORD) -> ClientResponse:
    page = await client.get("/console/login")
    token = CSRF.search(await page.text())
    assert token is not None
    return await client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        allow_redirects=False,
    )


async def logged_in(client: Client, username: str) -> str:
    """Log in; the session's CSRF token, read off the overview."""
    response = await login(client, username)
    assert response.status == 303, await response.text()
    page = await client.get("/console/")
    token = CSRF.search(await page.text())
    assert token is not None
    return token.group(1)


def pages(ids: dict[str, str]) -> list[str]:
    portal = ids["portal"]
    return [
        "/console/",
        "/console/queue",
        f"/console/notices/{ids['breached']}",
        f"/console/notices/{portal}/files/notice.txt",
        "/console/breached?platform=telegram",
        "/console/search?q=kcsc",
        "/console/report",
        "/console/report.csv",
        "/console/report.json",
        "/console/report.html",
        "/console/users",
    ]


def forms(ids: dict[str, str]) -> list[str]:
    return [
        f"/console/notices/{ids['portal']}/ack",
        f"/console/notices/{ids['failed']}/retry",
        "/console/language",
        "/console/logout",
        "/console/users",
        "/console/users/olivia/disable",
    ]


async def test_every_page_and_form_without_a_session_sends_the_browser_to_the_login_page(
    client: Client, ids: dict[str, str]
) -> None:
    for path in pages(ids):
        response = await client.get(path, headers={"Accept": "text/html"}, allow_redirects=False)
        assert (response.status, response.headers.get("Location")) == (302, "/console/login"), path
    for path in forms(ids):
        response = await client.post(
            path, data={"status": "submitted"}, headers={"Accept": "text/html"}, allow_redirects=False
        )
        assert (response.status, response.headers.get("Location")) == (302, "/console/login"), path


async def test_a_request_for_something_other_than_html_without_a_session_is_answered_401(
    client: Client, ids: dict[str, str]
) -> None:
    for path in pages(ids):
        response = await client.get(path, headers={"Accept": "application/json"}, allow_redirects=False)
        assert response.status == 401, path


async def test_an_operator_logs_in_and_reads_the_overview_with_the_breached_notice(
    client: Client, ids: dict[str, str]
) -> None:
    response = await login(client, "olivia")
    assert (response.status, response.headers["Location"]) == (303, "/console/")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console/" in cookie
    assert "Max-Age=28800" in cookie
    page = await (await client.get("/console/")).text()
    assert 'href="/console/breached?platform=telegram">1</a>' in page
    breached = await (await client.get("/console/breached?platform=telegram")).text()
    assert ids["breached"] in breached
    assert ids["fresh"] not in breached


async def test_the_session_cookie_is_secure_off_loopback(
    store: SqlStore, ids: dict[str, str], tmp_path: Path
) -> None:
    deps = console_deps(store, tmp_path / "outbox", SimulatedClock(NOW), secure=True)
    async with TestClient(TestServer(console_app(deps))) as client:
        page = await client.get("/console/login")
        assert "Secure" in page.headers["Set-Cookie"]
        # A browser would not send a Secure cookie over plain HTTP; this client is told to.
        token = page.cookies["notifier_console_login"].value
        response = await client.post(
            "/console/login",
            data={"username": "olivia", "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"notifier_console_login={token}"},
            allow_redirects=False,
        )
        assert response.status == 303
        assert "Secure" in response.headers["Set-Cookie"]


async def test_a_post_without_a_valid_csrf_token_is_refused_403_and_changes_nothing(
    client: Client, store: SqlStore, ids: dict[str, str]
) -> None:
    await logged_in(client, "olivia")
    path = f"/console/notices/{ids['portal']}/ack"
    for data in ({"status": "submitted", "ticket": "T-1"}, {"status": "submitted", "csrf_token": "forged"}):
        response = await client.post(path, data=data, allow_redirects=False)
        assert response.status == 403
    retry = await client.post(f"/console/notices/{ids['failed']}/retry", data={}, allow_redirects=False)
    assert retry.status == 403
    portal, failed = await store.get_notices([ids["portal"], ids["failed"]])
    assert (portal.state, portal.ticket) == (NoticeState.AWAITING_SUBMISSION, None)
    assert failed.state is NoticeState.FAILED


async def test_a_viewer_reads_every_page_but_their_post_is_refused_403_and_changes_nothing(
    client: Client, store: SqlStore, ids: dict[str, str]
) -> None:
    token = await logged_in(client, "victor")
    for path in pages(ids):
        # Every page but the users', which is for admins.
        assert (await client.get(path)).status == (403 if path == "/console/users" else 200), path
    notice_page = await (await client.get(f"/console/notices/{ids['portal']}")).text()
    assert "/ack" not in notice_page
    assert "/retry" not in (await (await client.get("/console/queue")).text())
    response = await client.post(
        f"/console/notices/{ids['portal']}/ack",
        data={"status": "submitted", "ticket": "T-9", "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 403
    retry = await client.post(
        f"/console/notices/{ids['failed']}/retry", data={"csrf_token": token}, allow_redirects=False
    )
    assert retry.status == 403
    portal, failed = await store.get_notices([ids["portal"], ids["failed"]])
    assert portal.state is NoticeState.AWAITING_SUBMISSION
    assert failed.state is NoticeState.FAILED


async def test_the_sixth_wrong_password_in_a_minute_locks_the_user_and_is_logged_without_it(
    client: Client,
) -> None:
    with capture_logs() as logs:
        for _ in range(5):
            assert (await login(client, "olivia", "wrong-password-123")).status == 401
        assert (await login(client, "olivia", "wrong-password-123")).status == 429
        # Locked: the right password is refused too.
        refused = await login(client, "olivia", PASSWORD)
        assert refused.status == 429
        assert "Set-Cookie" not in refused.headers or "notifier_console=" not in refused.headers["Set-Cookie"]
    assert [e["event"] for e in logs if e["event"] == "console.login_locked"] == ["console.login_locked"]
    locked = next(e for e in logs if e["event"] == "console.login_locked")
    assert locked["username"] == "olivia"
    text = repr(logs)
    assert "wrong-password-123" not in text
    assert PASSWORD not in text


async def test_a_session_cookie_is_refused_after_logout(client: Client) -> None:
    token = await logged_in(client, "olivia")
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/console/"))["notifier_console"].value
    response = await client.post("/console/logout", data={"csrf_token": token}, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/console/login")
    again = await client.get(
        "/console/", headers={"Cookie": f"notifier_console={cookie}"}, allow_redirects=False
    )
    assert (again.status, again.headers["Location"]) == (302, "/console/login")


async def test_an_operator_records_a_submission_and_an_acknowledgement_under_their_name(
    client: Client, store: SqlStore, ids: dict[str, str]
) -> None:
    token = await logged_in(client, "olivia")
    with capture_logs() as logs:
        response = await client.post(
            f"/console/notices/{ids['portal']}/ack",
            data={"status": "submitted", "ticket": "CS-4410", "csrf_token": token},
            allow_redirects=False,
        )
        assert (response.status, response.headers["Location"]) == (303, f"/console/notices/{ids['portal']}")
        ack = await client.post(
            f"/console/notices/{ids['breached']}/ack",
            data={"status": "removed", "note": "victim Kim called twice", "csrf_token": token},
            allow_redirects=False,
        )
        assert ack.status == 303
    [portal] = await store.get_notices([ids["portal"]])
    assert (portal.state, portal.ticket, portal.delivered_at) == (NoticeState.DELIVERED, "CS-4410", NOW)
    [history] = await store.ack_history(ids["breached"], limit=10)
    assert (history.source, history.status, history.note) == (
        "console:olivia",
        "removed",
        "victim Kim called twice",
    )
    assert any(e.get("actor") == "console:olivia" for e in logs)
    assert "victim Kim" not in repr(logs)
    page = await (await client.get(f"/console/notices/{ids['breached']}")).text()
    assert "console:olivia" in page
    assert "victim Kim called twice" in page


async def test_an_invalid_acknowledgement_is_shown_on_the_notice_page_and_changes_nothing(
    client: Client, store: SqlStore, ids: dict[str, str]
) -> None:
    token = await logged_in(client, "olivia")
    response = await client.post(
        f"/console/notices/{ids['fresh']}/ack",
        data={"status": "received", "at": "2030-01-01T00:00:00Z", "csrf_token": token},
    )
    assert response.status == 400
    assert "is in the future" in await response.text()
    assert await store.ack_history(ids["fresh"], limit=10) == []


async def test_pages_forbid_inline_script_and_load_nothing_from_another_origin(
    client: Client, ids: dict[str, str]
) -> None:
    await logged_in(client, "olivia")
    for path in pages(ids)[:3]:
        response = await client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        body = await response.text()
        assert "<script>" not in body
        assert re.search(r'(src|href)="(https?:)?//', body) is None, path


async def test_the_interface_speaks_korean_to_a_korean_browser(client: Client) -> None:
    await logged_in(client, "olivia")
    page = await (
        await client.get("/console/", headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
    ).text()
    assert "기한 위반" in page
    assert '<html lang="ko">' in page
    english = await (await client.get("/console/", headers={"Accept-Language": "en-US"})).text()
    assert "Breached" in english


async def test_the_daemons_http_app_serves_the_console_beside_its_own_endpoints(
    store: SqlStore, ids: dict[str, str], tmp_path: Path
) -> None:
    clock = SimulatedClock(NOW)
    deps = console_deps(store, tmp_path / "outbox", clock)
    queue = MemoryQueue()
    app = build_http_app(
        intake=IntakeService(
            store=store,
            queue=queue,
            queue_name="takedown.requests",
            vocabulary=Vocabulary(platforms=("telegram",), categories={"deepfake_sexual_abuse"}),
            clock=clock,
            metrics=Metrics(),
        ),
        store=store,
        queue=queue,
        metrics_=Metrics(),
        intake_token=None,
        acks=deps.acks,
        clock=clock,
        callback_secrets={},
        open_items=OpenItemsMonitor(
            store=store, clock=clock, platforms=("telegram",), collector=Metrics().open_items
        ),
        console=deps,
    )
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/console/login")).status == 200
        assert "Content-Security-Policy" not in (await client.get("/healthz")).headers
        response = await login(client, "olivia")
        assert response.status == 303


MINIMAL = """
[authority]
name = "Authority"
email = "takedown@authority.example"

[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"

[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
"""


def test_cookies_are_secure_unless_the_console_listens_on_loopback(tmp_path: Path) -> None:
    cases = {
        "": False,  # on http.listen, 127.0.0.1:8080
        '[console]\nlisten = "0.0.0.0:8443"\n': True,
        '[console]\nlisten = "127.0.0.1:8081"\n': False,
        '[console]\nlisten = "127.0.0.1:8081"\nsecure_cookies = "always"\n': True,
    }
    path = tmp_path / "notifier.toml"
    for extra, expected in cases.items():
        path.write_text(MINIMAL + extra, encoding="utf-8")
        assert secure_cookies(load_settings(path, {})) is expected, extra
