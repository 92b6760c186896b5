"""What staff do by hand to a notice, and the manual records of it (SPEC §15): a record is written
in the transaction of the change it records, and read for ``notifier status``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.evidence import EvidenceRecord
from notifier.domain.manual import Entry, EntrySource, ManualAction, ManualRecord
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Notice
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.notice_queries import requests_delivered, with_details
from notifier.store.tables import notices, requests
from notifier.store.tables_manual import manual_records

__all__ = ["ManualSqlMixin", "record_manual"]


async def record_manual(
    conn: AsyncConnection,
    entry: Entry | None,
    action: ManualAction,
    *,
    at: datetime,
    notice_id: str | None = None,
    request_ids: Sequence[str | None] = (None,),
) -> None:
    """One row per request (or one for the notice) in ``conn``'s transaction; nothing without
    ``entry`` (a change nobody entered by hand)."""
    if entry is None:
        return
    rows: list[dict[str, Any]] = [
        {
            "action": action.value,
            "notice_id": notice_id,
            "request_id": request_id,
            "at": as_utc(at),
            "entered_at": as_utc(entry.entered_at),
            "by": entry.by,
            "source": entry.source.value,
        }
        for request_id in request_ids
    ]
    if rows:
        await conn.execute(manual_records.insert(), rows)


class ManualSqlMixin:
    """Retries, portal submissions and :meth:`manual_records` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _evidence: EvidenceWriter

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def retry_failed(
        self,
        notice_id: str,
        *,
        now: datetime,
        deliver_by: datetime,
        entry: Entry | None = None,
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
            await record_manual(conn, entry, ManualAction.RETRY, at=now, notice_id=notice_id)
            await self._evidence.record(conn, now, evidence, notices_moved=[notice_id])
            [notice] = await with_details(conn, [row])
        return notice

    async def mark_submitted(
        self,
        notice_id: str,
        *,
        at: datetime,
        ticket: str | None,
        entry: Entry | None = None,
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
            await record_manual(conn, entry, ManualAction.SUBMITTED, at=at, notice_id=notice_id)
            await self._evidence.record(conn, at, evidence, notices_moved=[notice_id])
            [notice] = await with_details(conn, [row])
        return notice

    async def manual_records(
        self, notice_ids: Sequence[str], *, of: Literal["notice", "request"] = "notice", limit: int = 500
    ) -> dict[str, list[ManualRecord]]:
        """Each notice's manual records (not its acknowledgements), oldest first, at most ``limit``
        a notice; a withdrawal is found under the notice its request was in, if any. With
        ``of="request"`` the ids are request ids, and each request's records are returned."""
        column = manual_records.c.notice_id if of == "notice" else manual_records.c.request_id
        found: dict[str, list[ManualRecord]] = {}
        wanted = list(dict.fromkeys(notice_ids))
        async with self._read("manual_records") as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                stmt = select(manual_records).where(column.in_(chunk)).order_by(column, manual_records.c.id)
                for row in (await conn.execute(stmt)).all():
                    records = found.setdefault(row.notice_id if of == "notice" else row.request_id, [])
                    if len(records) < limit:
                        records.append(
                            ManualRecord(
                                action=ManualAction(row.action),
                                notice_id=row.notice_id,
                                request_id=row.request_id,
                                at=row.at,
                                entered_at=row.entered_at,
                                by=row.by,
                                source=EntrySource(row.source),
                            )
                        )
        return found
