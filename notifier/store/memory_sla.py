"""The in-memory :class:`notifier.store.sla_port.SlaStore`, the half of :class:`MemoryStore` that keeps
SLA decisions. It keeps the SQL store's rules (``tests/contract/test_sla_store_contract.py`` runs
against both): a decision is recorded once, and its first sending is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from notifier.domain.models import NoticeState, RequestState
from notifier.domain.sla import JUDGED_STATES, SlaFacts, SlaKind
from notifier.ports import SlaClaim, SlaDecision, SlaReschedule
from notifier.store.ingest import as_utc

if TYPE_CHECKING:
    from notifier.store.memory_notices import RequestRow, _NoticeRow

_CLOSED_REQUESTS = (RequestState.REMOVED, RequestState.REJECTED, RequestState.WITHDRAWN, RequestState.FAILED)


class MemorySlaMixin:
    """SLA decisions in a dict keyed like the SQL table; every method is atomic (it never awaits)."""

    if TYPE_CHECKING:
        _requests: dict[str, RequestRow]
        _notices: dict[str, _NoticeRow]
        _lease_clock: Callable[[], float]

        def _check(self) -> None: ...

    def _init_sla(self) -> None:
        self._sla: dict[tuple[str, SlaKind], SlaDecision] = {}
        self._sla_claims: dict[tuple[str, SlaKind], tuple[str, float]] = {}  # owner, until
        self._sla_timers: dict[str, datetime | None] = {}

    def _sla_timer(self, row: _NoticeRow) -> datetime | None:
        """The notice's timer: as last moved, else from when its clock started (a simplification of
        the SQL store's, which a delivery and a bounce set; this fake is being retired)."""
        notice = row.notice
        if notice.state not in JUDGED_STATES:
            return None
        if notice.notice_id in self._sla_timers:
            return self._sla_timers[notice.notice_id]
        return notice.delivered_at or row.updated_at

    async def claim_sla_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[SlaClaim]:
        self._check()
        now = as_utc(now)
        due = sorted(
            (
                (timer, row)
                for row in self._notices.values()
                if (timer := self._sla_timer(row)) and timer <= now
            ),
            key=lambda item: (item[0], item[1].notice.notice_id),
        )[: max(0, limit)]
        claims: list[SlaClaim] = []
        for _, row in due:
            notice = row.notice
            self._sla_timers[notice.notice_id] = now + lease
            open_requests = sum(
                1
                for r in self._requests.values()
                if r.stored.notice_id == notice.notice_id and r.stored.state not in _CLOSED_REQUESTS
            )
            awaiting = notice.state is NoticeState.AWAITING_SUBMISSION
            claims.append(
                SlaClaim(
                    notice_id=notice.notice_id,
                    platform=notice.platform,
                    channel=notice.channel,
                    state=notice.state,
                    claimed_until=now + lease,
                    facts=SlaFacts(
                        delivered_at=notice.delivered_at,
                        acknowledged_at=notice.acknowledged_at,
                        open_requests=open_requests,
                        decided=frozenset(kind for (nid, kind) in self._sla if nid == notice.notice_id),
                        rendered_at=row.updated_at if awaiting else None,
                    ),
                )
            )
        return claims

    async def reschedule_sla(self, moves: Sequence[SlaReschedule]) -> int:
        self._check()
        moved = 0
        for move in moves:
            if self._sla_timers.get(move.notice_id) == as_utc(move.claimed_until):
                self._sla_timers[move.notice_id] = move.next_at
                moved += 1
        return moved

    async def next_sla_due(self) -> datetime | None:
        self._check()
        timers = [timer for row in self._notices.values() if (timer := self._sla_timer(row)) is not None]
        return min(timers, default=None)

    async def drop_decision(self, notice_id: str, kind: SlaKind, *, owner: str, at: datetime) -> bool:
        self._check()
        key = (notice_id, SlaKind(kind))
        decision = self._sla.get(key)
        if decision is None or decision.sent_at is not None or decision.dropped_at is not None:
            return False
        if self._sla_claims.get(key, ("", 0.0))[0] != owner:
            return False
        self._sla[key] = replace(decision, dropped_at=as_utc(at))
        del self._sla_claims[key]
        return True

    async def decide(
        self, notice_id: str, due: Mapping[SlaKind, datetime], *, decided_at: datetime
    ) -> frozenset[SlaKind]:
        self._check()
        decided: set[SlaKind] = set()
        entries = [
            SlaDecision(
                notice_id=notice_id, kind=SlaKind(kind), due_at=as_utc(at), decided_at=as_utc(decided_at)
            )
            for kind, at in due.items()
        ]
        for decision in entries:
            key = (notice_id, decision.kind)
            if key not in self._sla:
                self._sla[key] = decision
                decided.add(decision.kind)
        return frozenset(decided)

    def _sla_sorted(self, decisions: list[SlaDecision]) -> list[SlaDecision]:
        return sorted(decisions, key=lambda d: (d.decided_at, d.notice_id, d.kind.value))

    async def claim_unsent_decisions(self, *, owner: str, lease: timedelta, limit: int) -> list[SlaDecision]:
        self._check()
        now = self._lease_clock()
        free = [
            d
            for key, d in self._sla.items()
            if d.sent_at is None and d.dropped_at is None and self._sla_claims.get(key, (None, 0.0))[1] < now
        ]
        by_notice: dict[str, list[SlaDecision]] = {}
        for decision in free:
            by_notice.setdefault(decision.notice_id, []).append(decision)
        never = datetime.max.replace(tzinfo=UTC)

        def delivered(notice_id: str) -> datetime:
            row = self._notices.get(notice_id)
            return (row.notice.delivered_at if row is not None else None) or never

        chosen = sorted(by_notice, key=lambda n: (delivered(n), n))[:limit]
        claimed = self._sla_sorted([d for n in chosen for d in by_notice[n]])
        for decision in claimed:
            self._sla_claims[(decision.notice_id, decision.kind)] = (owner, now + lease.total_seconds())
        return claimed

    async def release_decision(self, notice_id: str, kind: SlaKind, *, owner: str) -> None:
        self._check()
        key = (notice_id, SlaKind(kind))
        if self._sla_claims.get(key, ("", 0.0))[0] == owner:
            del self._sla_claims[key]

    async def unsent_decisions(self, *, limit: int) -> list[SlaDecision]:
        self._check()
        owed = [d for d in self._sla.values() if d.sent_at is None and d.dropped_at is None]
        return self._sla_sorted(owed)[:limit]

    async def mark_decision_sent(
        self, notice_id: str, kind: SlaKind, *, at: datetime, message_ref: str | None
    ) -> None:
        self._check()
        at = as_utc(at)
        key = (notice_id, SlaKind(kind))
        decision = self._sla.get(key)
        if decision is not None and decision.sent_at is None and decision.dropped_at is None:
            self._sla[key] = replace(decision, sent_at=at, message_ref=message_ref)

    async def sla_decisions(self, notice_ids: Sequence[str]) -> list[SlaDecision]:
        self._check()
        wanted = set(notice_ids)
        return sorted(
            (d for d in self._sla.values() if d.notice_id in wanted),
            key=lambda d: (d.decided_at, d.kind.value),
        )
