"""The console's staff accounts and sessions (:class:`notifier.ports.UserStore`) in SQL.

A session is kept by the SHA-256 of its cookie's token, so a copy of the database opens no
session; logging out deletes the row, so the cookie is refused by every daemon process at once.
Wrong passwords and lockouts are rows too (``login_failures``, ``login_lockouts``): every daemon
process over the store counts the same attempts. Each change to an account is a ``user_events``
row with who made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.ports import Role, Session, User, UserEvent
from notifier.store.console_tables import login_failures, login_lockouts, user_events, user_sessions, users
from notifier.store.ingest import as_utc


def _user(row: Any) -> User:
    return User(
        username=row.username,
        role=Role(row.role),
        password_hash=row.password_hash,
        disabled=bool(row.disabled),
        language=row.language,
    )


class UserSqlMixin:
    """:class:`notifier.ports.UserStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...
        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...
        def _insert(self, table: Any) -> Any: ...

    async def add_user(self, user: User, *, now: datetime) -> bool:
        stmt = (
            self._insert(users)
            .values(
                username=user.username,
                role=user.role.value,
                password_hash=user.password_hash,
                disabled=user.disabled,
                language=user.language,
                created_at=as_utc(now),
                updated_at=as_utc(now),
            )
            .on_conflict_do_nothing(index_elements=["username"])
            .returning(users.c.username)
        )
        async with self._write("add_user") as conn:
            return (await conn.execute(stmt)).first() is not None

    async def get_user(self, username: str) -> User | None:
        async with self._read("get_user") as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        async with self._read("list_users") as conn:
            rows = (await conn.execute(select(users).order_by(users.c.username))).all()
        return [_user(row) for row in rows]

    async def update_user(
        self,
        username: str,
        *,
        now: datetime,
        password_hash: str | None = None,
        disabled: bool | None = None,
        language: str | None = None,
        role: Role | None = None,
    ) -> bool:
        values: dict[str, Any] = {"updated_at": as_utc(now)}
        if role is not None:
            values["role"] = role.value
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled"] = disabled
        if language is not None:
            values["language"] = language
        stmt = update(users).where(users.c.username == username).values(values).returning(users.c.username)
        async with self._write("update_user") as conn:
            changed = (await conn.execute(stmt)).first() is not None
            if changed and (disabled or password_hash is not None or role is not None):
                # A disabled account, or one whose password or role changed, keeps no open session.
                await conn.execute(delete(user_sessions).where(user_sessions.c.username == username))
        return changed

    async def create_session(
        self, token_hash: str, *, username: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        async with self._write("create_session") as conn:
            # Expired sessions go when new ones come: the table holds what is live, roughly.
            await conn.execute(delete(user_sessions).where(user_sessions.c.expires_at <= as_utc(now)))
            await conn.execute(
                user_sessions.insert().values(
                    token_hash=token_hash,
                    username=username,
                    csrf_token=csrf_token,
                    created_at=as_utc(now),
                    expires_at=as_utc(expires_at),
                )
            )

    async def get_session(self, token_hash: str, *, now: datetime) -> Session | None:
        stmt = select(user_sessions).where(
            user_sessions.c.token_hash == token_hash, user_sessions.c.expires_at > as_utc(now)
        )
        async with self._read("get_session") as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return Session(username=row.username, csrf_token=row.csrf_token, expires_at=row.expires_at)

    async def delete_session(self, token_hash: str) -> None:
        async with self._write("delete_session") as conn:
            await conn.execute(delete(user_sessions).where(user_sessions.c.token_hash == token_hash))

    async def record_user_event(self, event: UserEvent) -> None:
        async with self._write("record_user_event") as conn:
            await conn.execute(
                user_events.insert().values(
                    at=as_utc(event.at),
                    actor=event.actor[:200],
                    username=event.username,
                    action=event.action,
                    detail=event.detail,
                )
            )

    async def user_events(self, *, limit: int) -> list[UserEvent]:
        stmt = select(user_events).order_by(user_events.c.at.desc(), user_events.c.id.desc()).limit(limit)
        async with self._read("user_events") as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            UserEvent(at=r.at, actor=r.actor, username=r.username, action=r.action, detail=r.detail)
            for r in rows
        ]

    async def login_locked(self, keys: Sequence[str], *, now: datetime) -> bool:
        stmt = select(login_lockouts.c.key).where(
            login_lockouts.c.key.in_(list(keys)), login_lockouts.c.locked_until > as_utc(now)
        )
        async with self._read("login_locked") as conn:
            return (await conn.execute(stmt.limit(1))).first() is not None

    async def login_failed(
        self, keys: Sequence[str], *, now: datetime, window: timedelta, max_failures: int, lockout: timedelta
    ) -> bool:
        keys = list(keys)
        since = as_utc(now - window)
        f = login_failures.c
        async with self._write("login_failed") as conn:
            # What is past the window (or past its lockout) counts no more, for any key.
            await conn.execute(delete(login_failures).where(f.failed_at <= since))
            await conn.execute(delete(login_lockouts).where(login_lockouts.c.locked_until <= as_utc(now)))
            await conn.execute(login_failures.insert(), [{"key": k, "failed_at": as_utc(now)} for k in keys])
            counted = await conn.execute(
                select(f.key, func.count()).where(f.key.in_(keys), f.failed_at > since).group_by(f.key)
            )
            over = [key for key, count in counted if count > max_failures]
            for key in over:
                await conn.execute(
                    self._insert(login_lockouts)
                    .values(key=key, locked_until=as_utc(now + lockout))
                    .on_conflict_do_update(
                        index_elements=["key"], set_={"locked_until": as_utc(now + lockout)}
                    )
                )
            if over:
                await conn.execute(delete(login_failures).where(f.key.in_(over)))
        return bool(over)

    async def login_succeeded(self, keys: Sequence[str]) -> None:
        async with self._write("login_succeeded") as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.key.in_(list(keys))))
