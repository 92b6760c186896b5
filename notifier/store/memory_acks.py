"""The in-memory :class:`notifier.ports.AckStore`, the half of :class:`MemoryStore` that takes in
acknowledgements, receipts and bounces.

It keeps the SQL store's rules (``tests/contract/test_ack_store_contract.py`` runs against both):
a plan is carried out only if the states it was computed from still hold, first times are never
overwritten, and a bounce is taken only from ``delivered``. :meth:`MemoryAckMixin.ack_history`
reads back what the SQL store keeps in its ``acks`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from notifier.domain.acks import Ack, AckPlan
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Attempt, Notice
from notifier.store.ingest import as_utc

if TYPE_CHECKING:
    from collections.abc import Iterable

    from notifier.store.memory_notices import RequestRow, _NoticeRow

APPLIED = "applied"  # as in notifier.store.acks_sql


@dataclass(frozen=True, slots=True, kw_only=True)
class AckRecord:
    """One row of the acknowledgement history: what was received, and what came of it."""

    ack: Ack
    outcome: str  # "applied", or why nothing changed


class MemoryAckMixin:
    """Acknowledgement history and the callbacks and mails already seen, in lists and dicts; every
    method is atomic because it never awaits midway."""

    if TYPE_CHECKING:
        _requests: dict[str, RequestRow]
        _notices: dict[str, _NoticeRow]

        def _check(self) -> None: ...

        def _move_requests(
            self, notice: str, states: Iterable[RequestState], to: RequestState, **changes: object
        ) -> None: ...

    def _init_acks(self) -> None:
        self._ack_history: list[AckRecord] = []
        self._seen_webhooks: dict[tuple[str, str], datetime] = {}
        self._seen_mail: dict[tuple[str, int, int], datetime] = {}

    def ack_history(self, notice_id: str | None = None) -> list[AckRecord]:
        """The acknowledgements kept, in the order received (of one notice, when given)."""
        return [r for r in self._ack_history if notice_id is None or r.ack.notice_id == notice_id]

    def _keep(self, ack: Ack, outcome: str) -> None:
        platform_at = None if ack.platform_at is None else as_utc(ack.platform_at)
        kept = replace(ack, received_at=as_utc(ack.received_at), platform_at=platform_at)
        self._ack_history.append(AckRecord(ack=kept, outcome=outcome))

    async def ack_context(self, notice_id: str) -> tuple[Notice, dict[str, RequestState]] | None:
        self._check()
        row = self._notices.get(notice_id)
        if row is None:
            return None
        notice = row.view()
        return notice, {i: self._requests[i].stored.state for i in notice.request_ids}

    async def apply_ack(self, ack: Ack, plan: AckPlan) -> bool:
        self._check()
        as_utc(ack.received_at)  # refuse a naive time before anything changes
        row = self._notices.get(ack.notice_id)
        if row is None or row.notice.state is not plan.notice_before:
            return False
        for change in plan.changes:
            request = self._requests.get(change.request_id)
            if (
                request is None
                or request.stored.notice_id != ack.notice_id
                or request.stored.state is not change.before
            ):
                return False
        notice = row.notice
        row.notice = replace(
            notice,
            state=plan.notice_after,
            acknowledged_at=_first(notice.acknowledged_at, plan.notice_acknowledged_at),
            resolved_at=_first(notice.resolved_at, plan.notice_resolved_at),
            ticket=notice.ticket if notice.ticket is not None else ack.ticket,
        )
        row.updated_at = as_utc(ack.received_at)
        for change in plan.changes:
            request = self._requests[change.request_id]
            stored = replace(
                request.stored,
                state=change.after,
                acknowledged_at=_first(request.stored.acknowledged_at, change.acknowledged_at),
                resolved_at=_first(request.stored.resolved_at, change.resolved_at),
            )
            self._requests[change.request_id] = replace(request, stored=stored)
        self._keep(ack, APPLIED)
        return True

    async def record_ack_history(self, ack: Ack, *, outcome: str) -> None:
        self._check()
        self._keep(ack, outcome)

    async def record_receipt(self, notice_id: str, *, at: datetime, ticket: str | None, source: str) -> bool:
        self._check()
        at = as_utc(at)
        row = self._notices.get(notice_id)
        if row is None:
            return False
        notice = row.notice
        row.notice = replace(
            notice,
            receipt_at=_first(notice.receipt_at, at),
            ticket=notice.ticket if notice.ticket is not None else ticket,
        )
        return True

    async def record_bounce(
        self,
        notice_id: str,
        *,
        attempt: Attempt,
        channel: str,
        next_attempt_at: datetime,
        deliver_by: datetime,
        fallback_used: bool,
    ) -> bool:
        self._check()
        at, next_at, deliver_by = as_utc(attempt.at), as_utc(next_attempt_at), as_utc(deliver_by)
        row = self._notices.get(notice_id)
        if row is None or row.notice.state is not NoticeState.DELIVERED:
            return False
        row.end_claim(
            state=NoticeState.RETRYING,
            channel=channel,
            next_attempt_at=next_at,
            deliver_by=deliver_by,
            fallback_used=fallback_used,
            delivered_at=None,
            last_error=attempt.detail,
        )
        row.updated_at = at
        row.attempts.append(replace(attempt, at=at))
        self._move_requests(notice_id, [RequestState.DELIVERED], RequestState.BATCHED, delivered_at=None)
        return True

    async def remember_webhook(self, platform: str, webhook_id: str, *, at: datetime) -> bool:
        self._check()
        key = (platform, webhook_id)
        if key in self._seen_webhooks:
            return False
        self._seen_webhooks[key] = as_utc(at)
        return True

    async def remember_mail(self, mailbox: str, uidvalidity: int, uid: int, *, at: datetime) -> bool:
        self._check()
        key = (mailbox, uidvalidity, uid)
        if key in self._seen_mail:
            return False
        self._seen_mail[key] = as_utc(at)
        return True

    async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        self._check()
        return {uid for uid in uids if (mailbox, uidvalidity, uid) in self._seen_mail}

    async def notice_by_ticket(self, ticket: str, *, platform: str | None = None) -> str | None:
        self._check()
        carrying = [
            row
            for row in self._notices.values()
            if row.notice.ticket == ticket and (platform is None or row.notice.platform == platform)
        ]
        if not carrying:
            return None
        newest = max(carrying, key=lambda row: (row.notice.created_at, row.sequence))
        return newest.notice.notice_id


def _first(stored: datetime | None, given: datetime | None) -> datetime | None:
    """A first time is never overwritten."""
    if stored is not None or given is None:
        return stored
    return as_utc(given)
