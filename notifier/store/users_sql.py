"""The console's staff accounts and sessions (:class:`notifier.ports.UserStore`) in SQL.

A session is kept by the SHA-256 of its cookie's token, so a copy of the database opens no
session; logging out deletes the row, so the cookie is refused by every daemon process at once.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.ports import Role, Session, User
from notifier.store.ingest import as_utc
from notifier.store.console_tables import user_sessions, users


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
        if row is None:
            return None
        return User(
            username=row.username,
            role=Role(row.role),
            password_hash=row.password_hash,
            disabled=bool(row.disabled),
            language=row.language,
        )

    async def update_user(
        self,
        username: str,
        *,
        now: datetime,
        password_hash: str | None = None,
        disabled: bool | None = None,
        language: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"updated_at": as_utc(now)}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled"] = disabled
        if language is not None:
            values["language"] = language
        stmt = update(users).where(users.c.username == username).values(values).returning(users.c.username)
        async with self._write("update_user") as conn:
            changed = (await conn.execute(stmt)).first() is not None
            if changed and (disabled or password_hash is not None):
                # A disabled account, or one whose password changed, keeps no open session.
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
