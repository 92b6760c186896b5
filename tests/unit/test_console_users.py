"""The console's accounts (``notifier user``), sessions, login throttling and labels (SPEC §16)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from notifier.cli import app
from notifier.ports import Role
from notifier.runtime.console.i18n import KO, negotiate
from notifier.services.users import (
    LoginPolicy,
    authenticate,
    current_session,
    login_failed,
    login_keys,
    login_locked,
    login_succeeded,
    open_session,
)
from notifier.store import SqlStore, create_store
from tests.stores import sqlite_store

CONFIG = """
[authority]
name = "Authority"
email = "takedown@authority.example"

[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"

[store]
url = "sqlite:///store.db"

[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
"""
NOW = datetime(2024, 9, 10, tzinfo=UTC)
TEMPLATES = Path(__file__).resolve().parents[2] / "notifier" / "runtime" / "console" / "templates"


def cli(config: Path, *args: str, password: str = "") -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "-c", str(config)], input=password + "\n")
    return result.exit_code, result.output


def config_in(tmp_path: Path) -> Path:
    path = tmp_path / "notifier.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


async def opened(tmp_path: Path) -> SqlStore:
    return await create_store(f"sqlite:///{tmp_path / 'store.db'}")


def test_user_add_stores_an_argon2id_hash_and_the_password_logs_in(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    assert cli(config, "user", "add", "olivia", "--role", "operator", password="a long passphrase") == (
        0,
        "olivia: added as operator\n",
    )

    async def check() -> None:
        store = await opened(tmp_path)
        try:
            user = await store.get_user("olivia")
            assert user is not None
            assert user.role is Role.OPERATOR
            assert user.password_hash.startswith("$argon2id$")
            assert await authenticate(store, "olivia", "a long passphrase") == user
            assert await authenticate(store, "olivia", "a long passphrasE") is None
            assert await authenticate(store, "nobody", "a long passphrase") is None
        finally:
            await store.close()

    asyncio.run(check())


def test_user_add_refuses_a_taken_name_a_short_password_and_a_bad_name(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    assert cli(config, "user", "add", "olivia", "--role", "viewer", password="a long passphrase")[0] == 0
    code, output = cli(config, "user", "add", "olivia", "--role", "admin", password="another passphrase")
    assert (code, "exists already" in output) == (1, True)
    code, output = cli(config, "user", "add", "kim", "--role", "viewer", password="short")
    assert (code, "at least 10 characters" in output) == (1, True)
    code, output = cli(config, "user", "add", "Bad Name", "--role", "viewer", password="a long passphrase")
    assert code == 1
    code, _ = cli(config, "user", "add", "kim", "--role", "superuser", password="a long passphrase")
    assert code == 2


def test_passwd_and_disable_end_the_users_sessions(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    assert cli(config, "user", "add", "olivia", "--role", "operator", password="first passphrase")[0] == 0

    async def session_token() -> str:
        store = await opened(tmp_path)
        try:
            user = await authenticate(store, "olivia", "first passphrase")
            assert user is not None
            return (await open_session(store, user, now=NOW, ttl=timedelta(hours=1))).token
        finally:
            await store.close()

    async def live(token: str) -> bool:
        store = await opened(tmp_path)
        try:
            return await current_session(store, token, now=NOW) is not None
        finally:
            await store.close()

    token = asyncio.run(session_token())
    assert asyncio.run(live(token))
    assert cli(config, "user", "passwd", "olivia", password="second passphrase") == (
        0,
        "olivia: password changed\n",
    )
    assert not asyncio.run(live(token))
    assert cli(config, "user", "passwd", "nobody", password="second passphrase")[0] == 1
    assert cli(config, "user", "disable", "olivia") == (0, "olivia: disabled\n")

    async def refused() -> None:
        store = await opened(tmp_path)
        try:
            assert await authenticate(store, "olivia", "second passphrase") is None
        finally:
            await store.close()

    asyncio.run(refused())


def test_enable_and_role_change_the_user_and_every_change_is_recorded_by_the_cli(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    assert cli(config, "user", "add", "olivia", "--role", "operator", password="first passphrase")[0] == 0
    assert cli(config, "user", "disable", "olivia")[0] == 0
    assert cli(config, "user", "enable", "olivia") == (0, "olivia: enabled\n")
    assert cli(config, "user", "role", "olivia", "--role", "viewer") == (0, "olivia: now viewer\n")
    assert cli(config, "user", "enable", "nobody")[0] == 1

    async def check() -> None:
        store = await opened(tmp_path)
        try:
            user = await authenticate(store, "olivia", "first passphrase")
            assert user is not None and user.role is Role.VIEWER
            events = await store.user_events(limit=10)
            assert [(e.action, e.detail, e.actor) for e in reversed(events)] == [
                ("added", "operator", "cli"),
                ("disabled", None, "cli"),
                ("enabled", None, "cli"),
                ("role", "viewer", "cli"),
            ]
        finally:
            await store.close()

    asyncio.run(check())


def test_a_session_expires_after_its_time_to_live(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    assert cli(config, "user", "add", "olivia", "--role", "viewer", password="first passphrase")[0] == 0

    async def check() -> None:
        store = await opened(tmp_path)
        try:
            user = await store.get_user("olivia")
            assert user is not None
            token = (await open_session(store, user, now=NOW, ttl=timedelta(hours=8))).token
            assert await current_session(store, token, now=NOW + timedelta(hours=7, minutes=59)) is not None
            assert await current_session(store, token, now=NOW + timedelta(hours=8)) is None
        finally:
            await store.close()

    asyncio.run(check())


POLICY = LoginPolicy(max_failures=5, lockout=timedelta(seconds=900))


def test_the_sixth_wrong_password_within_a_minute_locks_until_the_lockout_ends(tmp_path: Path) -> None:
    async def check() -> None:
        store = await sqlite_store(tmp_path)
        try:
            keys = login_keys("olivia", "10.0.0.7")
            at = NOW
            for _ in range(5):
                assert not await login_failed(store, keys, now=at, policy=POLICY)
                at += timedelta(seconds=10)
            assert not await login_locked(store, keys, now=at)
            assert await login_failed(store, keys, now=at, policy=POLICY)
            assert await login_locked(store, keys, now=at)
            assert await login_locked(store, ["addr:10.0.0.7"], now=at)
            assert await login_locked(store, keys, now=at + timedelta(seconds=899))
            assert not await login_locked(store, keys, now=at + timedelta(seconds=901))
        finally:
            await store.close()

    asyncio.run(check())


def test_wrong_passwords_more_than_a_minute_apart_never_lock(tmp_path: Path) -> None:
    async def check() -> None:
        store = await sqlite_store(tmp_path)
        try:
            at = NOW
            for _ in range(20):
                assert not await login_failed(store, ["user:olivia"], now=at, policy=POLICY)
                at += timedelta(seconds=13)  # five in 52 s, the sixth 65 s after the first
            assert not await login_locked(store, ["user:olivia"], now=at)
        finally:
            await store.close()

    asyncio.run(check())


def test_a_right_password_forgets_the_wrong_ones_before_it(tmp_path: Path) -> None:
    async def check() -> None:
        store = await sqlite_store(tmp_path)
        try:
            keys = login_keys("olivia", "10.0.0.7")
            for _ in range(5):
                assert not await login_failed(store, keys, now=NOW, policy=POLICY)
            await login_succeeded(store, keys)
            for _ in range(5):
                assert not await login_failed(store, keys, now=NOW, policy=POLICY)
            assert not await login_locked(store, keys, now=NOW)
        finally:
            await store.close()

    asyncio.run(check())


def test_every_label_the_templates_use_has_its_korean() -> None:
    labels: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        labels |= set(re.findall(r'_\("([^"]+)"\)', template.read_text(encoding="utf-8")))
    assert labels
    assert sorted(labels - set(KO)) == []


def test_the_language_is_the_users_setting_then_accept_language_then_english() -> None:
    assert negotiate("ko", "en-US") == "ko"
    assert negotiate(None, "ko-KR,ko;q=0.9,en;q=0.8") == "ko"
    assert negotiate(None, "en;q=0.9,ko;q=0.4") == "en"
    assert negotiate(None, "fr-FR") == "en"
    assert negotiate(None, "") == "en"
