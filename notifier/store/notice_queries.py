"""The statements behind :mod:`notifier.store.notices_sql`, each run inside its caller's transaction,
and the reading of notice rows back into :class:`notifier.domain.notices.Notice`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    and_,
    bindparam,
    column,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import NoticeState, Priority, RequestState
from notifier.domain.notices import Attempt, AttemptOutcome, Notice
from notifier.store.ingest import as_utc
from notifier.store.renotice_sql import members_of
from notifier.store.tables import notice_attempts, notices, platform_sequences, requests

SENDING = NoticeState.SENDING.value

# Requests a notice may still move forward when it is delivered or fails for good: those waiting in
# it, and those already marked delivered by an earlier delivery that bounced. Acknowledged and later
# states are never moved back.
DELIVERABLE = (RequestState.BATCHED.value, RequestState.DELIVERED.value)


@dataclass(frozen=True, slots=True)
class FormSpec:
    """What :meth:`notifier.store.notices_sql.NoticeSqlMixin.form_notice` (or ``form_claimed``)
    is asked to form."""

    platform: str
    max_items: int
    channel: str
    now: datetime
    deliver_by: datetime
    deadline: str | None
    urgent: bool
    urgent_only: bool


async def next_sequence(conn: AsyncConnection, insert: Any, platform: str) -> int:
    """The platform's next notice sequence number (``insert``: the dialect's upsert-capable insert)."""
    stmt = insert(platform_sequences).values(platform=platform, last_value=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["platform"], set_={"last_value": platform_sequences.c.last_value + 1}
    ).returning(platform_sequences.c.last_value)
    value: int = (await conn.execute(stmt)).scalar_one()
    return value


async def pick_pending(
    conn: AsyncConnection,
    platform: str,
    max_items: int,
    deadline: str | None = None,
    *,
    urgent_only: bool = False,
    with_bodies: bool = False,
) -> tuple[list[tuple[str, str | None]], int]:
    """Up to ``max_items`` pending requests of ``platform`` judged by the deadline profile
    ``deadline`` (None: by the platform's bounds), urgent first, then oldest (only the urgent ones
    with ``urgent_only``), as (request id, body if ``with_bodies``); and how many are urgent.

    One query per priority rather than ``ORDER BY priority = 'urgent' DESC``: each then reads the
    batching index in order and stops at its limit, however many requests are pending.
    """
    picked: list[tuple[str, str | None]] = []
    urgent = 0
    for priority in (Priority.URGENT, Priority.NORMAL):
        if len(picked) == max_items or (urgent_only and priority is Priority.NORMAL):
            break
        stmt = (
            select(requests.c.request_id, requests.c.body if with_bodies else null())
            .where(
                requests.c.platform == platform,
                requests.c.state == RequestState.PENDING.value,
                requests.c.priority == priority.value,
                requests.c.deadline.is_(None) if deadline is None else requests.c.deadline == deadline,
            )
            .order_by(requests.c.ingested_at, requests.c.request_id)
            .limit(max_items - len(picked))
            .with_for_update(skip_locked=True)
        )
        picked += [(rid, body) for rid, body in (await conn.execute(stmt)).all()]
        if priority is Priority.URGENT:
            urgent = len(picked)
    return picked, urgent


def due_notices(
    *, now: datetime, store_now: ColumnElement[float], limit: int, urgent_only: bool
) -> Select[tuple[str]]:
    """The ids of up to ``limit`` notices to claim, locked (SKIP LOCKED): ``queued``/``retrying``
    ones due by business time ``now``, and ``sending`` ones whose lease ran out by the store's
    clock (a process died mid-send). Urgent notices first, then by due time; only urgent ones with
    ``urgent_only`` (read off their partial index)."""
    waiting: ColumnElement[bool] = notices.c.state.in_([NoticeState.QUEUED.value, NoticeState.RETRYING.value])
    stale: ColumnElement[bool] = notices.c.state == SENDING
    if urgent_only:
        waiting = and_(notices.c.urgent, waiting)
        stale = and_(notices.c.urgent, stale)
    return (
        select(notices.c.notice_id)
        .where(
            or_(
                and_(waiting, notices.c.next_attempt_at <= now),
                and_(stale, notices.c.lease_until <= store_now),
            )
        )
        .order_by(notices.c.urgent.desc(), notices.c.next_attempt_at, notices.c.notice_id)
        .limit(limit)
        # SKIP LOCKED: two processes claiming at once take disjoint notices without waiting for
        # each other. SQLite renders no FOR UPDATE; its write lock already serialises claims.
        .with_for_update(skip_locked=True)
    )


async def insert_notice(conn: AsyncConnection, notice: Notice, sequence: int, claim: dict[str, Any]) -> None:
    """Insert a newly formed notice (with ``claim``'s lease columns, if any) and move its requests
    to ``batched`` in it. The requests are the caller's: locked on PostgreSQL, under the write
    lock on SQLite."""
    at = notice.created_at
    await conn.execute(
        notices.insert().values(
            {
                "notice_id": notice.notice_id,
                "platform": notice.platform,
                "sequence": sequence,
                "request_count": len(notice.request_ids),
                "channel": notice.channel,
                "primary_channel": notice.primary_channel,
                "fallback_used": False,
                "state": notice.state.value,
                "created_at": at,
                "updated_at": at,
                "deliver_by": notice.deliver_by,
                "next_attempt_at": notice.next_attempt_at,
                "deadline": notice.deadline,
                "urgent": notice.urgent,
            }
            | claim
        )
    )
    if conn.dialect.name == "postgresql":
        # One statement joining the ids to their positions: half the time of fifty updates.
        await conn.execute(_BATCH_PG, {"rids": list(notice.request_ids), "notice_id": notice.notice_id})
        return
    await conn.execute(
        update(requests)
        .where(requests.c.request_id == bindparam("rid"))
        .values(
            state=RequestState.BATCHED.value,
            notice_id=notice.notice_id,
            notice_position=bindparam("position"),
        ),
        [{"rid": rid, "position": position} for position, rid in enumerate(notice.request_ids)],
    )


# The ids in batch order, numbered from 0 (WITH ORDINALITY numbers them from 1).
_UNNESTED = (
    func.unnest(bindparam("rids", type_=ARRAY(String)))
    .table_valued(column("rid", String), with_ordinality="n")
    .render_derived(with_types=False)
)
_BATCHED_IDS = select(_UNNESTED.c.rid, (_UNNESTED.c.n - 1).label("position")).subquery("batched")
_BATCH_PG = (
    update(requests)
    .where(requests.c.request_id == _BATCHED_IDS.c.rid)
    .values(
        state=RequestState.BATCHED.value,
        notice_id=bindparam("notice_id"),
        notice_position=_BATCHED_IDS.c.position,
    )
)


def held_by(notice_id: str, owner: str) -> ColumnElement[bool]:
    return and_(notices.c.notice_id == notice_id, notices.c.state == SENDING, notices.c.lease_owner == owner)


async def end_claim(conn: AsyncConnection, notice_id: str, owner: str, values: dict[str, Any]) -> bool:
    """Move a notice out of ``sending`` if ``owner`` still holds it; whether it did."""
    stmt = (
        update(notices)
        .where(held_by(notice_id, owner))
        .values(lease_owner=None, lease_until=None, **values)
        .returning(notices.c.notice_id)
    )
    return (await conn.execute(stmt)).first() is not None


async def add_attempt(conn: AsyncConnection, notice_id: str, attempt: Attempt) -> None:
    await conn.execute(
        notice_attempts.insert(),
        {
            "notice_id": notice_id,
            "at": as_utc(attempt.at),
            "channel": attempt.channel,
            "outcome": attempt.outcome.value,
            "code": attempt.code,
            "detail": attempt.detail,
            "duration_ms": attempt.duration_ms,
        },
    )


async def requests_delivered(
    conn: AsyncConnection, notice_id: str, at: datetime, first_check_at: datetime | None = None
) -> None:
    """The notice's requests are delivered at ``at``; their URL-check timer is set to
    ``first_check_at`` (SPEC §13), else to ``at`` (the verification service moves it on)."""
    await conn.execute(
        update(requests)
        .where(requests.c.notice_id == notice_id, requests.c.state.in_(DELIVERABLE))
        .values(
            state=RequestState.DELIVERED.value,
            delivered_at=at,
            verify_due_at=as_utc(first_check_at) if first_check_at is not None else at,
        )
    )


async def with_details(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Notice]:
    """Notices from their rows, with their request ids (in batch order) and attempts (in order)."""
    if not rows:
        return []
    ids = [row.notice_id for row in rows]
    members: dict[str, list[str]] = {i: [] for i in ids}
    result = await conn.execute(
        select(requests.c.notice_id, requests.c.request_id)
        .where(requests.c.notice_id.in_(ids))
        .order_by(requests.c.notice_id, requests.c.notice_position, requests.c.request_id)
    )
    for owner_id, request_id in result:
        members[owner_id].append(request_id)
    for owner_id, listed in (await members_of(conn, ids)).items():
        members[owner_id].extend(listed)  # a re-notice's requests
    attempts: dict[str, list[Attempt]] = {i: [] for i in ids}
    result = await conn.execute(
        select(notice_attempts).where(notice_attempts.c.notice_id.in_(ids)).order_by(notice_attempts.c.id)
    )
    for row in result:
        attempts[row.notice_id].append(
            Attempt(
                at=row.at,
                channel=row.channel,
                outcome=AttemptOutcome(row.outcome),
                code=row.code,
                detail=row.detail,
                duration_ms=row.duration_ms,
            )
        )
    return [_notice(row, members[row.notice_id], attempts[row.notice_id]) for row in rows]


def _notice(row: Row[Any], request_ids: list[str], attempts: list[Attempt]) -> Notice:
    return Notice(
        notice_id=row.notice_id,
        platform=row.platform,
        channel=row.channel,
        primary_channel=row.primary_channel,
        deadline=row.deadline,
        clarification_requested_at=row.clarification_requested_at,
        clarified_at=row.clarified_at,
        earlier_paused_s=int(row.earlier_paused_s),
        urgent=bool(row.urgent),
        state=NoticeState(row.state),
        created_at=row.created_at,
        request_ids=tuple(request_ids),
        deliver_by=row.deliver_by,
        next_attempt_at=row.next_attempt_at,
        fallback_used=bool(row.fallback_used),
        message_id=row.message_id,
        ticket=row.ticket,
        delivered_at=row.delivered_at,
        receipt_at=row.receipt_at,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
        attempts=tuple(attempts),
        last_error=row.last_error,
    )
