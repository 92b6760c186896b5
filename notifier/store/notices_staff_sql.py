"""Staff actions on notices and the operations alerts about failed ones, in SQL: ``notifier retry``
of a failed notice, ``notifier ack --status submitted`` of a portal notice, and the durable alerting
of failures. Each records what it changed (and the staff action given) in the evidence ledger in
its own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.evidence import EvidenceRecord
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Notice
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.notice_queries import requests_delivered, with_details
from notifier.store.tables import notices, requests


class NoticeStaffSqlMixin:
    """Staff actions and alerting of :class:`notifier.ports.NoticeStore` for the SQL store."""

    if TYPE_CHECKING:
        _evidence: EvidenceWriter

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def retry_failed(
        self,
        notice_id: str,
        *,
        now: datetime,
        deliver_by: datetime,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> Notice | None:
        now = as_utc(now)
        stmt = (
            update(notices)
            .where(notices.c.notice_id == notice_id, notices.c.state == NoticeState.FAILED.value)
            .values(
                state=NoticeState.QUEUED.value,
                next_attempt_at=now,
                deliver_by=as_utc(deliver_by),
                channel=notices.c.primary_channel,
                fallback_used=False,
                alerted_at=None,
                updated_at=now,
            )
            .returning(*notices.c)
        )
        async with self._write("retry_failed") as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            await conn.execute(
                update(requests)
                .where(requests.c.notice_id == notice_id, requests.c.state == RequestState.FAILED.value)
                .values(state=RequestState.BATCHED.value)
            )
            await self._evidence.record(conn, now, evidence, notices_moved=[notice_id])
            [notice] = await with_details(conn, [row])
        return notice

    async def mark_submitted(
        self,
        notice_id: str,
        *,
        at: datetime,
        ticket: str | None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> Notice | None:
        at = as_utc(at)
        values: dict[str, Any] = {"state": NoticeState.DELIVERED.value, "delivered_at": at}
        values |= {"updated_at": at, "sla_due_at": at}  # the SLA clock starts: see ports.SlaStore
        if ticket is not None:
            # Typed in by staff: kept to match replies by, but not an automated receipt.
            values["ticket"] = ticket
        stmt = (
            update(notices)
            .where(notices.c.notice_id == notice_id, notices.c.state == NoticeState.AWAITING_SUBMISSION.value)
            .values(values)
            .returning(*notices.c)
        )
        async with self._write("mark_submitted") as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            await requests_delivered(conn, notice_id, at)
            await self._evidence.record(conn, at, evidence, notices_moved=[notice_id])
            [notice] = await with_details(conn, [row])
        return notice

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
