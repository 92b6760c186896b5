"""The store's side of the SLA monitor (:class:`notifier.ports.SlaStore`) in SQL.

Work comes from each notice's timer, ``notices.sla_due_at`` (business time, in a partial index):
:meth:`SlaSqlMixin.claim_sla_due` takes the due notices in due order and pushes their timers a
lease ahead in the same statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two monitors take
disjoint notices), then :meth:`SlaSqlMixin.reschedule_sla` sets each to its next due time with a
compare-and-set on the value the claim wrote. No statement reads every open notice.

A decision is an ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on the primary key (notice_id, kind),
the kinds due together on a notice in one statement: whichever transaction inserts a row decided it,
every other one (another process, the same process after a restart) gets nothing back and sends
nothing. Sending is claimed a notice at a time, so one escalation covers the breaches owed together.
The facts of claimed notices are read in the claim's transaction: their open requests counted and
their decisions, a chunk of notices per statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from notifier.domain.evidence import EvidenceRecord
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.sla import SlaFacts, SlaKind
from notifier.ports import SlaClaim, SlaDecision, SlaReschedule
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.tables import UTCDateTime, notices, requests, sla_decisions

# Requests in these states need nothing more from the platform.
CLOSED_REQUEST_STATES = (
    RequestState.REMOVED.value,
    RequestState.REJECTED.value,
    RequestState.WITHDRAWN.value,
    RequestState.FAILED.value,
)
_CHUNK = 500


class SlaSqlMixin:
    """:class:`notifier.ports.SlaStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _insert: Any

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _store_now(self) -> ColumnElement[float]: ...

        _evidence: EvidenceWriter

    async def claim_sla_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[SlaClaim]:
        if limit < 1:
            return []
        now = as_utc(now)
        claimed_until = now + lease
        due = (
            select(notices.c.notice_id)
            .where(notices.c.sla_due_at.is_not(None), notices.c.sla_due_at <= now)
            .order_by(notices.c.sla_due_at)
            .limit(limit)
            # SKIP LOCKED: two monitors claim disjoint notices without waiting for each other.
            # SQLite renders no FOR UPDATE; its write lock already serialises claims.
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(notices)
            .where(notices.c.notice_id.in_(due.scalar_subquery()))
            .values(sla_due_at=claimed_until)
            .returning(
                notices.c.notice_id,
                notices.c.platform,
                notices.c.channel,
                notices.c.state,
                notices.c.delivered_at,
                notices.c.acknowledged_at,
                notices.c.rendered_at,
                notices.c.deadline,
                notices.c.clarification_requested_at,
                notices.c.clarified_at,
                notices.c.earlier_paused_s,
            )
        )
        async with self._write("claim_sla_due") as conn:
            rows = (await conn.execute(stmt)).all()
            ids = [row.notice_id for row in rows]
            open_requests: dict[str, int] = {}
            kinds: dict[str, set[SlaKind]] = {}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                counted = await conn.execute(
                    select(requests.c.notice_id, func.count())
                    .where(requests.c.notice_id.in_(chunk), requests.c.state.not_in(CLOSED_REQUEST_STATES))
                    .group_by(requests.c.notice_id)
                )
                open_requests.update({notice_id: int(count) for notice_id, count in counted})
                decided = await conn.execute(
                    select(sla_decisions.c.notice_id, sla_decisions.c.kind).where(
                        sla_decisions.c.notice_id.in_(chunk)
                    )
                )
                for notice_id, kind in decided:
                    kinds.setdefault(notice_id, set()).add(SlaKind(kind))
        claims = [
            SlaClaim(
                notice_id=row.notice_id,
                platform=row.platform,
                channel=row.channel,
                state=NoticeState(row.state),
                claimed_until=claimed_until,
                deadline=row.deadline,
                facts=SlaFacts(
                    delivered_at=row.delivered_at,
                    acknowledged_at=row.acknowledged_at,
                    open_requests=open_requests.get(row.notice_id, 0),
                    decided=frozenset(kinds.get(row.notice_id, ())),
                    rendered_at=row.rendered_at,
                    clarification_requested_at=row.clarification_requested_at,
                    clarified_at=row.clarified_at,
                    earlier_paused=timedelta(seconds=int(row.earlier_paused_s)),
                ),
            )
            for row in rows
        ]
        return sorted(claims, key=lambda c: (c.facts.delivered_at or c.facts.rendered_at or now, c.notice_id))

    async def reschedule_sla(self, moves: Sequence[SlaReschedule]) -> int:
        if not moves:
            return 0
        # Compare-and-set on the value the claim wrote: a delivery, a rendering or a bounce that
        # set the timer since then is kept, and the monitor looks again.
        stmt = (
            update(notices)
            .where(
                notices.c.notice_id == bindparam("moved_id"),
                notices.c.sla_due_at == bindparam("claimed_until", type_=UTCDateTime()),
            )
            .values(sla_due_at=bindparam("next_at", type_=UTCDateTime()))
        )
        params = [
            {
                "moved_id": move.notice_id,
                "claimed_until": as_utc(move.claimed_until),
                "next_at": None if move.next_at is None else as_utc(move.next_at),
            }
            for move in moves
        ]
        async with self._write("reschedule_sla") as conn:
            result = await conn.execute(stmt, params)
        return max(0, result.rowcount)

    async def next_sla_due(self) -> datetime | None:
        stmt = select(func.min(notices.c.sla_due_at)).where(notices.c.sla_due_at.is_not(None))
        async with self._read("next_sla_due") as conn:
            earliest = (await conn.execute(stmt)).scalar()
        return as_utc(earliest) if earliest is not None else None

    async def drop_decision(self, notice_id: str, kind: SlaKind, *, owner: str, at: datetime) -> bool:
        stmt = (
            update(sla_decisions)
            .where(
                sla_decisions.c.notice_id == notice_id,
                sla_decisions.c.kind == SlaKind(kind).value,
                sla_decisions.c.send_owner == owner,
                sla_decisions.c.sent_at.is_(None),
                sla_decisions.c.dropped_at.is_(None),
            )
            .values(dropped_at=as_utc(at), send_owner=None, send_until=None)
            .returning(sla_decisions.c.kind)
        )
        async with self._write("drop_decision") as conn:
            return (await conn.execute(stmt)).first() is not None

    async def decide(
        self, notice_id: str, due: Mapping[SlaKind, datetime], *, decided_at: datetime
    ) -> frozenset[SlaKind]:
        if not due:
            return frozenset()
        # One statement, rows in a fixed order: a concurrent caller waits on the first row and then
        # finds every one taken, so breaches due together are never split between two processes.
        rows = [
            {
                "notice_id": notice_id,
                "kind": SlaKind(kind).value,
                "due_at": as_utc(due_at),
                "decided_at": as_utc(decided_at),
            }
            for kind, due_at in sorted(due.items(), key=lambda item: SlaKind(item[0]).value)
        ]
        stmt = (
            self._insert(sla_decisions)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["notice_id", "kind"])
            .returning(sla_decisions.c.kind)
        )
        async with self._write("decide") as conn:
            return frozenset(SlaKind(kind) for (kind,) in await conn.execute(stmt))

    async def claim_unsent_decisions(self, *, owner: str, lease: timedelta, limit: int) -> list[SlaDecision]:
        now = self._store_now()
        free = and_(
            sla_decisions.c.sent_at.is_(None),
            sla_decisions.c.dropped_at.is_(None),
            or_(sla_decisions.c.send_until.is_(None), sla_decisions.c.send_until < now),
        )
        # Read from the decisions not sent (the index on ``sent_at``: a handful), never by walking
        # the open notices. Whole notices are claimed, each locked while it is (PostgreSQL; SQLite
        # writes one at a time): a notice another monitor is claiming is skipped, never half taken.
        owed = select(sla_decisions.c.notice_id).where(free)
        pick = (
            select(notices.c.notice_id)
            .where(notices.c.notice_id.in_(owed))
            .order_by(notices.c.delivered_at, notices.c.notice_id)
            .limit(limit)
            .with_for_update(of=notices, skip_locked=True)
        )
        stmt = (
            update(sla_decisions)
            .where(sla_decisions.c.notice_id.in_(pick), free)
            .values(send_owner=owner, send_until=now + lease.total_seconds())
            .returning(*sla_decisions.c)
        )
        async with self._write("claim_unsent_decisions") as conn:
            rows = list(await conn.execute(stmt))
        decisions = [_decision(row) for row in rows]
        return sorted(decisions, key=lambda d: (d.decided_at, d.notice_id, d.kind.value))

    async def release_decision(self, notice_id: str, kind: SlaKind, *, owner: str) -> None:
        stmt = (
            update(sla_decisions)
            .where(
                sla_decisions.c.notice_id == notice_id,
                sla_decisions.c.kind == SlaKind(kind).value,
                sla_decisions.c.send_owner == owner,
                sla_decisions.c.sent_at.is_(None),
            )
            .values(send_owner=None, send_until=None)
        )
        async with self._write("release_decision") as conn:
            await conn.execute(stmt)

    async def unsent_decisions(self, *, limit: int) -> list[SlaDecision]:
        stmt = (
            select(sla_decisions)
            .where(sla_decisions.c.sent_at.is_(None), sla_decisions.c.dropped_at.is_(None))
            .order_by(sla_decisions.c.decided_at, sla_decisions.c.notice_id, sla_decisions.c.kind)
            .limit(limit)
        )
        async with self._read("unsent_decisions") as conn:
            return [_decision(row) for row in await conn.execute(stmt)]

    async def mark_decision_sent(
        self,
        notice_id: str,
        kind: SlaKind,
        *,
        at: datetime,
        message_ref: str | None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> None:
        stmt = (
            update(sla_decisions)
            .where(
                sla_decisions.c.notice_id == notice_id,
                sla_decisions.c.kind == SlaKind(kind).value,
                sla_decisions.c.sent_at.is_(None),
                sla_decisions.c.dropped_at.is_(None),
            )
            .values(sent_at=as_utc(at), message_ref=message_ref)
        )
        async with self._write("mark_decision_sent") as conn:
            await conn.execute(stmt)
            await self._evidence.append(conn, as_utc(at), evidence)

    async def sla_decisions(self, notice_ids: Sequence[str]) -> list[SlaDecision]:
        """Every decision about ``notice_ids`` (reports, tests)."""
        stmt = (
            select(sla_decisions)
            .where(sla_decisions.c.notice_id.in_(list(notice_ids)))
            .order_by(sla_decisions.c.decided_at, sla_decisions.c.kind)
        )
        async with self._read("sla_decisions") as conn:
            return [_decision(row) for row in await conn.execute(stmt)]


def _decision(row: Any) -> SlaDecision:
    return SlaDecision(
        notice_id=row.notice_id,
        kind=SlaKind(row.kind),
        decided_at=row.decided_at,
        due_at=row.due_at,
        sent_at=row.sent_at,
        message_ref=row.message_ref,
        dropped_at=row.dropped_at,
    )
