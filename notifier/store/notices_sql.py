"""The store's side of batching and dispatch (:class:`notifier.ports.NoticeStore`) in SQL.

Every method is one short transaction; none is held open across network I/O. Two kinds of time
meet here. Business time (``now``, ``next_attempt_at``, ``delivered_at``…) comes from the daemon's
clock, which may be simulated, and is stored as given. Leases and rate buckets are judged by the
database's own clock, as float seconds since the epoch (:data:`notifier.store.tables.StoreClockSeconds`),
so that every process, whatever its clock, agrees on when a lease has run out.

Concurrency rests on the database: on PostgreSQL candidates are locked with ``FOR UPDATE SKIP
LOCKED`` (two processes take disjoint rows and neither waits for the other), on SQLite every write
transaction holds the write lock from ``BEGIN IMMEDIATE``. Every transition out of ``sending``
checks ``state = 'sending' AND lease_owner = owner`` in the statement that makes it, so a process
whose lease was taken over changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Double,
    case,
    cast,
    exists,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.batching import Pending, PendingGroup
from notifier.domain.evidence import Snapshot, state_record
from notifier.domain.models import NoticeState, Priority, RequestState, TakedownRequest
from notifier.domain.notices import Attempt, Notice, SendResult, notice_id
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.notice_queries import (
    DELIVERABLE,
    SENDING,
    FormSpec,
    add_attempt,
    due_notices,
    end_claim,
    held_by,
    insert_notice,
    next_sequence,
    pick_pending,
    requests_delivered,
    with_details,
)
from notifier.store.renotice_sql import member_requests
from notifier.store.tables import notice_attempts, notices, requests


class NoticeSqlMixin:
    """:class:`notifier.ports.NoticeStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _insert: Any

        @property
        def dialect(self) -> str: ...

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        _evidence: EvidenceWriter

    def _store_now(self) -> ColumnElement[float]:
        """The database's clock as float seconds since the Unix epoch, read when the statement runs.

        PostgreSQL's ``clock_timestamp()`` rather than ``now()``: ``now()`` is the start of the
        transaction, which may be earlier than a lock this transaction waited for.
        """
        if self.dialect == "postgresql":
            return cast(literal_column("extract(epoch from clock_timestamp())"), Double)
        # julianday('now') has millisecond resolution and is constant within one statement.
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Double)

    # -- batching ---------------------------------------------------------------------------------

    async def pending_summary(self, platform: str) -> Pending:
        urgent = func.count().filter(requests.c.priority == Priority.URGENT.value)
        stmt = select(func.count(), func.min(requests.c.ingested_at), urgent).where(
            requests.c.platform == platform, requests.c.state == RequestState.PENDING.value
        )
        async with self._read("pending_summary") as conn:
            count, oldest, urgent_count = (await conn.execute(stmt)).one()
        return Pending(count=count, oldest_at=oldest, urgent=urgent_count or 0)

    async def pending_groups(self, platform: str) -> list[PendingGroup]:
        urgent = func.count().filter(requests.c.priority == Priority.URGENT.value)
        stmt = (
            select(requests.c.deadline, func.count(), func.min(requests.c.ingested_at), urgent)
            .where(requests.c.platform == platform, requests.c.state == RequestState.PENDING.value)
            .group_by(requests.c.deadline)
        )
        async with self._read("pending_groups") as conn:
            rows = (await conn.execute(stmt)).all()
        groups = [
            PendingGroup(deadline=deadline, pending=Pending(count=count, oldest_at=oldest, urgent=n or 0))
            for deadline, count, oldest, n in rows
        ]
        return sorted(groups, key=lambda g: (g.deadline is not None, g.deadline or ""))

    async def form_notice(
        self,
        platform: str,
        *,
        max_items: int,
        channel: str,
        now: datetime,
        deliver_by: datetime,
        deadline: str | None = None,
        urgent: bool = False,
        urgent_only: bool = False,
    ) -> Notice | None:
        spec = FormSpec(platform, max_items, channel, now, deliver_by, deadline, urgent, urgent_only)
        formed = await self._form(spec, claim=None)
        return formed[0] if formed is not None else None

    async def form_claimed(
        self,
        platform: str,
        *,
        max_items: int,
        channel: str,
        now: datetime,
        deliver_by: datetime,
        owner: str,
        lease: timedelta,
        deadline: str | None = None,
        urgent: bool = False,
        urgent_only: bool = False,
    ) -> tuple[Notice, list[TakedownRequest]] | None:
        spec = FormSpec(platform, max_items, channel, now, deliver_by, deadline, urgent, urgent_only)
        claim = {"lease_owner": owner, "lease_until": self._store_now() + lease.total_seconds()}
        return await self._form(spec, claim=claim)

    async def _form(
        self, spec: FormSpec, *, claim: dict[str, Any] | None
    ) -> tuple[Notice, list[TakedownRequest]] | None:
        """One notice formed (and claimed, with ``claim``), with its requests when claimed."""
        if spec.max_items < 1:
            raise ValueError("max_items must be at least 1")
        now, deliver_by = as_utc(spec.now), as_utc(spec.deliver_by)
        async with self._write("form_notice") as conn:
            picked, urgent_count = await pick_pending(
                conn,
                spec.platform,
                spec.max_items,
                spec.deadline,
                urgent_only=spec.urgent_only,
                with_bodies=claim is not None,
            )
            if not picked:
                return None
            request_ids = [rid for rid, _ in picked]
            sequence = await next_sequence(conn, self._insert, spec.platform)
            notice = Notice(
                notice_id=notice_id(spec.platform, now, sequence),
                platform=spec.platform,
                channel=spec.channel,
                primary_channel=spec.channel,
                # Claimed as it is formed: sent by its maker at once, with no claim in between.
                state=NoticeState.SENDING if claim is not None else NoticeState.QUEUED,
                created_at=now,
                request_ids=tuple(request_ids),
                deliver_by=deliver_by,
                next_attempt_at=now,
                deadline=spec.deadline,
                urgent=spec.urgent or urgent_count > 0,
            )
            await insert_notice(conn, notice, sequence, claim or {})
            # Recorded as queued even when claimed as it is formed: a claim is a lease, not a step.
            formed = state_record(
                notice_id=notice.notice_id,
                notice=Snapshot(NoticeState.QUEUED.value),
                requests=dict.fromkeys(request_ids, Snapshot("batched")),
            )
            await self._evidence.append(conn, now, [formed])
        bodies = [TakedownRequest.from_canonical(json.loads(body)) for _, body in picked if body is not None]
        return notice, bodies

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]:
        # A request withdrawn after delivery stays in its notice but is asked of the platform no
        # more: reminders, escalations and re-sends leave it out (SPEC §14).
        stmt = (
            select(requests.c.body)
            .where(requests.c.notice_id == notice_id, requests.c.state != RequestState.WITHDRAWN.value)
            .order_by(requests.c.notice_position, requests.c.request_id)
        )
        async with self._read("notice_requests") as conn:
            bodies = (await conn.execute(stmt)).scalars().all()
            if not bodies:  # a re-notice: its requests are members, not its own
                return await member_requests(conn, notice_id)
        return [TakedownRequest.from_canonical(json.loads(body)) for body in bodies]

    # -- claiming ---------------------------------------------------------------------------------

    async def claim_due(
        self, *, owner: str, now: datetime, lease: timedelta, limit: int, urgent_only: bool = False
    ) -> list[Notice]:
        if limit < 1:
            return []
        now = as_utc(now)
        store_now = self._store_now()
        due = due_notices(now=now, store_now=store_now, limit=limit, urgent_only=urgent_only)
        stmt = (
            update(notices)
            .where(notices.c.notice_id.in_(due.scalar_subquery()))
            .values(
                state=SENDING,
                lease_owner=owner,
                lease_until=store_now + lease.total_seconds(),
                updated_at=now,
            )
            .returning(*notices.c)
        )
        async with self._write("claim_due") as conn:
            rows = (await conn.execute(stmt)).all()
            claimed = await with_details(conn, rows)
        return sorted(claimed, key=lambda n: (not n.urgent, n.next_attempt_at or n.created_at, n.notice_id))

    async def next_attempt_due(self) -> datetime | None:
        stmt = select(func.min(notices.c.next_attempt_at)).where(
            notices.c.state.in_([NoticeState.QUEUED.value, NoticeState.RETRYING.value])
        )
        async with self._read("next_attempt_due") as conn:
            earliest = (await conn.execute(stmt)).scalar()
        return as_utc(earliest) if earliest is not None else None

    # -- outcomes of a claim ----------------------------------------------------------------------

    async def record_delivery(
        self,
        notice_id: str,
        *,
        owner: str,
        attempt: Attempt,
        result: SendResult,
        channel: str,
        delivered_at: datetime | None = None,
        first_check_at: datetime | None = None,
    ) -> bool:
        at = as_utc(delivered_at or attempt.at)
        values: dict[str, Any] = {"channel": channel, "next_attempt_at": None, "updated_at": at}
        # The SLA clock starts, the platform's at delivery or the authority's at rendering: the
        # monitor looks at the notice from now on (ports.SlaStore).
        values["sla_due_at"] = at
        if result.message_id is not None:
            values["message_id"] = result.message_id
        if result.ticket is not None:
            values |= {"ticket": result.ticket, "receipt_at": at}
        if result.awaiting_submission:
            values |= {"state": NoticeState.AWAITING_SUBMISSION.value, "rendered_at": at}
        else:
            values |= {"state": NoticeState.DELIVERED.value, "delivered_at": at}
        async with self._write("record_delivery") as conn:
            if not await end_claim(conn, notice_id, owner, values):
                return False
            await add_attempt(conn, notice_id, attempt)
            if not result.awaiting_submission:
                await requests_delivered(conn, notice_id, at, first_check_at)
            await self._evidence.record(conn, at, attempt.records(notice_id), notices_moved=[notice_id])
        return True

    async def record_failure(
        self,
        notice_id: str,
        *,
        owner: str,
        attempt: Attempt,
        channel: str,
        next_attempt_at: datetime | None,
        deliver_by: datetime,
        fallback_used: bool,
    ) -> bool:
        give_up = next_attempt_at is None
        values: dict[str, Any] = {
            "state": (NoticeState.FAILED if give_up else NoticeState.RETRYING).value,
            "channel": channel,
            "next_attempt_at": None if next_attempt_at is None else as_utc(next_attempt_at),
            "deliver_by": as_utc(deliver_by),
            "fallback_used": fallback_used,
            "last_error": attempt.detail,
            "updated_at": as_utc(attempt.at),
        }
        async with self._write("record_failure") as conn:
            if not await end_claim(conn, notice_id, owner, values):
                return False
            await add_attempt(conn, notice_id, attempt)
            if give_up:
                await conn.execute(
                    update(requests)
                    .where(requests.c.notice_id == notice_id, requests.c.state.in_(DELIVERABLE))
                    .values(state=RequestState.FAILED.value)
                )
            await self._evidence.record(
                conn, attempt.at, attempt.records(notice_id), notices_moved=[notice_id], with_requests=give_up
            )
        return True

    async def renew_lease(self, notice_id: str, *, owner: str, lease: timedelta) -> bool:
        stmt = (
            update(notices)
            .where(held_by(notice_id, owner))
            .values(lease_until=self._store_now() + lease.total_seconds())
            .returning(notices.c.notice_id)
        )
        async with self._write("renew_lease") as conn:
            return (await conn.execute(stmt)).first() is not None

    async def record_attempt(self, notice_id: str, *, owner: str, attempt: Attempt) -> None:
        held = (
            select(notices.c.notice_id)
            .where(held_by(notice_id, owner))
            .with_for_update()  # keeps the claim from being taken over before the insert
        )
        async with self._write("record_attempt") as conn:
            if (await conn.execute(held)).first() is not None:
                await add_attempt(conn, notice_id, attempt)
                await self._evidence.append(conn, attempt.at, attempt.records(notice_id))

    async def release(self, notice_id: str, *, owner: str, until: datetime | None = None) -> None:
        # Back to where a claim found it: ``retrying`` when it has been tried before, ``queued``
        # when not; due at once (its next_attempt_at has passed) or at ``until``.
        tried = exists().where(notice_attempts.c.notice_id == notices.c.notice_id)
        values: dict[str, Any] = {
            "state": case((tried, NoticeState.RETRYING.value), else_=NoticeState.QUEUED.value),
            "lease_owner": None,
            "lease_until": None,
        }
        if until is not None:
            values["next_attempt_at"] = as_utc(until)
        async with self._write("release") as conn:
            await conn.execute(update(notices).where(held_by(notice_id, owner)).values(values))

    # -- reads and staff actions ------------------------------------------------------------------

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]:
        wanted = list(dict.fromkeys(notice_ids))
        found: dict[str, Notice] = {}
        async with self._read("get_notices") as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = (await conn.execute(select(notices).where(notices.c.notice_id.in_(chunk)))).all()
                found.update({n.notice_id: n for n in await with_details(conn, rows)})
        return [found[i] for i in wanted if i in found]
