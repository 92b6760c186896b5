"""The store's side of acknowledgements, receipts and bounces (:class:`notifier.ports.AckStore`) in SQL.

The rules are decided in :func:`notifier.domain.acks.plan_ack`; this module only carries a plan
out, and only if the states it was computed from still hold. Every statement that moves a notice
or a request names the state it moves it from (``WHERE state = :before``) and the transaction is
rolled back when one of them finds nothing to change, so an acknowledgement planned from states
that have moved on since changes nothing and the caller plans again.

No ``SELECT … FOR UPDATE`` is needed for that on PostgreSQL: the first statement of
:meth:`AckSqlMixin.apply_ack` is the conditional ``UPDATE`` of the notice row, which takes that
row's lock, and, when it had to wait for another transaction, judges its ``WHERE`` against the row
as that transaction committed it (READ COMMITTED re-checks an updated row). Every writer that moves
a notice's requests (delivery, failure, bounce, acknowledgement) updates the notice row first, so
they take their turns on that one lock, always in the order notice then requests, and never
deadlock each other. On SQLite every write transaction holds the database's write lock from
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.acks import Ack, AckPlan, RequestChange
from notifier.domain.delivery import DeliveryDecision
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.manual import Entry, ManualAction
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Attempt, Notice
from notifier.domain.sla import SlaFacts, pause_asked
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.manual_sql import record_manual
from notifier.store.notice_queries import add_attempt, with_details
from notifier.store.tables import acks, notices, requests, seen_mail, seen_webhooks

APPLIED = "applied"

# Request ids per ``IN (…)``: well under SQLite's and asyncpg's limits on bound parameters.
_CHUNK = 500


class _StalePlan(Exception):
    """Raised inside :meth:`AckSqlMixin.apply_ack`'s transaction to roll it back."""


class AckSqlMixin:
    """:class:`notifier.ports.AckStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _insert: Any

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        _evidence: EvidenceWriter

    async def ack_context(self, notice_id: str) -> tuple[Notice, dict[str, RequestState]] | None:
        async with self._read("ack_context") as conn:
            rows = (await conn.execute(select(notices).where(notices.c.notice_id == notice_id))).all()
            if not rows:
                return None
            [notice] = await with_details(conn, rows)
            result = await conn.execute(
                select(requests.c.request_id, requests.c.state).where(requests.c.notice_id == notice_id)
            )
            states = {row.request_id: RequestState(row.state) for row in result}
        # A re-notice's requests belong to their first notice, whose answers move them: to the
        # re-notice's answer they read as settled, so it moves the re-notice alone (SPEC §13).
        return notice, {r: states.get(r, RequestState.REMOVED) for r in notice.request_ids}

    async def apply_ack(self, ack: Ack, plan: AckPlan) -> bool:
        history = ack_row(ack, APPLIED)  # validates the times before the write lock is taken
        notice_values: dict[str, Any] = {
            "state": plan.notice_after.value,
            "updated_at": as_utc(ack.received_at),
        }
        if plan.notice_acknowledged_at is not None:
            notice_values["acknowledged_at"] = _first(
                notices.c.acknowledged_at, as_utc(plan.notice_acknowledged_at)
            )
        if plan.notice_resolved_at is not None:
            notice_values["resolved_at"] = _first(notices.c.resolved_at, as_utc(plan.notice_resolved_at))
        if ack.ticket is not None:
            notice_values["ticket"] = _first(notices.c.ticket, ack.ticket)
        move_notice = (
            update(notices)
            .where(notices.c.notice_id == ack.notice_id, notices.c.state == plan.notice_before.value)
            .values(notice_values)
            .returning(notices.c.notice_id)
        )
        try:
            async with self._write("apply_ack") as conn:
                if plan.clarification_requested_at is not None:
                    pause = await _pause_values(conn, ack.notice_id, plan.clarification_requested_at)
                    move_notice = move_notice.values(pause)
                if (await conn.execute(move_notice)).first() is None:
                    raise _StalePlan
                if not await self._first_sight(conn, ack):
                    raise _StalePlan  # a replay raced this one in: the caller finds it seen
                for group in _grouped(plan.changes):
                    await _move_requests(conn, ack.notice_id, group)
                await conn.execute(acks.insert(), history)
                await self._evidence.record(
                    conn,
                    ack.received_at,
                    [*ack.evidence, ack.record(APPLIED)],
                    notices_moved=[ack.notice_id],
                    with_requests=bool(plan.changes),
                )
        except _StalePlan:
            return False
        return True

    async def record_clarification(
        self,
        notice_id: str,
        *,
        at: datetime,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> tuple[Notice, bool] | None:
        """The authority answers the clarification asked about an open notice (SPEC §14):
        ``clarified_at`` is set, compare-and-set, only while one is asked and not yet answered,
        and the SLA timer is brought forward to ``at`` at the latest, so the monitor judges the
        restarted clock. ``(notice, True)`` when this call answered it, ``(notice, False)`` when it
        was answered before (a re-send of the answer), None when no clarification is asked."""
        at = as_utc(at)
        asked, answered, due = (
            notices.c.clarification_requested_at,
            notices.c.clarified_at,
            notices.c.sla_due_at,
        )
        is_open = notices.c.state.in_([NoticeState.DELIVERED.value, NoticeState.ACKNOWLEDGED.value])
        stmt = (
            update(notices)
            .where(notices.c.notice_id == notice_id, is_open, asked.is_not(None))
            .where(or_(answered.is_(None), answered < asked))
            .values(
                clarified_at=at,
                updated_at=at,
                sla_due_at=case((due.is_not(None) & (due < at), due), else_=at),
            )
            .returning(*notices.c)
        )
        async with self._write("record_clarification") as conn:
            row = (await conn.execute(stmt)).first()
            first = row is not None
            if row is None:
                earlier = select(notices).where(notices.c.notice_id == notice_id, answered >= asked)
                row = (await conn.execute(earlier)).first()
                if row is None:
                    return None
            await record_manual(conn, entry, ManualAction.CLARIFY, at=at, notice_id=notice_id)
            await self._evidence.append(conn, at, evidence)
            [notice] = await with_details(conn, [row])
        return notice, first

    async def record_ack_history(self, ack: Ack, *, outcome: str) -> None:
        row = ack_row(ack, outcome)
        async with self._write("record_ack_history") as conn:
            if await self._first_sight(conn, ack):
                await conn.execute(acks.insert(), row)
                await self._evidence.append(conn, ack.received_at, [*ack.evidence, ack.record(outcome)])

    async def webhook_seen(self, platform: str, webhook_id: str) -> bool:
        stmt = select(seen_webhooks.c.platform).where(
            seen_webhooks.c.platform == platform, seen_webhooks.c.webhook_id == webhook_id
        )
        async with self._read("webhook_seen") as conn:
            return (await conn.execute(stmt)).first() is not None

    async def _first_sight(self, conn: AsyncConnection, ack: Ack) -> bool:
        """Remember the callback ``ack`` came in (if it did) in the caller's transaction: False when
        its ``webhook-id`` was seen before."""
        if ack.webhook_id is None:
            return True
        platform = ack.source.removeprefix("callback:")
        stmt = (
            self._insert(seen_webhooks)
            .values(platform=platform, webhook_id=ack.webhook_id, at=as_utc(ack.received_at))
            .on_conflict_do_nothing(index_elements=["platform", "webhook_id"])
            .returning(seen_webhooks.c.platform)
        )
        return (await conn.execute(stmt)).first() is not None

    async def record_receipt(self, notice_id: str, *, at: datetime, ticket: str | None, source: str) -> bool:
        values: dict[str, Any] = {"receipt_at": _first(notices.c.receipt_at, as_utc(at))}
        if ticket is not None:
            values["ticket"] = _first(notices.c.ticket, ticket)
        stmt = (
            update(notices)
            .where(notices.c.notice_id == notice_id)
            .values(values)
            .returning(notices.c.notice_id)
        )
        record = EvidenceRecord(
            kind=EvidenceKind.RECEIPT,
            notice_id=notice_id,
            meta={"at": at, "ticket": ticket, "source": source},
        )
        async with self._write("record_receipt") as conn:
            if (await conn.execute(stmt)).first() is None:
                return False
            await self._evidence.append(conn, at, [record])
            return True

    async def record_bounce(self, notice_id: str, *, attempt: Attempt, delivery: DeliveryDecision) -> bool:
        if not delivery.changes_anything or delivery.state not in (NoticeState.RETRYING, NoticeState.FAILED):
            raise ValueError(f"a bounce cannot be recorded as {delivery.step.value}")
        failed = delivery.state is NoticeState.FAILED
        stmt = (
            update(notices)
            .where(
                notices.c.notice_id == notice_id,
                notices.c.state == delivery.before.value,
                # A bounce from a channel the notice has left since changes nothing.
                notices.c.channel == attempt.channel,
            )
            .values(
                state=delivery.state.value,
                channel=delivery.channel,
                next_attempt_at=None if failed else as_utc(delivery.next_attempt_at or attempt.at),
                deliver_by=as_utc(delivery.deliver_by),
                fallback_used=delivery.fallback_used,
                # Not delivered after all: the SLA clock restarts at the next delivery.
                delivered_at=None,
                rendered_at=None,
                sla_due_at=None,
                lease_owner=None,
                lease_until=None,
                last_error=attempt.detail,
                updated_at=as_utc(attempt.at),
            )
            .returning(notices.c.notice_id)
        )
        requests_after = RequestState.FAILED if failed else RequestState.BATCHED
        async with self._write("record_bounce") as conn:
            if (await conn.execute(stmt)).first() is None:
                return False
            await add_attempt(conn, notice_id, attempt)
            await conn.execute(
                update(requests)
                .where(requests.c.notice_id == notice_id, requests.c.state == RequestState.DELIVERED.value)
                .values(state=requests_after.value, delivered_at=None)
            )
            await self._evidence.record(
                conn, attempt.at, attempt.records(notice_id), notices_moved=[notice_id]
            )
        return True

    async def remember_webhook(self, platform: str, webhook_id: str, *, at: datetime) -> bool:
        stmt = (
            self._insert(seen_webhooks)
            .values(platform=platform, webhook_id=webhook_id, at=as_utc(at))
            .on_conflict_do_nothing(index_elements=["platform", "webhook_id"])
            .returning(seen_webhooks.c.platform)
        )
        async with self._write("remember_webhook") as conn:
            return (await conn.execute(stmt)).first() is not None

    async def remember_mail(self, mailbox: str, uidvalidity: int, uid: int, *, at: datetime) -> bool:
        stmt = (
            self._insert(seen_mail)
            .values(mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, at=as_utc(at))
            .on_conflict_do_nothing(index_elements=["mailbox", "uidvalidity", "uid"])
            .returning(seen_mail.c.mailbox)
        )
        async with self._write("remember_mail") as conn:
            return (await conn.execute(stmt)).first() is not None

    async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        if not uids:
            return set()
        stmt = select(seen_mail.c.uid).where(
            seen_mail.c.mailbox == mailbox,
            seen_mail.c.uidvalidity == uidvalidity,
            seen_mail.c.uid.in_(list(uids)),
        )
        async with self._read("remembered_mail") as conn:
            return {int(uid) for uid in (await conn.execute(stmt)).scalars()}

    async def notice_by_ticket(self, ticket: str, *, platform: str | None = None) -> str | None:
        stmt = select(notices.c.notice_id).where(notices.c.ticket == ticket)
        if platform is not None:
            stmt = stmt.where(notices.c.platform == platform)
        # Tickets are the platform's, not unique: the newest notice that carries it is the one a
        # reply is most likely about.
        stmt = stmt.order_by(notices.c.created_at.desc(), notices.c.sequence.desc()).limit(1)
        async with self._read("notice_by_ticket") as conn:
            found: str | None = (await conn.execute(stmt)).scalar()
        return found


def ack_row(ack: Ack, outcome: str) -> dict[str, Any]:
    """The ``acks`` history row of an acknowledgement."""
    return {
        "notice_id": ack.notice_id,
        "source": ack.source,
        "status": ack.status.value,
        "items": json.dumps(
            [{"request_id": item.request_id, "status": item.status.value} for item in ack.items],
            separators=(",", ":"),
        ),
        "ticket": ack.ticket,
        "platform_at": None if ack.platform_at is None else as_utc(ack.platform_at),
        "received_at": as_utc(ack.received_at),
        "note": ack.note,
        "outcome": outcome,
        "by": ack.by,
        "entered_at": None if ack.entered_at is None else as_utc(ack.entered_at),
        "dkim": ack.dkim,
    }


def _first(column: ColumnElement[Any], value: Any) -> ColumnElement[Any]:
    """The column's value if it has one, else ``value``: a first time is never overwritten.

    ``value`` is bound with the column's type, so a timestamp goes through ``UTCDateTime``.
    """
    return func.coalesce(column, literal(value, type_=column.type))


def _grouped(changes: Sequence[RequestChange]) -> list[list[RequestChange]]:
    """Changes that set the same values, together: usually one statement moves every request."""
    groups: dict[tuple[Any, ...], list[RequestChange]] = {}
    for change in changes:
        key = (change.before, change.after, change.acknowledged_at, change.resolved_at)
        groups.setdefault(key, []).append(change)
    return list(groups.values())


async def _move_requests(conn: AsyncConnection, notice_id: str, group: Sequence[RequestChange]) -> None:
    """Move requests that share a change, each only from its ``before`` state; else :class:`_StalePlan`."""
    change = group[0]
    values: dict[str, Any] = {"state": change.after.value}
    if change.acknowledged_at is not None:
        values["acknowledged_at"] = _first(requests.c.acknowledged_at, as_utc(change.acknowledged_at))
    if change.resolved_at is not None:
        values["resolved_at"] = _first(requests.c.resolved_at, as_utc(change.resolved_at))
    if change.after is RequestState.REMOVED and change.resolved_at is not None:
        values["verify_due_at"] = as_utc(change.resolved_at)  # check the claim now (SPEC §13)
    request_ids = sorted({c.request_id for c in group})
    for start in range(0, len(request_ids), _CHUNK):
        chunk = request_ids[start : start + _CHUNK]
        stmt = (
            update(requests)
            .where(
                requests.c.request_id.in_(chunk),
                requests.c.notice_id == notice_id,
                requests.c.state == change.before.value,
            )
            .values(values)
            .returning(requests.c.request_id)
        )
        if len((await conn.execute(stmt)).all()) != len(chunk):
            raise _StalePlan


async def _pause_values(conn: AsyncConnection, notice_id: str, at: datetime) -> dict[str, Any]:
    """A clarification asked at ``at``: where the notice's pause begins and the earlier pauses it
    keeps (:func:`notifier.domain.sla.pause_asked`), read under the write's lock."""
    row = (
        await conn.execute(
            select(
                notices.c.clarification_requested_at, notices.c.clarified_at, notices.c.earlier_paused_s
            ).where(notices.c.notice_id == notice_id)
        )
    ).first()
    if row is None:
        return {"clarification_requested_at": as_utc(at)}
    facts = SlaFacts(
        delivered_at=None,
        acknowledged_at=None,
        open_requests=0,
        clarification_requested_at=row.clarification_requested_at,
        clarified_at=row.clarified_at,
        earlier_paused=timedelta(seconds=int(row.earlier_paused_s)),
    )
    began, earlier = pause_asked(facts, at=as_utc(at))
    return {"clarification_requested_at": began, "earlier_paused_s": int(earlier.total_seconds())}
