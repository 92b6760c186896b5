"""What the operations console's pages show (SPEC §16), from the store's bounded reads.

The staff's actions (record an acknowledgement or a submission, retry) are not here: the console
calls :mod:`notifier.services.operator`, as ``notifier ack`` and ``notifier retry`` do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.domain.models import (
    OPEN_NOTICE_STATES,
    OPEN_REQUEST_STATES,
    Conflict,
    DeadLetter,
    NoticeState,
    StoredRequest,
)
from notifier.domain.notices import AttemptOutcome, Notice
from notifier.domain.sla import SlaBounds
from notifier.ports import AckRecord, Cutoffs, Store

LISTED = 100  # rows per list of the work queue
HISTORY = 500  # acknowledgements shown on a notice's page


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformRow:
    platform: str
    open_requests: int
    open_notices: int
    due_soon: int
    breached: int
    oldest_open: datetime | None
    delivered_today: int
    receipts_today: int
    acks_today: int


def day_start(now: datetime, zone: ZoneInfo) -> datetime:
    """Midnight of ``now``'s day in ``zone``, in UTC: "today" is the authority's day."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def cutoffs(bounds: SlaBounds, *, now: datetime, due_within: timedelta) -> Cutoffs:
    """A delivered notice owes an acknowledgement and removal, an acknowledged one removal; each is
    breached once its bound has passed (strictly) and due soon when its bound ends within
    ``due_within``."""
    first = min(bounds.ack_within, bounds.removal_within)
    return Cutoffs(
        delivered_breached=now - first,
        delivered_due=now + due_within - first,
        acknowledged_breached=now - bounds.removal_within,
        acknowledged_due=now + due_within - bounds.removal_within,
    )


async def overview(
    store: Store,
    bounds: Mapping[str, SlaBounds],
    *,
    now: datetime,
    due_within: timedelta,
    zone: ZoneInfo,
) -> list[PlatformRow]:
    platforms = sorted(bounds)
    items = await store.open_items(platforms)
    figures = await store.console_figures(
        {p: cutoffs(bounds[p], now=now, due_within=due_within) for p in platforms},
        day_start=day_start(now, zone),
    )
    open_requests = {s.value for s in OPEN_REQUEST_STATES}
    open_notices = {s.value for s in OPEN_NOTICE_STATES}
    rows = []
    for platform in platforms:
        oldest = [
            t
            for t in (items.oldest_undelivered.get(platform), items.oldest_unacknowledged.get(platform))
            if t is not None
        ]
        figure = figures[platform]
        rows.append(
            PlatformRow(
                platform=platform,
                open_requests=sum(
                    n for s, n in items.requests.get(platform, {}).items() if s in open_requests
                ),
                open_notices=sum(n for s, n in items.notices.get(platform, {}).items() if s in open_notices),
                due_soon=figure.due_soon,
                breached=figure.breached,
                oldest_open=min(oldest) if oldest else None,
                delivered_today=figure.delivered_today,
                receipts_today=figure.receipts_today,
                acks_today=figure.acks_today,
            )
        )
    return rows


async def breached(store: Store, bounds: SlaBounds, platform: str, *, now: datetime) -> list[Notice]:
    cut = cutoffs(bounds, now=now, due_within=timedelta(0))
    return await store.breached_notices(platform, cut, limit=LISTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkQueue:
    awaiting_submission: list[Notice]
    failed: list[Notice]
    dead_letters: list[DeadLetter]
    conflicts: list[Conflict]


async def work_queue(store: Store) -> WorkQueue:
    return WorkQueue(
        awaiting_submission=await store.notices_in_state(NoticeState.AWAITING_SUBMISSION.value, limit=LISTED),
        failed=await store.notices_in_state(NoticeState.FAILED.value, limit=LISTED),
        dead_letters=await store.dead_letters(limit=LISTED),
        conflicts=await store.conflicts(limit=LISTED),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One line of a notice's timeline."""

    at: datetime
    # created, attempt, bounce, receipt, ack, reminder, ack_breach, removal_breach; manual records:
    # submitted, retry, clarify, withdraw
    kind: str
    channel: str = ""
    outcome: str = ""
    code: int | None = None
    duration_ms: int | None = None
    detail: str = ""
    source: str = ""
    ticket: str | None = None
    note: str | None = None
    by: str | None = None  # who entered it by hand (SPEC §15)
    entered_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticePage:
    notice: Notice
    requests: list[StoredRequest]
    deadlines: list[tuple[str, datetime]]
    timeline: list[Event] = field(default_factory=list)
    acks: list[AckRecord] = field(default_factory=list)


def _deadlines(notice: Notice, bounds: SlaBounds | None) -> list[tuple[str, datetime]]:
    found: list[tuple[str, datetime]] = []
    if notice.delivered_at is None:
        if notice.state in (NoticeState.QUEUED, NoticeState.SENDING, NoticeState.RETRYING):
            found.append(("deliver_by", notice.deliver_by))
        return found
    if bounds is not None:
        found.append(("ack_by", notice.delivered_at + bounds.ack_within))
        found.append(("remove_by", notice.delivered_at + bounds.removal_within))
    return found


def _attempt_kind(detail: str, outcome: AttemptOutcome) -> str:
    return "bounce" if outcome is not AttemptOutcome.DELIVERED and "bounce" in detail.lower() else "attempt"


async def notice_page(store: Store, notice_id: str, bounds: Mapping[str, SlaBounds]) -> NoticePage | None:
    found = await store.get_notices([notice_id])
    if not found:
        return None
    notice = found[0]
    requests = await store.get_requests(list(notice.request_ids))
    acks = await store.ack_history(notice_id, limit=HISTORY)
    decisions = await store.sla_decisions([notice_id])
    events = [Event(at=notice.created_at, kind="created", channel=notice.primary_channel or notice.channel)]
    events += [
        Event(
            at=a.at,
            kind=_attempt_kind(a.detail, a.outcome),
            channel=a.channel,
            outcome=a.outcome.value,
            code=a.code,
            duration_ms=a.duration_ms,
            detail=a.detail,
        )
        for a in notice.attempts
    ]
    if notice.receipt_at is not None:
        events.append(Event(at=notice.receipt_at, kind="receipt", ticket=notice.ticket))
    events += [
        Event(
            at=a.received_at,
            kind="ack",
            outcome=f"{a.status} ({a.outcome})",
            source=a.source,
            ticket=a.ticket,
            note=a.note,
            detail=a.items if a.items != "[]" else "",
            by=a.by,
            entered_at=a.entered_at,
        )
        for a in acks
    ]
    manual = (await store.manual_records([notice_id], limit=HISTORY)).get(notice_id, [])
    events += [
        Event(
            at=m.at,
            kind=m.action.value,
            source=m.source.value,
            detail=m.request_id or "",
            by=m.by,
            entered_at=m.entered_at,
        )
        for m in manual
    ]
    events += [
        Event(at=d.sent_at or d.decided_at, kind=d.kind.value, detail=d.message_ref or "") for d in decisions
    ]
    events.sort(key=lambda e: e.at)
    return NoticePage(
        notice=notice,
        requests=requests,
        deadlines=_deadlines(notice, bounds.get(notice.platform)),
        timeline=events,
        acks=acks,
    )


async def search(store: Store, term: str, *, limit: int = LISTED) -> Sequence[object]:
    return await store.search(term[:300], limit=limit)
