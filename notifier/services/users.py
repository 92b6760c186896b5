"""The console's staff accounts and sessions (SPEC §16): ``notifier user`` and the login page.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommendation); a
session is a random token in the browser's cookie and its SHA-256 in the store. No password, hash
or token is ever logged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from notifier.errors import InvalidRequest
from notifier.ports import Role, Session, User, UserStore

log = structlog.get_logger("notifier.users")

USERNAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name costs what a wrong password does.
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"the password must have at least {MIN_PASSWORD} characters")


async def add_user(store: UserStore, username: str, password: str, *, role: Role, now: datetime) -> User:
    if not USERNAME.fullmatch(username):
        raise InvalidRequest(
            f"{username[:64]!r}: a user name is lower-case letters, digits, '.', '_' or '-' "
            "(starting with a letter, at most 64)"
        )
    _check_password(password)
    user = User(username=username, role=role, password_hash=_hasher.hash(password))
    if not await store.add_user(user, now=now):
        raise InvalidRequest(f"{username}: the user exists already")
    log.info("user.added", username=username, role=role.value)
    return user


async def change_password(store: UserStore, username: str, password: str, *, now: datetime) -> None:
    _check_password(password)
    if not await store.update_user(username, now=now, password_hash=_hasher.hash(password)):
        raise InvalidRequest(f"{username}: no such user")
    log.info("user.password_changed", username=username)


async def disable_user(store: UserStore, username: str, *, now: datetime) -> None:
    if not await store.update_user(username, now=now, disabled=True):
        raise InvalidRequest(f"{username}: no such user")
    log.info("user.disabled", username=username)


async def set_language(store: UserStore, username: str, language: str, *, now: datetime) -> None:
    await store.update_user(username, now=now, language=language)


async def authenticate(store: UserStore, username: str, password: str) -> User | None:
    """The user, when the password is theirs and the account is enabled; None otherwise."""
    user = await store.get_user(username) if USERNAME.fullmatch(username) else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
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
