"""Admins manage the console's users in the browser (SPEC §16), and login lockouts hold across
daemon processes: the aiohttp app on a seeded SQLite store, driven over HTTP as a browser would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.ports import Role
from notifier.services.users import authenticate
from notifier.store import SqlStore
from tests.console_seed import NOW, PASSWORD, console_app, console_deps, seed
from tests.integration.test_console_http import logged_in, login
from tests.stores import sqlite_store

Client = TestClient[web.Request, web.Application]
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await sqlite_store(tmp_path)
    try:
        await seed(opened, tmp_path / "outbox")
        yield opened
    finally:
        await opened.close()


def server(store: SqlStore, folder: Path) -> TestServer:
    """The console as one daemon process serves it, over ``store``."""
    return TestServer(console_app(console_deps(store, folder, SimulatedClock(NOW))))


@pytest.fixture
async def client(store: SqlStore, tmp_path: Path) -> AsyncIterator[Client]:
    async with TestClient(server(store, tmp_path)) as c:
        yield c


async def test_an_admin_lists_the_users_and_no_one_else_reaches_the_page(
    client: Client, tmp_path: Path, store: SqlStore
) -> None:
    await logged_in(client, "ada")
    page = await client.get("/console/users")
    assert page.status == 200
    text = await page.text()
    for name in ("ada", "olivia", "victor"):
        assert f'data-user="{name}"' in text
    assert 'id="nav-users"' in text
    for name in ("olivia", "victor"):
        async with TestClient(
            TestServer(console_app(console_deps(store, tmp_path, SimulatedClock(NOW))))
        ) as other:
            await logged_in(other, name)
            overview = await (await other.get("/console/")).text()
            assert 'id="nav-users"' not in overview
            assert (await other.get("/console/users")).status == 403


async def test_a_viewers_or_operators_post_to_the_users_forms_is_refused_and_changes_nothing(
    store: SqlStore, tmp_path: Path
) -> None:
    before = await store.user_events(limit=10)
    for name in ("olivia", "victor"):
        async with TestClient(
            TestServer(console_app(console_deps(store, tmp_path, SimulatedClock(NOW))))
        ) as c:
            token = await logged_in(c, name)
            added = await c.post(
                "/console/users",
                data={"username": "mallory", "role": "admin", "password": NEW_PASSWORD, "csrf_token": token},
                allow_redirects=False,
            )
            assert added.status == 403
            disabled = await c.post(
                "/console/users/ada/disable", data={"csrf_token": token}, allow_redirects=False
            )
            assert disabled.status == 403
    assert await store.get_user("mallory") is None
    ada = await store.get_user("ada")
    assert ada is not None and not ada.disabled
    assert await store.user_events(limit=10) == before


async def test_an_admins_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: Client, store: SqlStore
) -> None:
    await logged_in(client, "ada")
    response = await client.post(
        "/console/users",
        data={"username": "mallory", "role": "admin", "password": NEW_PASSWORD},
        allow_redirects=False,
    )
    assert response.status == 403
    assert await store.get_user("mallory") is None


async def test_an_admin_adds_a_user_who_logs_in_and_the_change_is_recorded_with_the_admin(
    client: Client, store: SqlStore
) -> None:
    token = await logged_in(client, "ada")
    with capture_logs() as logs:
        response = await client.post(
            "/console/users",
            data={"username": "minji", "role": "operator", "password": NEW_PASSWORD, "csrf_token": token},
            allow_redirects=False,
        )
    assert (response.status, response.headers["Location"]) == (303, "/console/users")
    minji = await authenticate(store, "minji", NEW_PASSWORD)
    assert minji is not None and minji.role is Role.OPERATOR
    event = (await store.user_events(limit=1))[0]
    assert (event.actor, event.username, event.action) == ("console:ada", "minji", "added")
    assert event.detail == "operator"
    added = next(e for e in logs if e["event"] == "user.added")
    assert (added["username"], added["actor"]) == ("minji", "console:ada")
    assert NEW_PASSWORD not in repr(logs)
    page = await (await client.get("/console/users")).text()
    assert 'data-user="minji"' in page
    assert "console:ada" in page
    assert NEW_PASSWORD not in page


async def test_an_admin_changes_a_role_disables_enables_and_resets_a_password(
    client: Client, store: SqlStore, tmp_path: Path
) -> None:
    async with TestClient(
        TestServer(console_app(console_deps(store, tmp_path, SimulatedClock(NOW))))
    ) as olivia:
        await logged_in(olivia, "olivia")
        token = await logged_in(client, "ada")

        async def post(path: str, **fields: str) -> int:
            response = await client.post(path, data={**fields, "csrf_token": token}, allow_redirects=False)
            return response.status

        assert await post("/console/users/olivia/role", role="viewer") == 303
        changed = await store.get_user("olivia")
        assert changed is not None and changed.role is Role.VIEWER
        # A new role ends the user's sessions: they log in again with it.
        assert (await olivia.get("/console/", allow_redirects=False)).status == 302

        assert await post("/console/users/olivia/disable") == 303
        assert (await login(olivia, "olivia")).status == 401
        assert await post("/console/users/olivia/enable") == 303
        assert (await login(olivia, "olivia")).status == 303

        assert await post("/console/users/olivia/password", password=NEW_PASSWORD) == 303
        assert await authenticate(store, "olivia", PASSWORD) is None
        assert await authenticate(store, "olivia", NEW_PASSWORD) is not None

    events = await store.user_events(limit=4)
    assert [(e.action, e.detail) for e in reversed(events)] == [
        ("role", "viewer"),
        ("disabled", None),
        ("enabled", None),
        ("password", None),
    ]
    assert {e.actor for e in events} == {"console:ada"}


async def test_bad_input_is_refused_with_what_was_wrong_and_an_admin_cannot_lock_themselves_out(
    client: Client, store: SqlStore
) -> None:
    token = await logged_in(client, "ada")
    before = await store.user_events(limit=10)
    cases = [
        ("/console/users", {"username": "minji", "role": "operator", "password": "short"}, "at least 10"),
        ("/console/users", {"username": "olivia", "role": "viewer", "password": NEW_PASSWORD}, "exists"),
        ("/console/users", {"username": "Min Ji", "role": "viewer", "password": NEW_PASSWORD}, "user name"),
        ("/console/users", {"username": "minji", "role": "root", "password": NEW_PASSWORD}, "role: one of"),
        ("/console/users/nobody/disable", {}, "no such user"),
        ("/console/users/ada/disable", {}, "your own account"),
        ("/console/users/ada/role", {"role": "viewer"}, "your own account"),
    ]
    for path, fields, reason in cases:
        response = await client.post(path, data={**fields, "csrf_token": token}, allow_redirects=False)
        assert response.status == 400, path
        assert reason in await response.text(), (path, reason)
    assert await store.get_user("minji") is None
    ada = await store.get_user("ada")
    assert ada is not None and ada.role is Role.ADMIN and not ada.disabled
    assert await store.user_events(limit=10) == before


async def test_the_sixth_wrong_password_is_locked_on_another_daemon_process_over_the_same_store(
    tmp_path: Path,
) -> None:
    # Two daemon processes over one store: two applications, two connection pools to one database.
    first_store = await sqlite_store(tmp_path)
    await seed(first_store, tmp_path / "outbox")
    second_store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    await second_store.open()
    try:
        async with (
            TestClient(server(first_store, tmp_path)) as first,
            TestClient(server(second_store, tmp_path)) as second,
        ):
            for _ in range(5):
                assert (await login(first, "olivia", "wrong-password-123")).status == 401
            with capture_logs() as logs:
                assert (await login(second, "olivia", "wrong-password-123")).status == 429
                # Locked on both: the right password too.
                assert (await login(second, "olivia")).status == 429
                assert (await login(first, "olivia")).status == 429
            assert [e["event"] for e in logs if e["event"].startswith("console.login")] == [
                "console.login_locked",
                "console.login_refused",
                "console.login_refused",
            ]
            assert "wrong-password-123" not in repr(logs)
    finally:
        await second_store.close()
        await first_store.close()


async def test_the_users_page_speaks_korean_to_a_korean_browser(client: Client) -> None:
    await logged_in(client, "ada")
    page = await (await client.get("/console/users", headers={"Accept-Language": "ko-KR,ko;q=0.9"})).text()
    for label in ("사용자 추가", "역할 변경", "비밀번호 재설정", "계정 변경 기록", "운영자"):
        assert label in page
