"""The in-memory :class:`notifier.ports.NoticeStore`, the half of :class:`MemoryStore` that batches
and dispatches.

It keeps the SQL store's rules (``tests/contract/test_notice_store_contract.py`` runs against
both). Leases and rate buckets are judged by ``lease_clock``, float seconds standing in for the
database's clock: ``time.monotonic`` by default, or a callable a test moves by hand. Business time
is whatever the caller passes, as in the SQL store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from notifier.domain.batching import Pending
from notifier.domain.models import NoticeState, Priority, RequestState, StoredRequest, TakedownRequest
from notifier.domain.notices import Attempt, Notice, SendResult, notice_id
from notifier.store.ingest import as_utc

# As in the SQL store: the request states a delivery or a final failure may move (see notice_queries).
_DELIVERABLE = (RequestState.BATCHED, RequestState.DELIVERED)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRow:
    """A stored request, with what the SQL store keeps beside it."""

    stored: StoredRequest
    content_hash: str
    source: str


@dataclass(slots=True, kw_only=True)
class _NoticeRow:
    """A notice and the columns the :class:`Notice` model does not carry."""

    notice: Notice
    sequence: int
    primary_channel: str
    updated_at: datetime
    lease_owner: str | None = None
    lease_until: float | None = None
    alerted_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def view(self) -> Notice:
        return replace(self.notice, attempts=tuple(self.attempts))

    def held_by(self, owner: str) -> bool:
        return self.notice.state is NoticeState.SENDING and self.lease_owner == owner

    def end_claim(self, **changes: object) -> None:
        self.notice = replace(self.notice, **changes)  # type: ignore[arg-type]  # fields of Notice
        self.lease_owner, self.lease_until = None, None


class MemoryNoticeMixin:
    """Notices, attempts, sequences and rate buckets in dicts; every method is atomic because it
    never awaits midway."""

    if TYPE_CHECKING:
        _requests: dict[str, RequestRow]

        def _check(self) -> None: ...

    def _init_notices(self, lease_clock: Callable[[], float]) -> None:
        self._lease_clock = lease_clock
        self._notices: dict[str, _NoticeRow] = {}
        self._sequences: dict[str, int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # platform -> (tokens, filled at)

    def _notice_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for row in self._notices.values():
            per_platform = counts.setdefault(row.notice.platform, {})
            per_platform[row.notice.state.value] = per_platform.get(row.notice.state.value, 0) + 1
        return counts

    def _move_requests(
        self, notice: str, states: Iterable[RequestState], to: RequestState, **changes: object
    ) -> None:
        states = tuple(states)
        for request_id in self._notices[notice].notice.request_ids:
            row = self._requests[request_id]
            if row.stored.state in states:
                stored = replace(row.stored, state=to, **changes)  # type: ignore[arg-type]
                self._requests[request_id] = replace(row, stored=stored)

    # -- batching ---------------------------------------------------------------------------------

    async def pending_summary(self, platform: str) -> Pending:
        self._check()
        pending = [r.stored for r in self._pending(platform)]
        return Pending(
            count=len(pending),
            oldest_at=min((s.ingested_at for s in pending), default=None),
            urgent=sum(1 for s in pending if s.request.priority is Priority.URGENT),
        )

    def _pending(self, platform: str) -> list[RequestRow]:
        return [
            row
            for row in self._requests.values()
            if row.stored.request.platform == platform and row.stored.state is RequestState.PENDING
        ]

    async def form_notice(
        self, platform: str, *, max_items: int, channel: str, now: datetime, deliver_by: datetime
    ) -> Notice | None:
        self._check()
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        now, deliver_by = as_utc(now), as_utc(deliver_by)
        pending = sorted(
            (row.stored for row in self._pending(platform)),
            key=lambda s: (s.request.priority is not Priority.URGENT, s.ingested_at, s.request.request_id),
        )[:max_items]
        if not pending:
            return None
        sequence = self._sequences.get(platform, 0) + 1
        self._sequences[platform] = sequence
        notice = Notice(
            notice_id=notice_id(platform, now, sequence),
            platform=platform,
            channel=channel,
            state=NoticeState.QUEUED,
            created_at=now,
            request_ids=tuple(s.request.request_id for s in pending),
            deliver_by=deliver_by,
            next_attempt_at=now,
        )
        self._notices[notice.notice_id] = _NoticeRow(
            notice=notice, sequence=sequence, primary_channel=channel, updated_at=now
        )
        self._move_requests(
            notice.notice_id, [RequestState.PENDING], RequestState.BATCHED, notice_id=notice.notice_id
        )
        return notice

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]:
        self._check()
        row = self._notices.get(notice_id)
        if row is None:
            return []
        return [self._requests[i].stored.request for i in row.notice.request_ids]

    # -- claiming ---------------------------------------------------------------------------------

    async def claim_due(self, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Notice]:
        self._check()
        now, clock = as_utc(now), self._lease_clock()

        def due(row: _NoticeRow) -> bool:
            notice = row.notice
            if notice.state in (NoticeState.QUEUED, NoticeState.RETRYING):
                return notice.next_attempt_at is not None and notice.next_attempt_at <= now
            return (
                notice.state is NoticeState.SENDING
                and row.lease_until is not None
                and row.lease_until <= clock
            )

        rows = sorted(
            (row for row in self._notices.values() if due(row)),
            key=lambda row: (row.notice.next_attempt_at or row.notice.created_at, row.notice.notice_id),
        )[: max(limit, 0)]
        for row in rows:
            row.notice = replace(row.notice, state=NoticeState.SENDING)
            row.lease_owner, row.lease_until, row.updated_at = owner, clock + lease.total_seconds(), now
        return [row.view() for row in rows]

    async def next_attempt_due(self) -> datetime | None:
        self._check()
        due = [
            row.notice.next_attempt_at
            for row in self._notices.values()
            if row.notice.state in (NoticeState.QUEUED, NoticeState.RETRYING)
            and row.notice.next_attempt_at is not None
        ]
        return min(due, default=None)

    # -- outcomes of a claim ----------------------------------------------------------------------

    async def record_delivery(
        self, notice_id: str, *, owner: str, attempt: Attempt, result: SendResult, channel: str
    ) -> bool:
        self._check()
        at = as_utc(attempt.at)
        row = self._notices.get(notice_id)
        if row is None or not row.held_by(owner):
            return False
        changes: dict[str, object] = {"channel": channel, "next_attempt_at": None}
        if result.message_id is not None:
            changes["message_id"] = result.message_id
        if result.ticket is not None:
            changes |= {"ticket": result.ticket, "receipt_at": at}
        if result.awaiting_submission:
            changes["state"] = NoticeState.AWAITING_SUBMISSION
        else:
            changes |= {"state": NoticeState.DELIVERED, "delivered_at": at}
        row.end_claim(**changes)
        row.updated_at = at
        row.attempts.append(replace(attempt, at=at))
        if not result.awaiting_submission:
            self._move_requests(notice_id, _DELIVERABLE, RequestState.DELIVERED, delivered_at=at)
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
        self._check()
        at, deliver_by = as_utc(attempt.at), as_utc(deliver_by)
        next_at = None if next_attempt_at is None else as_utc(next_attempt_at)
        row = self._notices.get(notice_id)
        if row is None or not row.held_by(owner):
            return False
        row.end_claim(
            state=NoticeState.FAILED if next_at is None else NoticeState.RETRYING,
            channel=channel,
            next_attempt_at=next_at,
            deliver_by=deliver_by,
            fallback_used=fallback_used,
            last_error=attempt.detail,
        )
        row.updated_at = at
        row.attempts.append(replace(attempt, at=at))
        if next_at is None:
            self._move_requests(notice_id, _DELIVERABLE, RequestState.FAILED)
        return True

    async def record_attempt(self, notice_id: str, *, owner: str, attempt: Attempt) -> None:
        self._check()
        attempt = replace(attempt, at=as_utc(attempt.at))
        row = self._notices.get(notice_id)
        if row is not None and row.held_by(owner):
            row.attempts.append(attempt)

    async def release(self, notice_id: str, *, owner: str, until: datetime | None = None) -> None:
        self._check()
        row = self._notices.get(notice_id)
        if row is not None and row.held_by(owner):
            state = NoticeState.RETRYING if row.attempts else NoticeState.QUEUED
            if until is None:
                row.end_claim(state=state)
            else:
                row.end_claim(state=state, next_attempt_at=as_utc(until))

    # -- reads and staff actions ------------------------------------------------------------------

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]:
        self._check()
        return [self._notices[i].view() for i in dict.fromkeys(notice_ids) if i in self._notices]

    async def retry_failed(self, notice_id: str, *, now: datetime, deliver_by: datetime) -> Notice | None:
        self._check()
        now, deliver_by = as_utc(now), as_utc(deliver_by)
        row = self._notices.get(notice_id)
        if row is None or row.notice.state is not NoticeState.FAILED:
            return None
        row.notice = replace(
            row.notice,
            state=NoticeState.QUEUED,
            next_attempt_at=now,
            deliver_by=deliver_by,
            channel=row.primary_channel,
            fallback_used=False,
        )
        row.alerted_at, row.updated_at = None, now
        self._move_requests(notice_id, [RequestState.FAILED], RequestState.BATCHED)
        return row.view()

    async def mark_submitted(self, notice_id: str, *, at: datetime, ticket: str | None) -> Notice | None:
        self._check()
        at = as_utc(at)
        row = self._notices.get(notice_id)
        if row is None or row.notice.state is not NoticeState.AWAITING_SUBMISSION:
            return None
        row.notice = replace(
            row.notice,
            state=NoticeState.DELIVERED,
            delivered_at=at,
            ticket=row.notice.ticket if ticket is None else ticket,
        )
        row.updated_at = at
        self._move_requests(notice_id, _DELIVERABLE, RequestState.DELIVERED, delivered_at=at)
        return row.view()

    async def unalerted_failures(self, *, limit: int) -> list[Notice]:
        self._check()
        owed = sorted(
            (
                r
                for r in self._notices.values()
                if r.notice.state is NoticeState.FAILED and r.alerted_at is None
            ),
            key=lambda r: (r.updated_at, r.notice.notice_id),
        )
        return [row.view() for row in owed[: max(limit, 0)]]

    async def mark_alerted(self, notice_id: str, *, at: datetime) -> None:
        self._check()
        at = as_utc(at)
        row = self._notices.get(notice_id)
        if row is not None and row.alerted_at is None:
            row.alerted_at = at

    # -- rate limit -------------------------------------------------------------------------------

    async def take_rate_slot(self, platform: str, *, per_minute: int) -> float:
        self._check()
        if per_minute <= 0:
            return 0.0
        capacity, per_second, clock = float(per_minute), per_minute / 60.0, self._lease_clock()
        stored, filled_at = self._buckets.get(platform, (capacity, clock))
        tokens = min(capacity, stored + max(0.0, clock - filled_at) * per_second)
        if tokens < 1.0:
            return (1.0 - tokens) / per_second
        self._buckets[platform] = (tokens - 1.0, clock)
        return 0.0
