"""The operations alerts about failed notices, in SQL: the durable alerting of failures. (Staff
actions on notices, ``notifier retry`` and ``notifier ack --status submitted``, are in
:mod:`notifier.store.manual_sql`.)"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import NoticeState
from notifier.domain.notices import Notice
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.notice_queries import with_details
from notifier.store.tables import notices


class NoticeStaffSqlMixin:
    """Staff actions and alerting of :class:`notifier.ports.NoticeStore` for the SQL store."""

    if TYPE_CHECKING:
        _evidence: EvidenceWriter

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def unalerted_failures(self, *, limit: int) -> list[Notice]:
        stmt = (
            select(notices)
            .where(notices.c.state == NoticeState.FAILED.value, notices.c.alerted_at.is_(None))
            .order_by(notices.c.updated_at, notices.c.notice_id)
            .limit(limit)
        )
        async with self._read("unalerted_failures") as conn:
            rows = (await conn.execute(stmt)).all()
            return await with_details(conn, rows)

    async def mark_alerted(self, notice_id: str, *, at: datetime) -> None:
        stmt = (
            update(notices)
            .where(notices.c.notice_id == notice_id, notices.c.alerted_at.is_(None))
            .values(alerted_at=as_utc(at))
        )
        async with self._write("mark_alerted") as conn:
            await conn.execute(stmt)
