"""The store's side of the SLA monitor (:class:`notifier.store.sla_port.SlaStore`) in SQL.

A decision is an ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on the primary key (notice_id, kind),
the kinds due together on a notice in one statement: whichever transaction inserts a row decided it,
every other one (another process, the same process after a restart) gets nothing back and sends
nothing. Sending is claimed a notice at a time, so one escalation covers the breaches owed together.
Candidates are read in two statements, the open notices with a correlated count of their open
requests, then the decisions already taken for those notices, whatever their number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from notifier.domain.models import NoticeState, RequestState
from notifier.domain.sla import SlaFacts, SlaKind
from notifier.ports import SlaCandidate, SlaDecision
from notifier.store.ingest import as_utc
from notifier.store.tables import notices, requests, sla_decisions

OPEN_NOTICE_STATES = (NoticeState.DELIVERED.value, NoticeState.ACKNOWLEDGED.value)
# Requests in these states need nothing more from the platform.
CLOSED_REQUEST_STATES = (
    RequestState.REMOVED.value,
    RequestState.REJECTED.value,
    RequestState.WITHDRAWN.value,
    RequestState.FAILED.value,
)
_CHUNK = 500


class SlaSqlMixin:
    """:class:`notifier.store.sla_port.SlaStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _insert: Any

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _store_now(self) -> ColumnElement[float]: ...

    async def sla_candidates(self, *, now: datetime, limit: int) -> list[SlaCandidate]:
        def decided(kind: SlaKind) -> Any:
            return exists().where(
                sla_decisions.c.notice_id == notices.c.notice_id, sla_decisions.c.kind == kind.value
            )

        open_requests = (
            select(func.count())
            .where(
                requests.c.notice_id == notices.c.notice_id,
                requests.c.state.not_in(CLOSED_REQUEST_STATES),
            )
            .scalar_subquery()
        )
        finished = and_(
            decided(SlaKind.REMOVAL_BREACH),
            or_(notices.c.acknowledged_at.is_not(None), decided(SlaKind.ACK_BREACH)),
        )
        stmt = (
            select(
                notices.c.notice_id,
                notices.c.platform,
                notices.c.channel,
                notices.c.delivered_at,
                notices.c.acknowledged_at,
                open_requests.label("open_requests"),
            )
            .where(
                notices.c.state.in_(OPEN_NOTICE_STATES),
                notices.c.delivered_at.is_not(None),
                notices.c.delivered_at <= as_utc(now),
                not_(finished),
            )
            .order_by(notices.c.delivered_at, notices.c.notice_id)
            .limit(limit)
        )
        async with self._read("sla_candidates") as conn:
            rows = (await conn.execute(stmt)).all()
            kinds: dict[str, set[SlaKind]] = {}
            ids = [row.notice_id for row in rows]
            for start in range(0, len(ids), _CHUNK):
                result = await conn.execute(
                    select(sla_decisions.c.notice_id, sla_decisions.c.kind).where(
                        sla_decisions.c.notice_id.in_(ids[start : start + _CHUNK])
                    )
                )
                for notice_id, kind in result:
                    kinds.setdefault(notice_id, set()).add(SlaKind(kind))
        return [
            SlaCandidate(
                notice_id=row.notice_id,
                platform=row.platform,
                channel=row.channel,
                facts=SlaFacts(
                    delivered_at=row.delivered_at,
                    acknowledged_at=row.acknowledged_at,
                    open_requests=int(row.open_requests),
                    decided=frozenset(kinds.get(row.notice_id, ())),
                ),
            )
            for row in rows
        ]

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
            or_(sla_decisions.c.send_until.is_(None), sla_decisions.c.send_until < now),
        )
        owed = exists().where(sla_decisions.c.notice_id == notices.c.notice_id, free)
        # Whole notices are claimed, each locked while it is (PostgreSQL; SQLite writes one at a
        # time): a notice another monitor is claiming is skipped, never half taken.
        pick = (
            select(notices.c.notice_id)
            .where(owed)
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
            .where(sla_decisions.c.sent_at.is_(None))
            .order_by(sla_decisions.c.decided_at, sla_decisions.c.notice_id, sla_decisions.c.kind)
            .limit(limit)
        )
        async with self._read("unsent_decisions") as conn:
            return [_decision(row) for row in await conn.execute(stmt)]

    async def mark_decision_sent(
        self, notice_id: str, kind: SlaKind, *, at: datetime, message_ref: str | None
    ) -> None:
        stmt = (
            update(sla_decisions)
            .where(
                sla_decisions.c.notice_id == notice_id,
                sla_decisions.c.kind == SlaKind(kind).value,
                sla_decisions.c.sent_at.is_(None),
            )
            .values(sent_at=as_utc(at), message_ref=message_ref)
        )
        async with self._write("mark_decision_sent") as conn:
            await conn.execute(stmt)

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
    )
