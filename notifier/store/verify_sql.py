"""The store's side of verification (:class:`notifier.ports.VerificationStore`) in SQL.

Work comes from each request's check timer, ``requests.verify_due_at`` (business time, in a partial
index), claimed in due order and pushed a lease ahead in the same statement, then moved on with a
compare-and-set on the value the claim wrote: the design of the SLA timers
(:mod:`notifier.store.sla_sql`). ``url_checks`` has no column for a body: what a check read is
never kept, only its size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.evidence import EvidenceKind, EvidenceRecord, Snapshot, state_record
from notifier.domain.models import NoticeState, RequestState, TakedownRequest
from notifier.domain.verification import CheckOutcome, UrlCheck, VerifyFacts
from notifier.ports import Followup, Renotice, RequestVerification, VerifyClaim, VerifyUpdate
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.notice_queries import next_sequence
from notifier.store.renotice_sql import add_renotice, renotices_of
from notifier.store.tables import notice_members, requests, url_checks, verify_followups

_CLAIM_COLUMNS = (
    requests.c.request_id,
    requests.c.platform,
    requests.c.notice_id,
    requests.c.state,
    requests.c.body,
    requests.c.delivered_at,
    requests.c.resolved_at,
    requests.c.verified_removed_at,
    requests.c.reappeared_at,
    requests.c.false_claims,
    requests.c.verify_checked_at,
    requests.c.verify_base,
    requests.c.verify_last,
    requests.c.contradicted_at,
)
_LINKED_LIMIT = 20
_INSERT_CHUNK = 1000


class VerifySqlMixin:
    """:class:`notifier.ports.VerificationStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _insert: Any

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        _evidence: EvidenceWriter

    async def claim_verify_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[VerifyClaim]:
        if limit < 1:
            return []
        now = as_utc(now)
        claimed_until = now + lease
        due = (
            select(requests.c.request_id)
            .where(requests.c.verify_due_at.is_not(None), requests.c.verify_due_at <= now)
            .order_by(requests.c.verify_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(requests)
            .where(requests.c.request_id.in_(due.scalar_subquery()))
            .values(verify_due_at=claimed_until)
            .returning(*_CLAIM_COLUMNS)
        )
        async with self._write("claim_verify_due") as conn:
            rows = (await conn.execute(stmt)).all()
        claims = [_claim(row, claimed_until) for row in rows]
        return sorted(claims, key=lambda claim: (claim.notice_id or "", claim.request_id))

    async def verify_targets(self, ids: Sequence[str]) -> list[VerifyClaim]:
        wanted = list(ids)
        # A re-notice's id names its member requests.
        members = select(notice_members.c.request_id).where(notice_members.c.notice_id.in_(wanted))
        stmt = (
            select(*_CLAIM_COLUMNS)
            .where(
                or_(
                    requests.c.request_id.in_(wanted),
                    requests.c.notice_id.in_(wanted),
                    requests.c.request_id.in_(members),
                )
            )
            .order_by(requests.c.notice_id, requests.c.notice_position, requests.c.request_id)
        )
        async with self._read("verify_targets") as conn:
            return [_claim(row, None) for row in await conn.execute(stmt)]

    async def record_rounds(
        self,
        updates: Sequence[VerifyUpdate],
        followups: Sequence[Followup] = (),
        renotices: Sequence[Renotice] = (),
    ) -> list[int]:
        if not updates and not followups and not renotices:
            return []
        rows = [_check_row(update_, check) for update_ in updates for check in update_.checks]
        async with self._write("record_rounds") as conn:
            for start in range(0, len(rows), _INSERT_CHUNK):
                await conn.execute(url_checks.insert(), rows[start : start + _INSERT_CHUNK])
            for update_ in updates:
                await _record_facts(conn, update_)
            formed = []
            for renotice in renotices:
                new_id = await add_renotice(conn, renotice, self._sequence)
                if new_id is not None:
                    queued = Snapshot(NoticeState.QUEUED.value)
                    formed.append(state_record(notice_id=new_id, notice=queued, requests={}))
            if formed:
                await self._evidence.append(conn, max(r.decided_at for r in renotices), formed)
            if rows:
                await self._evidence.append(
                    conn, max(row["at"] for row in rows), [_check_record(r) for r in rows]
                )
            return [await _add_followup(conn, followup) for followup in followups]

    async def _sequence(self, conn: AsyncConnection, platform: str) -> int:
        return await next_sequence(conn, self._insert, platform)

    async def next_verify_due(self) -> datetime | None:
        stmt = select(func.min(requests.c.verify_due_at)).where(requests.c.verify_due_at.is_not(None))
        async with self._read("next_verify_due") as conn:
            earliest = (await conn.execute(stmt)).scalar()
        return as_utc(earliest) if earliest is not None else None

    async def add_followup(
        self,
        notice_id: str,
        *,
        kind: str,
        request_ids: Sequence[str],
        urls: Sequence[str],
        at: datetime,
    ) -> int:
        followup = Followup(
            notice_id=notice_id,
            seq=0,
            kind=kind,
            request_ids=tuple(request_ids),
            urls=tuple(urls),
            decided_at=at,
        )
        async with self._write("add_followup") as conn:
            return await _add_followup(conn, followup)

    async def followups(self, *, unsent_only: bool, limit: int = 100) -> list[Followup]:
        stmt = select(verify_followups).order_by(
            verify_followups.c.decided_at, verify_followups.c.notice_id, verify_followups.c.seq
        )
        if unsent_only:
            stmt = stmt.where(verify_followups.c.sent_at.is_(None))
        async with self._read("followups") as conn:
            return [_followup(row) for row in await conn.execute(stmt.limit(limit))]

    async def mark_followup_sent(
        self, notice_id: str, seq: int, *, at: datetime, message_ref: str | None
    ) -> None:
        stmt = (
            update(verify_followups)
            .where(
                verify_followups.c.notice_id == notice_id,
                verify_followups.c.seq == seq,
                verify_followups.c.sent_at.is_(None),
            )
            .values(sent_at=as_utc(at), message_ref=message_ref)
        )
        async with self._write("mark_followup_sent") as conn:
            await conn.execute(stmt)

    async def renoticed(self, request_id: str) -> bool:
        member = select(notice_members.c.notice_id).where(notice_members.c.request_id == request_id)
        # Re-appearances notified before re-notices existed went out as follow-ups.
        earlier = select(verify_followups.c.request_ids).where(verify_followups.c.kind == "reappeared")
        async with self._read("renoticed") as conn:
            if (await conn.execute(member.limit(1))).first() is not None:
                return True
            return any(request_id in json.loads(ids) for (ids,) in await conn.execute(earlier))

    async def request_verification(self, request_id: str, *, checks: int = 20) -> RequestVerification | None:
        async with self._read("request_verification") as conn:
            row = (
                await conn.execute(
                    select(
                        requests.c.platform,
                        requests.c.body,
                        requests.c.ingested_at,
                        requests.c.verified_removed_at,
                        requests.c.reappeared_at,
                        requests.c.false_claims,
                    ).where(requests.c.request_id == request_id)
                )
            ).first()
            if row is None:
                return None
            newest = await conn.execute(
                select(url_checks)
                .where(url_checks.c.request_id == request_id)
                .order_by(url_checks.c.at.desc(), url_checks.c.id.desc())
                .limit(checks)
            )
            kept = [_check(check) for check in newest]
            linked = await _linked(conn, row)
            renotices = await renotices_of(conn, request_id)
        return RequestVerification(
            verified_removed_at=row.verified_removed_at,
            reappeared_at=row.reappeared_at,
            false_claims=int(row.false_claims),
            checks=kept,
            linked_requests=linked,
            renotices=renotices,
        )


async def _add_followup(conn: AsyncConnection, followup: Followup) -> int:
    """Record a follow-up owed on its notice under the notice's next number."""
    last = (
        await conn.execute(
            select(func.max(verify_followups.c.seq)).where(verify_followups.c.notice_id == followup.notice_id)
        )
    ).scalar()
    seq = int(last or 0) + 1
    await conn.execute(
        verify_followups.insert().values(
            notice_id=followup.notice_id,
            seq=seq,
            kind=followup.kind,
            request_ids=json.dumps(list(followup.request_ids)),
            urls=json.dumps(list(followup.urls)),
            decided_at=as_utc(followup.decided_at),
        )
    )
    return seq


async def _record_facts(conn: AsyncConnection, update_: VerifyUpdate) -> None:
    """One request's new facts and timer (compare-and-set on the claim's timer, when claimed)."""
    values: dict[str, Any] = {
        "verify_due_at": None if update_.next_at is None else as_utc(update_.next_at),
    }
    if update_.checked_at is not None:
        values["verify_checked_at"] = as_utc(update_.checked_at)
    if update_.verified_removed_at is not None:
        values["verified_removed_at"] = func.coalesce(
            requests.c.verified_removed_at, as_utc(update_.verified_removed_at)
        )
    if update_.verify_base is not None:
        values["verify_base"] = as_utc(update_.verify_base)
    if update_.verify_last is not None:
        values["verify_last"] = update_.verify_last
    if update_.reappeared_at is not None:
        values["reappeared_at"] = as_utc(update_.reappeared_at)
    if update_.contradicted_at is not None:
        values["contradicted_at"] = as_utc(update_.contradicted_at)
        values["false_claims"] = requests.c.false_claims + 1
    where = [requests.c.request_id == update_.request_id]
    if update_.claimed_until is not None:
        where.append(requests.c.verify_due_at == as_utc(update_.claimed_until))
    moved = await conn.execute(update(requests).where(*where).values(values))
    if moved.rowcount == 0 and update_.claimed_until is not None:
        # The timer changed since the claim (a claim of removal set it): the facts are kept, the
        # newer timer too.
        values.pop("verify_due_at")
        if values:  # nothing else learnt (a round that only moved the timer): nothing to write
            await conn.execute(
                update(requests).where(requests.c.request_id == update_.request_id).values(values)
            )


def _check_record(row: dict[str, Any]) -> EvidenceRecord:
    """The ``check`` entry of one URL check: what was observed, never content; the URL by its hash."""
    meta = {key: value for key, value in row.items() if key not in ("url", "final_url", "request_id")}
    for key in ("url", "final_url"):
        meta[f"{key}_sha256"] = hashlib.sha256(str(row[key]).encode("utf-8")).hexdigest()
    return EvidenceRecord(kind=EvidenceKind.CHECK, request_ids=(row["request_id"],), meta=meta)


def _check_row(update_: VerifyUpdate, check: UrlCheck) -> dict[str, Any]:
    return {
        "request_id": update_.request_id,
        "platform": update_.platform,
        "url": check.url,
        "at": as_utc(check.at),
        "outcome": check.outcome.value,
        "reason": check.reason,
        "http_status": check.http_status,
        "final_url": check.final_url,
        "content_type": check.content_type,
        "bytes_read": check.bytes_read,
        "sha256": check.sha256,
        "rule": check.rule,
    }


async def _linked(conn: AsyncConnection, row: Any) -> list[str]:
    """Earlier requests of the same platform naming one of its URLs or evidence hashes."""
    request = TakedownRequest.from_canonical(json.loads(row.body))
    needles = [json.dumps(url, ensure_ascii=False) for url in request.urls]
    needles += [json.dumps(h, ensure_ascii=False) for e in request.evidence for h in (e.sha256, e.pdq) if h]
    if not needles:
        return []
    stmt = (
        select(requests.c.request_id)
        .where(
            requests.c.platform == row.platform,
            requests.c.ingested_at < row.ingested_at,
            or_(*(requests.c.body.contains(needle, autoescape=True) for needle in needles)),
        )
        .order_by(requests.c.ingested_at)
        .limit(_LINKED_LIMIT)
    )
    return [request_id for (request_id,) in await conn.execute(stmt)]


def _claim(row: Any, claimed_until: datetime | None) -> VerifyClaim:
    request = TakedownRequest.from_canonical(json.loads(row.body))
    return VerifyClaim(
        request_id=row.request_id,
        platform=row.platform,
        notice_id=row.notice_id,
        urls=request.urls,
        facts=VerifyFacts(
            state=RequestState(row.state),
            delivered_at=row.delivered_at,
            resolved_at=row.resolved_at,
            verified_removed_at=row.verified_removed_at,
            verify_base=row.verify_base,
            checked_at=row.verify_checked_at,
        ),
        reappeared_at=row.reappeared_at,
        verify_last=row.verify_last,
        contradicted_at=row.contradicted_at,
        false_claims=int(row.false_claims),
        claimed_until=claimed_until,
    )


def _check(row: Any) -> UrlCheck:
    return UrlCheck(
        at=row.at,
        url=row.url,
        outcome=CheckOutcome(row.outcome),
        reason=row.reason,
        http_status=row.http_status,
        final_url=row.final_url,
        content_type=row.content_type,
        bytes_read=int(row.bytes_read),
        sha256=row.sha256,
        rule=row.rule,
    )


def _followup(row: Any) -> Followup:
    return Followup(
        notice_id=row.notice_id,
        seq=int(row.seq),
        kind=row.kind,
        request_ids=tuple(json.loads(row.request_ids)),
        urls=tuple(json.loads(row.urls)),
        decided_at=row.decided_at,
        sent_at=row.sent_at,
        message_ref=row.message_ref,
    )
