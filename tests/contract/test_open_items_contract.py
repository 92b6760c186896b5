"""The open-items contract behind the gauges of ``/metrics`` (SPEC §10), on SQLite and
PostgreSQL.

Requests and notices reach their states through the daemon's own steps (ingest → form → claim →
deliver → acknowledge, fail or bounce), so what is counted is what the store itself wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifier.domain.acks import Ack, AckItem, AckStatus, ItemStatus, plan_ack
from notifier.domain.delivery import DeliveryDecision, Step
from notifier.domain.models import NoticeState, Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.ports import Incoming, OpenItems, Store

T0 = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
HOUR = timedelta(hours=1)
NOTHING_OPEN = OpenItems(requests={}, notices={}, oldest_undelivered={}, oldest_unacknowledged={})


def make(request_id: str, platform: str) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=(f"https://example.test/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )


async def ingest(store: Store, platform: str, *request_ids: str, at: datetime) -> None:
    await store.ingest([Incoming(request=make(i, platform), source="test") for i in request_ids], [], now=at)


async def formed(store: Store, platform: str, *request_ids: str, at: datetime) -> Notice:
    """Requests ingested at ``at`` and formed into a queued notice (nothing else may be pending)."""
    await ingest(store, platform, *request_ids, at=at)
    notice = await store.form_notice(
        platform, max_items=50, channel="email", now=at, deliver_by=at + 6 * HOUR
    )
    assert notice is not None
    return notice


async def claimed(store: Store, platform: str, *request_ids: str, at: datetime) -> Notice:
    notice = await formed(store, platform, *request_ids, at=at)
    claims = await store.claim_due(owner="w1", now=at, lease=LEASE, limit=10)
    assert [n.notice_id for n in claims] == [notice.notice_id]
    return notice


async def delivered(store: Store, platform: str, *request_ids: str, at: datetime) -> Notice:
    """Requests ingested an hour before ``at``, in one notice delivered at ``at``."""
    notice = await claimed(store, platform, *request_ids, at=at - HOUR)
    assert await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=at, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id=f"<{notice.notice_id}@notifier>", ticket=None),
        channel="email",
    )
    return notice


async def acknowledge(store: Store, notice: Notice, status: AckStatus, at: datetime, *items: AckItem) -> None:
    ack = Ack(notice_id=notice.notice_id, status=status, received_at=at, source="test", items=items)
    context = await store.ack_context(notice.notice_id)
    assert context is not None
    current, states = context
    assert await store.apply_ack(ack, plan_ack(current.state, states, ack))


async def test_nothing_stored_means_nothing_open(store: Store) -> None:
    assert await store.open_items(["telegram", "videohost"]) == NOTHING_OPEN
    assert await store.open_items([]) == NOTHING_OPEN


async def test_open_items_count_what_is_not_final_and_date_the_oldest_per_platform(store: Store) -> None:
    removed = await delivered(store, "telegram", "r1", "r2", at=T0)
    await acknowledge(store, removed, AckStatus.REMOVED, T0 + 2 * HOUR)
    # One of two answered: the notice is acknowledged, a2 still waits for its acknowledgement.
    partly = await delivered(store, "telegram", "a1", "a2", at=T0 + HOUR)
    await acknowledge(
        store, partly, AckStatus.PARTIAL, T0 + 2 * HOUR, AckItem(request_id="a1", status=ItemStatus.RECEIVED)
    )
    await delivered(store, "telegram", "d1", at=T0 + 2 * HOUR)
    await formed(store, "telegram", "b1", "b2", at=T0 + 3 * HOUR)
    await ingest(store, "telegram", "p1", "p2", "p3", at=T0 + 4 * HOUR)
    done = await delivered(store, "videohost", "v1", at=T0)
    await acknowledge(store, done, AckStatus.REJECTED, T0 + HOUR)
    await ingest(store, "not-asked", "x1", at=T0 - 9 * HOUR)

    items = await store.open_items(["telegram", "videohost"])

    assert items.requests == {"telegram": {"pending": 3, "batched": 2, "delivered": 2, "acknowledged": 1}}
    assert items.notices == {"telegram": {"queued": 1, "delivered": 1, "acknowledged": 1}}
    assert items.oldest_undelivered == {"telegram": T0 + 3 * HOUR}
    # Per request, as the report counts: a2 of the acknowledged notice is older than d1.
    assert items.oldest_unacknowledged == {"telegram": T0 + HOUR}


async def test_a_notice_that_failed_for_good_leaves_nothing_open(store: Store) -> None:
    notice = await claimed(store, "telegram", "f1", "f2", at=T0)
    assert await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=T0, channel="email", outcome=AttemptOutcome.PERMANENT_ERROR, code=550),
        channel="email",
        next_attempt_at=None,
        deliver_by=T0 + 6 * HOUR,
        fallback_used=False,
    )

    assert await store.open_items(["telegram"]) == NOTHING_OPEN


async def test_a_retrying_notice_keeps_its_requests_undelivered(store: Store) -> None:
    notice = await claimed(store, "telegram", "t1", at=T0)
    assert await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=T0, channel="email", outcome=AttemptOutcome.TRANSIENT_ERROR, code=451),
        channel="email",
        next_attempt_at=T0 + HOUR,
        deliver_by=T0 + 6 * HOUR,
        fallback_used=False,
    )

    items = await store.open_items(["telegram"])

    assert (items.requests, items.notices) == ({"telegram": {"batched": 1}}, {"telegram": {"retrying": 1}})
    assert (items.oldest_undelivered, items.oldest_unacknowledged) == ({"telegram": T0}, {})


async def test_a_bounced_notice_is_no_longer_awaiting_acknowledgement(store: Store) -> None:
    notice = await delivered(store, "telegram", "m1", "m2", at=T0)
    assert (await store.open_items(["telegram"])).oldest_unacknowledged == {"telegram": T0}

    assert await store.record_bounce(
        notice.notice_id,
        attempt=Attempt(at=T0 + HOUR, channel="email", outcome=AttemptOutcome.PERMANENT_ERROR, code=550),
        delivery=DeliveryDecision(
            step=Step.RETRY,
            before=NoticeState.DELIVERED,
            state=NoticeState.RETRYING,
            channel="email",
            next_attempt_at=T0 + 2 * HOUR,
            deliver_by=T0 + 6 * HOUR,
            fallback_used=False,
        ),
    )

    items = await store.open_items(["telegram"])
    assert (items.requests, items.notices) == ({"telegram": {"batched": 2}}, {"telegram": {"retrying": 1}})
    assert (items.oldest_undelivered, items.oldest_unacknowledged) == ({"telegram": T0 - HOUR}, {})
