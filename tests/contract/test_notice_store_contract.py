"""The NoticeStore contract: batching, claims, outcomes and rate limits, run against SQLite and
PostgreSQL.

Leases are judged by the store's own clock (the real one, on both), so the tests that let a
lease run out use a short lease and wait for its expiry with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import pytest

from notifier.domain.models import NoticeState, Priority, RequestState, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.ports import Incoming, NoticeStore, Store

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
DELIVER_BY = NOW + timedelta(hours=6)
LONG = timedelta(minutes=10)  # a lease that cannot run out during a test
SHORT = timedelta(seconds=0.2)  # a lease a test waits out
DELIVERED, TRANSIENT, PERMANENT = (
    AttemptOutcome.DELIVERED,
    AttemptOutcome.TRANSIENT_ERROR,
    AttemptOutcome.PERMANENT_ERROR,
)


class FullStore(Store, NoticeStore, Protocol):
    """What the daemon gets from ``create_store``: both ports on one object."""


def make(request_id: str, *, platform: str = "telegram", urgent: bool = False) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=(f"https://t.me/c/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.URGENT if urgent else Priority.NORMAL,
    )


async def ingest(store: FullStore, *requests: TakedownRequest, now: datetime = NOW) -> None:
    await store.ingest([Incoming(request=r, source="test") for r in requests], [], now=now)


async def form(
    store: FullStore,
    platform: str = "telegram",
    *,
    max_items: int = 50,
    channel: str = "email",
    now: datetime = NOW,
) -> Notice:
    notice = await store.form_notice(
        platform, max_items=max_items, channel=channel, now=now, deliver_by=DELIVER_BY
    )
    assert notice is not None
    return notice


async def claim_one(
    store: FullStore, owner: str = "w1", *, now: datetime = NOW, lease: timedelta = LONG
) -> Notice:
    [notice] = await store.claim_due(owner=owner, now=now, lease=lease, limit=10)
    return notice


async def formed_and_claimed(store: FullStore, *request_ids: str, owner: str = "w1") -> Notice:
    await ingest(store, *(make(i) for i in request_ids or ("r1",)))
    notice = await form(store)
    claimed = await claim_one(store, owner)
    assert claimed.notice_id == notice.notice_id
    return claimed


def attempt(
    outcome: AttemptOutcome = DELIVERED, *, at: datetime = NOW, channel: str = "email", **extra: Any
) -> Attempt:
    return Attempt(at=at, channel=channel, outcome=outcome, **extra)


async def one_notice(store: FullStore, notice_id: str) -> Notice:
    [notice] = await store.get_notices([notice_id])
    return notice


async def request_states(store: FullStore, request_ids: Sequence[str]) -> dict[str, RequestState]:
    return {s.request.request_id: s.state for s in await store.get_requests(request_ids)}


# -- batching ----------------------------------------------------------------------------------


async def test_pending_summary_counts_a_platforms_pending_requests(store: FullStore) -> None:
    assert (await store.pending_summary("telegram")).count == 0
    await ingest(store, make("a"), make("b", urgent=True), make("x", platform="x"))
    await ingest(store, make("c"), now=NOW + timedelta(minutes=5))

    summary = await store.pending_summary("telegram")

    assert (summary.count, summary.oldest_at, summary.urgent) == (3, NOW, 1)
    empty = await store.pending_summary("discord")
    assert (empty.count, empty.oldest_at, empty.urgent) == (0, None, 0)


async def test_a_notice_takes_urgent_requests_first_then_the_oldest(store: FullStore) -> None:
    await ingest(store, make("old-b"), make("old-a"))
    await ingest(store, make("newer"), make("urgent-late", urgent=True), now=NOW + timedelta(minutes=1))
    await ingest(store, make("urgent-latest", urgent=True), now=NOW + timedelta(minutes=2))

    notice = await form(store, max_items=4)

    # Urgent by age, then the rest by age, request id breaking ties between equal times.
    assert notice.request_ids == ("urgent-late", "urgent-latest", "old-a", "old-b")
    assert [r.request_id for r in await store.notice_requests(notice.notice_id)] == list(notice.request_ids)
    assert (await request_states(store, ["newer"])) == {"newer": RequestState.PENDING}


async def test_a_notice_holds_at_most_max_items_and_the_rest_stay_pending(store: FullStore) -> None:
    await ingest(store, *(make(f"r{i:02d}") for i in range(7)))

    first, second = await form(store, max_items=3), await form(store, max_items=3)
    third = await form(store, max_items=3)

    assert [len(n.request_ids) for n in (first, second, third)] == [3, 3, 1]
    assert (
        await store.form_notice("telegram", max_items=3, channel="email", now=NOW, deliver_by=DELIVER_BY)
        is None
    )


async def test_nothing_pending_forms_no_notice(store: FullStore) -> None:
    await ingest(store, make("x1", platform="x"))

    assert await store.form_notice("telegram", max_items=50, channel="email", now=NOW, deliver_by=NOW) is None
    assert (await store.status_counts()).notices == {}


async def test_notice_ids_count_up_per_platform_with_the_utc_date(store: FullStore) -> None:
    await ingest(store, make("t1"), make("t2"), make("x1", platform="x"))
    # 08:30 in Seoul on the 4th is still the 3rd in UTC.
    seoul = datetime(2024, 9, 4, 8, 30, tzinfo=timezone(timedelta(hours=9)))

    first = await form(store, max_items=1, now=seoul)
    on_x = await form(store, "x", now=seoul)
    second = await form(store, max_items=1, now=NOW + timedelta(days=1))

    assert first.notice_id == "TD-telegram-20240903-000001"
    assert on_x.notice_id == "TD-x-20240903-000001"
    assert second.notice_id == "TD-telegram-20240904-000002"


async def test_a_new_notice_is_queued_due_now_and_its_requests_are_batched_into_it(store: FullStore) -> None:
    await ingest(store, make("a"), make("b"))

    notice = await form(store, channel="api", now=NOW + timedelta(minutes=3))

    assert notice.state is NoticeState.QUEUED
    assert notice.channel == "api"
    assert notice.created_at == notice.next_attempt_at == NOW + timedelta(minutes=3)
    assert notice.deliver_by == DELIVER_BY
    assert (notice.fallback_used, notice.attempts, notice.delivered_at) == (False, (), None)
    assert await store.get_notices([notice.notice_id]) == [notice]
    for stored in await store.get_requests(["a", "b"]):
        assert (stored.state, stored.notice_id) == (RequestState.BATCHED, notice.notice_id)
    counts = await store.status_counts()
    assert counts.notices == {"telegram": {"queued": 1}}
    assert counts.requests == {"telegram": {"batched": 2}}


async def test_get_notices_leaves_unknown_ids_out(store: FullStore) -> None:
    await ingest(store, make("a"), make("b"))
    first, second = await form(store, max_items=1), await form(store, max_items=1)

    found = await store.get_notices([second.notice_id, "TD-telegram-20240903-999999", first.notice_id])

    assert [n.notice_id for n in found] == [second.notice_id, first.notice_id]
    assert await store.get_notices([]) == []
    assert await store.notice_requests("TD-telegram-20240903-999999") == []


async def test_a_naive_time_is_refused(store: FullStore) -> None:
    await ingest(store, make("a"))

    with pytest.raises(ValueError, match="naive"):
        await store.form_notice(
            "telegram", max_items=5, channel="email", now=NOW.replace(tzinfo=None), deliver_by=NOW
        )

    assert (await store.pending_summary("telegram")).count == 1


# -- claims and leases -------------------------------------------------------------------------


async def test_only_due_notices_are_claimed_earliest_first(store: FullStore) -> None:
    await ingest(store, make("a"), make("b"), make("c"))
    later = await form(store, max_items=1, now=NOW + timedelta(minutes=2))
    earlier = await form(store, max_items=1, now=NOW + timedelta(minutes=1))
    await form(store, max_items=1, now=NOW + timedelta(minutes=5))

    claimed = await store.claim_due(owner="w1", now=NOW + timedelta(minutes=2), lease=LONG, limit=10)

    assert [n.notice_id for n in claimed] == [earlier.notice_id, later.notice_id]
    assert all(n.state is NoticeState.SENDING for n in claimed)
    assert claimed[0].request_ids == earlier.request_ids
    assert (await store.status_counts()).notices == {"telegram": {"queued": 1, "sending": 2}}


async def test_next_attempt_due_is_the_earliest_queued_or_retrying_notice(store: FullStore) -> None:
    assert await store.next_attempt_due() is None
    await ingest(store, make("a"), make("b"), make("c"))
    sent = await form(store, max_items=1, now=NOW)
    await form(store, max_items=1, now=NOW + timedelta(minutes=3))
    await form(store, max_items=1, now=NOW + timedelta(minutes=2))
    assert await store.next_attempt_due() == NOW

    # Claimed (sending) notices are not waiting for a retry: the next one due is two minutes on.
    [claimed] = await store.claim_due(owner="w1", now=NOW, lease=LONG, limit=1)
    assert claimed.notice_id == sent.notice_id
    assert await store.next_attempt_due() == NOW + timedelta(minutes=2)

    # A transient failure puts it back, retrying at a stored time earlier than the rest.
    attempt = Attempt(at=NOW, channel="email", outcome=TRANSIENT, detail="451 try later", duration_ms=5)
    assert await store.record_failure(
        sent.notice_id,
        owner="w1",
        attempt=attempt,
        channel="email",
        next_attempt_at=NOW + timedelta(seconds=30),
        deliver_by=DELIVER_BY,
        fallback_used=False,
    )
    assert await store.next_attempt_due() == NOW + timedelta(seconds=30)


async def test_claim_due_respects_its_limit(store: FullStore) -> None:
    await ingest(store, *(make(f"r{i}") for i in range(5)))
    for _ in range(5):
        await form(store, max_items=1)

    assert len(await store.claim_due(owner="w1", now=NOW, lease=LONG, limit=3)) == 3
    assert len(await store.claim_due(owner="w2", now=NOW, lease=LONG, limit=3)) == 2


async def test_a_notice_under_lease_is_not_claimed_by_another_owner(store: FullStore) -> None:
    notice = await formed_and_claimed(store, owner="w1")

    assert await store.claim_due(owner="w2", now=NOW + timedelta(days=1), lease=LONG, limit=10) == []
    assert not await store.record_delivery(
        notice.notice_id, owner="w2", attempt=attempt(), result=SendResult(code=250), channel="email"
    )
    assert (await one_notice(store, notice.notice_id)).state is NoticeState.SENDING


async def test_an_expired_lease_is_taken_over_and_its_first_owner_can_no_longer_record(
    store: FullStore,
) -> None:
    await ingest(store, make("a"))
    notice = await form(store)
    started = time.monotonic()
    await claim_one(store, "w1", lease=SHORT)

    # The business time of the second claim is before the notice was due: an expired lease is
    # reclaimed whatever the business time says (the process holding it died).
    taken = await wait_for_claim(store, "w2", now=NOW - timedelta(hours=1))

    assert time.monotonic() - started >= SHORT.total_seconds() - 0.05
    assert taken.notice_id == notice.notice_id
    assert taken.state is NoticeState.SENDING
    late = attempt(TRANSIENT, detail="late")
    assert not await store.record_delivery(
        notice.notice_id, owner="w1", attempt=late, result=SendResult(), channel="email"
    )
    assert not await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=late,
        channel="email",
        next_attempt_at=NOW,
        deliver_by=DELIVER_BY,
        fallback_used=False,
    )
    await store.record_attempt(notice.notice_id, owner="w1", attempt=late)
    await store.release(notice.notice_id, owner="w1")
    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.attempts) == (NoticeState.SENDING, ())
    assert await store.record_delivery(
        notice.notice_id, owner="w2", attempt=attempt(), result=SendResult(), channel="email"
    )


async def wait_for_claim(store: FullStore, owner: str, *, now: datetime, within: float = 10.0) -> Notice:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        claimed = await store.claim_due(owner=owner, now=now, lease=LONG, limit=10)
        if claimed:
            [notice] = claimed
            return notice
        await asyncio.sleep(0.02)
    pytest.fail(f"{owner} claimed nothing within {within} s")


async def test_release_hands_a_notice_back_due_at_once(store: FullStore) -> None:
    notice = await formed_and_claimed(store)

    await store.release(notice.notice_id, owner="w1")

    assert (await one_notice(store, notice.notice_id)).state is NoticeState.QUEUED
    again = await claim_one(store, "w2")
    await store.record_attempt(notice.notice_id, owner="w2", attempt=attempt(TRANSIENT, detail="421"))
    await store.release(notice.notice_id, owner="w2")
    # Tried before: it goes back as a retry.
    assert again.notice_id == notice.notice_id
    assert (await one_notice(store, notice.notice_id)).state is NoticeState.RETRYING
    assert (await claim_one(store, "w3")).notice_id == notice.notice_id


# -- outcomes ----------------------------------------------------------------------------------


async def test_a_delivery_delivers_the_notice_and_its_requests(store: FullStore) -> None:
    notice = await formed_and_claimed(store, "a", "b")
    at = NOW + timedelta(seconds=3)

    recorded = await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=attempt(at=at, channel="api", code=201, duration_ms=40),
        result=SendResult(code=201, ticket="TG-77", message_id="<m1@notifier>"),
        channel="api",
    )

    assert recorded
    after = await one_notice(store, notice.notice_id)
    assert after.state is NoticeState.DELIVERED
    assert (after.delivered_at, after.receipt_at, after.ticket) == (at, at, "TG-77")
    assert (after.message_id, after.channel, after.next_attempt_at) == ("<m1@notifier>", "api", None)
    for stored in await store.get_requests(["a", "b"]):
        assert (stored.state, stored.delivered_at, stored.notice_id) == (
            RequestState.DELIVERED,
            at,
            notice.notice_id,
        )
    # Out of sending, nobody holds it: not claimable, and a second report is refused.
    assert await store.claim_due(owner="w2", now=at + timedelta(days=1), lease=LONG, limit=10) == []
    assert not await store.record_delivery(
        notice.notice_id, owner="w1", attempt=attempt(), result=SendResult(), channel="api"
    )


async def test_a_delivery_without_a_ticket_records_no_receipt(store: FullStore) -> None:
    notice = await formed_and_claimed(store)

    await store.record_delivery(
        notice.notice_id, owner="w1", attempt=attempt(code=250), result=SendResult(code=250), channel="email"
    )

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.delivered_at, after.receipt_at, after.ticket) == (
        NoticeState.DELIVERED,
        NOW,
        None,
        None,
    )


async def test_a_portal_notice_awaits_submission_then_staff_deliver_it(store: FullStore) -> None:
    notice = await formed_and_claimed(store, "a")
    await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=attempt(channel="manual"),
        result=SendResult(awaiting_submission=True),
        channel="manual",
    )
    waiting = await one_notice(store, notice.notice_id)
    assert (waiting.state, waiting.delivered_at) == (NoticeState.AWAITING_SUBMISSION, None)
    assert await request_states(store, ["a"]) == {"a": RequestState.BATCHED}
    assert await store.claim_due(owner="w2", now=NOW + timedelta(days=1), lease=LONG, limit=10) == []

    submitted_at = NOW + timedelta(hours=2)
    submitted = await store.mark_submitted(notice.notice_id, at=submitted_at, ticket="PORTAL-9")

    assert submitted is not None
    assert (submitted.state, submitted.delivered_at) == (NoticeState.DELIVERED, submitted_at)
    # Typed in by staff: a ticket to match replies by, not an automated receipt.
    assert (submitted.ticket, submitted.receipt_at) == ("PORTAL-9", None)
    [stored] = await store.get_requests(["a"])
    assert (stored.state, stored.delivered_at) == (RequestState.DELIVERED, submitted_at)
    assert await store.mark_submitted(notice.notice_id, at=submitted_at, ticket=None) is None
    assert await store.mark_submitted("TD-telegram-20240903-999999", at=submitted_at, ticket=None) is None


async def test_a_transient_failure_schedules_a_retry_on_the_channel_given(store: FullStore) -> None:
    notice = await formed_and_claimed(store, "a")
    retry_at, fallback_deadline = NOW + timedelta(minutes=5), NOW + timedelta(hours=12)

    recorded = await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=attempt(PERMANENT, code=550, detail="550 mailbox unavailable"),
        channel="api",
        next_attempt_at=retry_at,
        deliver_by=fallback_deadline,
        fallback_used=True,
    )

    assert recorded
    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.channel, after.fallback_used) == (NoticeState.RETRYING, "api", True)
    assert (after.next_attempt_at, after.deliver_by) == (retry_at, fallback_deadline)
    assert after.last_error == "550 mailbox unavailable"
    assert await request_states(store, ["a"]) == {"a": RequestState.BATCHED}
    assert await store.claim_due(owner="w2", now=retry_at - timedelta(seconds=1), lease=LONG, limit=10) == []
    assert (await claim_one(store, "w2", now=retry_at)).notice_id == notice.notice_id


async def test_a_final_failure_fails_the_notice_and_its_requests_and_owes_an_alert(store: FullStore) -> None:
    notice = await formed_and_claimed(store, "a", "b")

    await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=attempt(PERMANENT, code=403, detail="403 forbidden"),
        channel="email",
        next_attempt_at=None,
        deliver_by=DELIVER_BY,
        fallback_used=False,
    )

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.next_attempt_at, after.last_error) == (
        NoticeState.FAILED,
        None,
        "403 forbidden",
    )
    assert await request_states(store, ["a", "b"]) == {"a": RequestState.FAILED, "b": RequestState.FAILED}
    assert await store.claim_due(owner="w2", now=NOW + timedelta(days=1), lease=LONG, limit=10) == []
    assert [n.notice_id for n in await store.unalerted_failures(limit=10)] == [notice.notice_id]

    await store.mark_alerted(notice.notice_id, at=NOW + timedelta(minutes=1))

    assert await store.unalerted_failures(limit=10) == []
    assert (await store.status_counts()).notices == {"telegram": {"failed": 1}}


async def test_unalerted_failures_come_oldest_first_up_to_the_limit(store: FullStore) -> None:
    await ingest(store, *(make(f"r{i}") for i in range(3)))
    ids = [(await form(store, max_items=1)).notice_id for _ in range(3)]
    await store.claim_due(owner="w1", now=NOW, lease=LONG, limit=10)
    for minutes, notice_id in zip((3, 1, 2), ids, strict=True):
        at = NOW + timedelta(minutes=minutes)
        await store.record_failure(
            notice_id,
            owner="w1",
            attempt=attempt(PERMANENT, at=at),
            channel="email",
            next_attempt_at=None,
            deliver_by=DELIVER_BY,
            fallback_used=False,
        )

    assert [n.notice_id for n in await store.unalerted_failures(limit=2)] == [ids[1], ids[2]]


async def test_retry_failed_queues_the_notice_again_on_its_primary_channel(store: FullStore) -> None:
    notice = await formed_and_claimed(store, "a")
    await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=attempt(PERMANENT, channel="api", detail="404"),
        channel="api",
        next_attempt_at=None,
        deliver_by=DELIVER_BY,
        fallback_used=True,
    )
    await store.mark_alerted(notice.notice_id, at=NOW)
    retried_at, new_deadline = NOW + timedelta(days=2), NOW + timedelta(days=3)

    retried = await store.retry_failed(notice.notice_id, now=retried_at, deliver_by=new_deadline)

    assert retried is not None
    assert retried.notice_id == notice.notice_id
    assert (retried.state, retried.channel, retried.fallback_used) == (NoticeState.QUEUED, "email", False)
    assert (retried.next_attempt_at, retried.deliver_by) == (retried_at, new_deadline)
    assert retried.request_ids == ("a",)
    assert len(retried.attempts) == 1
    assert await request_states(store, ["a"]) == {"a": RequestState.BATCHED}
    assert await store.retry_failed(notice.notice_id, now=retried_at, deliver_by=new_deadline) is None
    assert await store.retry_failed("TD-telegram-20240903-999999", now=NOW, deliver_by=NOW) is None

    # Failing again owes a new alert.
    await claim_one(store, "w2", now=retried_at)
    await store.record_failure(
        notice.notice_id,
        owner="w2",
        attempt=attempt(PERMANENT, at=retried_at),
        channel="email",
        next_attempt_at=None,
        deliver_by=new_deadline,
        fallback_used=False,
    )
    assert [n.notice_id for n in await store.unalerted_failures(limit=10)] == [notice.notice_id]


async def test_attempts_are_kept_in_order_with_every_field(store: FullStore) -> None:
    notice = await formed_and_claimed(store)
    tries = [
        attempt(TRANSIENT, at=NOW, code=421, detail="421 try later", duration_ms=12),
        attempt(TRANSIENT, at=NOW + timedelta(seconds=2), detail="timed out", duration_ms=30_000),
        attempt(PERMANENT, at=NOW + timedelta(seconds=5), code=550, detail="550 no such user", duration_ms=7),
        attempt(DELIVERED, at=NOW + timedelta(minutes=1), channel="api", code=202, duration_ms=95),
    ]

    await store.record_attempt(notice.notice_id, owner="w1", attempt=tries[0])
    await store.record_attempt(notice.notice_id, owner="w1", attempt=tries[1])
    await store.record_failure(
        notice.notice_id,
        owner="w1",
        attempt=tries[2],
        channel="api",
        next_attempt_at=NOW + timedelta(minutes=1),
        deliver_by=DELIVER_BY,
        fallback_used=True,
    )
    claimed = await claim_one(store, "w2", now=NOW + timedelta(minutes=1))
    await store.record_delivery(
        notice.notice_id, owner="w2", attempt=tries[3], result=SendResult(), channel="api"
    )

    assert claimed.attempts == tuple(tries[:3])
    assert (await one_notice(store, notice.notice_id)).attempts == tuple(tries)


# -- rate limit --------------------------------------------------------------------------------


async def test_a_rate_bucket_gives_its_capacity_then_a_wait(store: FullStore) -> None:
    assert await store.take_rate_slot("telegram", per_minute=2) == 0.0
    assert await store.take_rate_slot("telegram", per_minute=2) == 0.0

    wait = await store.take_rate_slot("telegram", per_minute=2)

    # One token comes back every 30 s.
    assert 25.0 < wait <= 30.0
    assert await store.take_rate_slot("x", per_minute=2) == 0.0  # a bucket per platform


async def test_no_rate_limit_never_waits(store: FullStore) -> None:
    for _ in range(5):
        assert await store.take_rate_slot("telegram", per_minute=0) == 0.0
