"""The console's staff accounts and sessions (SPEC §16): ``notifier user`` and the login page.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommendation); a
session is a random token in the browser's cookie and its SHA-256 in the store. No password, hash
or token is ever logged. Every change to an account is recorded in the store with who made it
(``actor``: ``cli``, or ``console:NAME`` for an admin in the console); an admin in the console
cannot disable their own account nor change its role, so that one admin always remains.

Wrong passwords are counted in the store per user name and per address (:class:`LoginPolicy`),
so that every daemon process over one store refuses a locked name or address.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from notifier.errors import InvalidRequest
from notifier.ports import Role, Session, User, UserEvent, UserStore

log = structlog.get_logger("notifier.users")

USERNAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that a wrong name costs what a wrong
    password does. Made at the first login, not at import: hashing takes Argon2's 64 MiB, which
    every process importing this (the daemon, its helpers, each CLI command) would otherwise hold
    at its peak."""
    return _hasher.hash("not a password of anyone's")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"the password must have at least {MIN_PASSWORD} characters")


_LOGGED = {
    "added": "user.added",
    "password": "user.password_changed",
    "disabled": "user.disabled",
    "enabled": "user.enabled",
    "role": "user.role_changed",
}


async def _record(
    store: UserStore, username: str, action: str, *, now: datetime, actor: str, detail: str | None = None
) -> None:
    await store.record_user_event(
        UserEvent(at=now, actor=actor, username=username, action=action, detail=detail)
    )
    log.info(_LOGGED[action], username=username, actor=actor, **({"role": detail} if detail else {}))


def _not_yourself(username: str, acting: str | None, what: str) -> None:
    if acting is not None and acting == username:
        raise InvalidRequest(f"{username}: you cannot {what} your own account (ask another admin)")


async def add_user(
    store: UserStore, username: str, password: str, *, role: Role, now: datetime, actor: str = "cli"
) -> User:
    if not USERNAME.fullmatch(username):
        raise InvalidRequest(
            f"{username[:64]!r}: a user name is lower-case letters, digits, '.', '_' or '-' "
            "(starting with a letter, at most 64)"
        )
    _check_password(password)
    user = User(username=username, role=role, password_hash=_hasher.hash(password))
    if not await store.add_user(user, now=now):
        raise InvalidRequest(f"{username}: the user exists already")
    await _record(store, username, "added", now=now, actor=actor, detail=role.value)
    return user


async def change_password(
    store: UserStore, username: str, password: str, *, now: datetime, actor: str = "cli"
) -> None:
    """Set a new password; the user's open sessions end."""
    _check_password(password)
    if not await store.update_user(username, now=now, password_hash=_hasher.hash(password)):
        raise InvalidRequest(f"{username}: no such user")
    await _record(store, username, "password", now=now, actor=actor)


async def disable_user(
    store: UserStore, username: str, *, now: datetime, actor: str = "cli", acting: str | None = None
) -> None:
    """No more logins; the user's open sessions end. ``acting``: the admin doing it, in the console."""
    _not_yourself(username, acting, "disable")
    if not await store.update_user(username, now=now, disabled=True):
        raise InvalidRequest(f"{username}: no such user")
    await _record(store, username, "disabled", now=now, actor=actor)


async def enable_user(store: UserStore, username: str, *, now: datetime, actor: str = "cli") -> None:
    if not await store.update_user(username, now=now, disabled=False):
        raise InvalidRequest(f"{username}: no such user")
    await _record(store, username, "enabled", now=now, actor=actor)


async def set_role(
    store: UserStore,
    username: str,
    role: Role,
    *,
    now: datetime,
    actor: str = "cli",
    acting: str | None = None,
) -> None:
    """A new role; the user's open sessions end (they log in again with it)."""
    _not_yourself(username, acting, "change the role of")
    if not await store.update_user(username, now=now, role=role):
        raise InvalidRequest(f"{username}: no such user")
    await _record(store, username, "role", now=now, actor=actor, detail=role.value)


async def list_users(store: UserStore) -> list[User]:
    return await store.list_users()


async def account_history(store: UserStore, *, limit: int = 50) -> list[UserEvent]:
    return await store.user_events(limit=limit)


async def set_language(store: UserStore, username: str, language: str, *, now: datetime) -> None:
    await store.update_user(username, now=now, language=language)


async def authenticate(store: UserStore, username: str, password: str) -> User | None:
    """The user, when the password is theirs and the account is enabled; None otherwise."""
    user = await store.get_user(username) if USERNAME.fullmatch(username) else None
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedSession:
    token: str  # for the cookie only
    csrf_token: str
    expires_at: datetime


async def open_session(store: UserStore, user: User, *, now: datetime, ttl: timedelta) -> OpenedSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires_at = now + ttl
    await store.create_session(
        _digest(token), username=user.username, csrf_token=csrf, now=now, expires_at=expires_at
    )
    log.info("console.login", username=user.username)
    return OpenedSession(token=token, csrf_token=csrf, expires_at=expires_at)


async def current_session(store: UserStore, token: str, *, now: datetime) -> tuple[Session, User] | None:
    """The live session of ``token`` and its user (enabled), or None."""
    session = await store.get_session(_digest(token), now=now)
    if session is None:
        return None
    user = await store.get_user(session.username)
    if user is None or user.disabled:
        return None
    return session, user


async def close_session(store: UserStore, token: str) -> None:
    await store.delete_session(_digest(token))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginPolicy:
    """More than ``max_failures`` wrong passwords within ``window``, per user name and per
    address, lock that name or address out for ``lockout`` (the right password too)."""

    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(minutes=1)


def login_keys(username: str, address: str) -> tuple[str, str]:
    return f"user:{username[:64]}", f"addr:{address[:64]}"


async def login_locked(store: UserStore, keys: Sequence[str], *, now: datetime) -> bool:
    return await store.login_locked(keys, now=now)


async def login_failed(store: UserStore, keys: Sequence[str], *, now: datetime, policy: LoginPolicy) -> bool:
    """Count a wrong password; True when that locked the name or the address out."""
    return await store.login_failed(
        keys, now=now, window=policy.window, max_failures=policy.max_failures, lockout=policy.lockout
    )


async def login_succeeded(store: UserStore, keys: Sequence[str]) -> None:
    await store.login_succeeded(keys)
