"""The per-platform rate limit shared by every daemon process (``rate_per_minute``), in SQL."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.store.tables import rate_buckets


class RateSqlMixin:
    """A token bucket per platform, judged by the database's clock (:class:`notifier.ports.NoticeStore`)."""

    if TYPE_CHECKING:
        _insert: Any

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _store_now(self) -> ColumnElement[float]: ...

    async def take_rate_slot(self, platform: str, *, per_minute: int) -> float:
        if per_minute <= 0:
            return 0.0
        capacity, per_second = float(per_minute), per_minute / 60.0
        new_bucket = self._insert(rate_buckets).values(
            platform=platform, tokens=capacity, updated_at=self._store_now()
        )
        locked = (
            select(rate_buckets.c.tokens, rate_buckets.c.updated_at)
            .where(rate_buckets.c.platform == platform)
            .with_for_update()
        )
        async with self._write("take_rate_slot") as conn:
            await conn.execute(new_bucket.on_conflict_do_nothing(index_elements=["platform"]))
            stored, filled_at = (await conn.execute(locked)).one()
            # Read after the row lock is held: another process may have just taken a token.
            clock = float((await conn.execute(select(self._store_now()))).scalar_one())
            tokens = min(capacity, float(stored) + max(0.0, clock - float(filled_at)) * per_second)
            if tokens < 1.0:
                return (1.0 - tokens) / per_second
            await conn.execute(
                update(rate_buckets)
                .where(rate_buckets.c.platform == platform)
                .values(tokens=tokens - 1.0, updated_at=clock)
            )
        return 0.0
