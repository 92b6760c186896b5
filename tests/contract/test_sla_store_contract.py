"""The SlaStore contract: notices' SLA timers claimed in due order and moved on, decisions taken
once, then sent (or dropped), run against SQLite and PostgreSQL.

Notices are built the way the daemon builds them (ingest → form → claim → deliver), and
acknowledged through :func:`notifier.domain.acks.plan_ack`, so every test starts from states the
store itself made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from notifier.domain.acks import Ack, AckItem, AckStatus, ItemStatus, plan_ack
from notifier.domain.delivery import DeliveryDecision, Step
from notifier.domain.models import NoticeState, Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.domain.sla import SlaKind
from notifier.ports import Incoming, SlaClaim, SlaReschedule, Store
from notifier.store import create_store
from tests.waiting import wait_for

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


FullStore = Store  # the SLA side is part of Store


@pytest.fixture
async def twin(store: FullStore, store_url: str | None) -> AsyncIterator[FullStore]:
    """A second store on the same database, as another daemon process opens it."""
    if store_url is None:
        yield store
        return
    other = await create_store(store_url)
    try:
        yield other
    finally:
        await other.close()


def make(request_id: str, platform: str) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=(f"https://example.com/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )


async def formed(store: FullStore, *request_ids: str, platform: str = "telegram") -> Notice:
    await store.ingest([Incoming(request=make(i, platform), source="test") for i in request_ids], [], now=NOW)
    notice = await store.form_notice(
        platform, max_items=50, channel="email", now=NOW, deliver_by=NOW + timedelta(hours=6)
    )
    assert notice is not None
    return notice


async def delivered(store: FullStore, *request_ids: str, at: datetime, platform: str = "telegram") -> Notice:
    notice = await formed(store, *request_ids, platform=platform)
    [claimed] = await store.claim_due(owner="w1", now=NOW, lease=LEASE, limit=1)
    assert claimed.notice_id == notice.notice_id
    assert await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=at, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id=f"<{notice.notice_id}.notice@authority.example>"),
        channel="email",
    )
    return notice


async def acknowledge(
    store: FullStore, notice_id: str, status: AckStatus, *items: tuple[str, ItemStatus]
) -> None:
    ack = Ack(
        notice_id=notice_id,
        status=status,
        received_at=NOW + timedelta(hours=2),
        source="manual",
        items=tuple(AckItem(request_id=r, status=s) for r, s in items),
    )
    context = await store.ack_context(notice_id)
    assert context is not None
    assert await store.apply_ack(ack, plan_ack(context[0].state, context[1], ack))


# -- timers ------------------------------------------------------------------------------------


async def claim(
    store: FullStore, at: datetime, *, limit: int = 10, lease: timedelta = LEASE
) -> list[SlaClaim]:
    return await store.claim_sla_due(now=at, lease=lease, limit=limit)


async def rendered(store: FullStore, *request_ids: str, at: datetime) -> Notice:
    """A notice rendered for the portal at ``at``: waiting for staff to file it."""
    notice = await formed(store, *request_ids, platform="clipshare")
    [claimed] = await store.claim_due(owner="w1", now=NOW, lease=LEASE, limit=1)
    assert claimed.notice_id == notice.notice_id
    assert await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=at, channel="manual", outcome=AttemptOutcome.DELIVERED),
        result=SendResult(awaiting_submission=True),
        channel="manual",
    )
    return notice


async def test_a_delivered_notice_is_due_at_its_delivery_with_its_times_and_open_requests(
    store: FullStore,
) -> None:
    notice = await delivered(store, "a", "b", at=NOW + timedelta(minutes=1))
    assert await store.next_sla_due() == NOW + timedelta(minutes=1)
    assert await claim(store, NOW) == []  # not due yet

    [due] = await claim(store, NOW + timedelta(hours=1))

    assert (due.notice_id, due.platform, due.channel, due.state) == (
        notice.notice_id,
        "telegram",
        "email",
        NoticeState.DELIVERED,
    )
    assert due.facts.delivered_at == NOW + timedelta(minutes=1)
    assert (due.facts.acknowledged_at, due.facts.rendered_at) == (None, None)
    assert due.facts.open_requests == 2
    assert set(due.facts.decided) == set()
    # Claimed: its timer is a lease ahead, and nobody else takes it before then.
    assert due.claimed_until == NOW + timedelta(hours=1) + LEASE
    assert await store.next_sla_due() == due.claimed_until
    assert await claim(store, due.claimed_until - timedelta(microseconds=1)) == []
    [again] = await claim(store, due.claimed_until)  # a monitor that died: taken over at the lease's end
    assert again.notice_id == notice.notice_id


async def test_notices_not_delivered_have_no_timer(store: FullStore) -> None:
    await formed(store, "a")
    assert await claim(store, NOW + timedelta(days=3)) == []
    assert await store.next_sla_due() is None


async def test_due_notices_are_claimed_earliest_timer_first_up_to_the_limit(store: FullStore) -> None:
    late = await delivered(store, "a", at=NOW + timedelta(hours=2), platform="telegram")
    early = await delivered(store, "b", at=NOW + timedelta(hours=1), platform="x")

    assert [c.notice_id for c in await claim(store, NOW + timedelta(days=1), limit=1)] == [early.notice_id]
    assert [c.notice_id for c in await claim(store, NOW + timedelta(days=1))] == [late.notice_id]
    assert await claim(store, NOW + timedelta(days=1)) == []


async def test_a_timer_moves_on_to_the_next_decision_and_is_cleared_when_none_is_left(
    store: FullStore,
) -> None:
    notice = await delivered(store, "a", at=NOW)
    [due] = await claim(store, NOW)
    reminder = NOW + timedelta(hours=24)
    moved = SlaReschedule(notice_id=notice.notice_id, claimed_until=due.claimed_until, next_at=reminder)
    assert await store.reschedule_sla([moved]) == 1
    assert await store.next_sla_due() == reminder
    assert await claim(store, reminder - timedelta(seconds=1)) == []
    [due] = await claim(store, reminder)

    done = SlaReschedule(notice_id=notice.notice_id, claimed_until=due.claimed_until, next_at=None)
    assert await store.reschedule_sla([done]) == 1
    assert await store.next_sla_due() is None
    assert await claim(store, NOW + timedelta(days=30)) == []
    # A second move with the same claim finds the timer changed: it changes nothing.
    assert await store.reschedule_sla([moved]) == 0
    assert await store.next_sla_due() is None


async def test_a_bounce_after_the_claim_is_not_overwritten_and_the_next_delivery_sets_the_timer(
    store: FullStore,
) -> None:
    notice = await delivered(store, "a", at=NOW)
    [due] = await claim(store, NOW)
    assert await store.record_bounce(
        notice.notice_id,
        attempt=Attempt(
            at=NOW + timedelta(minutes=5), channel="email", outcome=AttemptOutcome.TRANSIENT_ERROR
        ),
        delivery=DeliveryDecision(
            step=Step.RETRY,
            before=NoticeState.DELIVERED,
            state=NoticeState.RETRYING,
            channel="email",
            next_attempt_at=NOW + timedelta(minutes=10),
            deliver_by=NOW + timedelta(hours=6),
            fallback_used=False,
        ),
    )
    later = SlaReschedule(
        notice_id=notice.notice_id, claimed_until=due.claimed_until, next_at=NOW + timedelta(days=1)
    )
    assert await store.reschedule_sla([later]) == 0  # the bounce cleared it since: kept cleared
    assert await store.next_sla_due() is None

    [again] = await store.claim_due(owner="w1", now=NOW + timedelta(minutes=10), lease=LEASE, limit=1)
    redelivered = NOW + timedelta(minutes=11)
    assert await store.record_delivery(
        again.notice_id,
        owner="w1",
        attempt=Attempt(at=redelivered, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250),
        channel="email",
    )
    assert await store.next_sla_due() == redelivered


async def test_acknowledgements_leave_the_timer_and_show_in_the_facts(store: FullStore) -> None:
    notice = await delivered(store, "a", "b", at=NOW)
    await acknowledge(
        store, notice.notice_id, AckStatus.PARTIAL, ("a", ItemStatus.REMOVED), ("b", ItemStatus.RECEIVED)
    )
    assert await store.next_sla_due() == NOW
    [due] = await claim(store, NOW + timedelta(hours=3))
    assert due.state is NoticeState.ACKNOWLEDGED
    assert due.facts.acknowledged_at == NOW + timedelta(hours=2)
    assert due.facts.open_requests == 1


async def test_a_resolved_notice_is_claimed_with_its_state_and_nothing_open(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    await acknowledge(store, notice.notice_id, AckStatus.REMOVED)
    [due] = await claim(store, NOW + timedelta(days=3))
    assert (due.state, due.facts.open_requests) == (NoticeState.RESOLVED, 0)


async def test_decided_kinds_show_in_the_facts(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    later = NOW + timedelta(days=2)
    assert await store.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=NOW)
    assert await store.decide(notice.notice_id, {SlaKind.REMOVAL_BREACH: later}, decided_at=later)
    [due] = await claim(store, later)
    assert set(due.facts.decided) == {SlaKind.REMINDER, SlaKind.REMOVAL_BREACH}


async def test_a_portal_notice_is_due_when_rendered_and_again_when_filed(store: FullStore) -> None:
    notice = await rendered(store, "a", at=NOW + timedelta(minutes=2))
    assert await store.next_sla_due() == NOW + timedelta(minutes=2)
    [due] = await claim(store, NOW + timedelta(minutes=2))
    assert (due.state, due.channel) == (NoticeState.AWAITING_SUBMISSION, "manual")
    assert (due.facts.rendered_at, due.facts.delivered_at) == (NOW + timedelta(minutes=2), None)
    waiting = SlaReschedule(
        notice_id=notice.notice_id, claimed_until=due.claimed_until, next_at=NOW + timedelta(hours=2)
    )
    assert await store.reschedule_sla([waiting]) == 1

    filed = NOW + timedelta(hours=1)
    assert await store.mark_submitted(notice.notice_id, at=filed, ticket=None) is not None
    assert await store.next_sla_due() == filed  # the platform's clock starts
    [due] = await claim(store, filed)
    assert due.state is NoticeState.DELIVERED
    assert (due.facts.rendered_at, due.facts.delivered_at) == (NOW + timedelta(minutes=2), filed)


async def test_two_monitors_claim_disjoint_notices(store: FullStore, twin: FullStore) -> None:
    notices = [await delivered(store, f"r{i}", at=NOW + timedelta(seconds=i)) for i in range(12)]
    later = NOW + timedelta(hours=1)
    holders: dict[str, int] = {}
    for _ in range(4):
        claims = await asyncio.gather(claim(store, later, limit=2), claim(twin, later, limit=2))
        for claimed in claims:
            for due in claimed:
                holders[due.notice_id] = holders.get(due.notice_id, 0) + 1
    assert holders == {n.notice_id: 1 for n in notices}
    assert await claim(store, later) == []


# -- dropping ----------------------------------------------------------------------------------


async def test_a_dropped_decision_stays_decided_and_is_never_claimed_or_sent(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    assert await store.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=NOW)
    [owed] = await store.claim_unsent_decisions(owner="one", lease=LEASE, limit=10)

    dropped_at = NOW + timedelta(minutes=1)
    assert not await store.drop_decision(notice.notice_id, SlaKind.REMINDER, owner="two", at=dropped_at)
    assert await store.drop_decision(notice.notice_id, owed.kind, owner="one", at=dropped_at)
    assert not await store.drop_decision(notice.notice_id, owed.kind, owner="one", at=dropped_at)

    assert await store.claim_unsent_decisions(owner="one", lease=timedelta(0), limit=10) == []
    assert await store.unsent_decisions(limit=10) == []
    await store.mark_decision_sent(notice.notice_id, SlaKind.REMINDER, at=dropped_at, message_ref="late")
    [kept] = await store.sla_decisions([notice.notice_id])
    assert (kept.kind, kept.dropped_at, kept.sent_at, kept.message_ref) == (
        SlaKind.REMINDER,
        dropped_at,
        None,
        None,
    )
    assert not await store.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=dropped_at)


async def test_a_sent_decision_cannot_be_dropped(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    assert await store.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=NOW)
    await store.claim_unsent_decisions(owner="one", lease=LEASE, limit=10)
    await store.mark_decision_sent(notice.notice_id, SlaKind.REMINDER, at=NOW, message_ref="ref")
    assert not await store.drop_decision(notice.notice_id, SlaKind.REMINDER, owner="one", at=NOW)
    [kept] = await store.sla_decisions([notice.notice_id])
    assert (kept.sent_at, kept.dropped_at) == (NOW, None)


# -- decisions ---------------------------------------------------------------------------------


async def test_a_decision_is_taken_once_across_processes(store: FullStore, twin: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    results = await asyncio.gather(
        *(
            s.decide(notice.notice_id, {SlaKind.ACK_BREACH: NOW}, decided_at=NOW)
            for s in (store, twin, store, twin)
        )
    )
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert not await twin.decide(notice.notice_id, {SlaKind.ACK_BREACH: NOW}, decided_at=NOW)
    assert await twin.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=NOW) == {SlaKind.REMINDER}


async def test_breaches_due_together_are_decided_together_by_one_process(
    store: FullStore, twin: FullStore
) -> None:
    notices = [await delivered(store, f"r{i}", at=NOW) for i in range(8)]
    due = {SlaKind.ACK_BREACH: NOW, SlaKind.REMOVAL_BREACH: NOW}
    for notice in notices:
        results = await asyncio.gather(
            *(s.decide(notice.notice_id, due, decided_at=NOW) for s in (store, twin, twin, store))
        )
        # One caller took both; never one breach each.
        assert sorted(results, key=len) == [frozenset()] * 3 + [frozenset(due)], notice.notice_id

    # What is already decided is left out; the rest is decided.
    later = await delivered(store, "late", at=NOW)
    assert await store.decide(later.notice_id, {SlaKind.ACK_BREACH: NOW}, decided_at=NOW) == {
        SlaKind.ACK_BREACH
    }
    assert await twin.decide(later.notice_id, due, decided_at=NOW) == {SlaKind.REMOVAL_BREACH}
    assert await twin.decide(later.notice_id, {}, decided_at=NOW) == frozenset()


async def test_a_notices_unsent_decisions_are_claimed_together_never_split_between_senders(
    store: FullStore, twin: FullStore
) -> None:
    notices = [await delivered(store, f"r{i}", at=NOW + timedelta(minutes=i)) for i in range(12)]
    for notice in notices:
        assert (
            len(
                await store.decide(
                    notice.notice_id, {SlaKind.ACK_BREACH: NOW, SlaKind.REMOVAL_BREACH: NOW}, decided_at=NOW
                )
            )
            == 2
        )
    long_claim = timedelta(minutes=5)
    holders: dict[str, set[str]] = {}
    for _ in range(12):
        claims = await asyncio.gather(
            store.claim_unsent_decisions(owner="one", lease=long_claim, limit=1),
            twin.claim_unsent_decisions(owner="two", lease=long_claim, limit=1),
        )
        for owner, claimed in zip(("one", "two"), claims, strict=True):
            assert len({d.notice_id for d in claimed}) <= 1  # limit counts notices
            for decision in claimed:
                holders.setdefault(decision.notice_id, set()).add(owner)
                assert {d.kind for d in claimed} == {SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH}
    assert set(holders) == {n.notice_id for n in notices}
    assert all(len(owners) == 1 for owners in holders.values()), holders
    # Every notice went to one sender, and nothing is left to claim.
    assert await store.claim_unsent_decisions(owner="three", lease=long_claim, limit=5) == []


async def test_unsent_decisions_until_marked_sent_and_the_first_sending_is_kept(
    store: FullStore, twin: FullStore
) -> None:
    notice = await delivered(store, "a", at=NOW)
    first, second = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    assert await store.decide(notice.notice_id, {SlaKind.ACK_BREACH: second}, decided_at=second)
    assert await store.decide(notice.notice_id, {SlaKind.REMINDER: first}, decided_at=first)

    owed = await twin.unsent_decisions(limit=10)
    assert [(d.kind, d.decided_at, d.due_at, d.sent_at) for d in owed] == [
        (SlaKind.REMINDER, first, first, None),
        (SlaKind.ACK_BREACH, second, second, None),
    ]
    assert len(await twin.unsent_decisions(limit=1)) == 1

    ref = f"<{notice.notice_id}.reminder@authority.example>"
    await twin.mark_decision_sent(notice.notice_id, SlaKind.REMINDER, at=first, message_ref=ref)
    await store.mark_decision_sent(notice.notice_id, SlaKind.REMINDER, at=second, message_ref="other")

    assert [d.kind for d in await store.unsent_decisions(limit=10)] == [SlaKind.ACK_BREACH]
    kept = {d.kind: d for d in await store.sla_decisions([notice.notice_id])}
    assert (kept[SlaKind.REMINDER].sent_at, kept[SlaKind.REMINDER].message_ref) == (first, ref)
    assert kept[SlaKind.ACK_BREACH].sent_at is None


async def test_an_unsent_decision_is_claimed_by_one_sender_until_released_or_its_claim_expires(
    store: FullStore, twin: FullStore
) -> None:
    notice = await delivered(store, "a", at=NOW)
    assert await store.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=NOW)
    long_claim = timedelta(minutes=5)

    first, second = await asyncio.gather(
        store.claim_unsent_decisions(owner="one", lease=long_claim, limit=10),
        twin.claim_unsent_decisions(owner="two", lease=long_claim, limit=10),
    )
    assert sorted([len(first), len(second)]) == [0, 1]  # two monitors never send it at once
    holder = "one" if first else "two"

    await store.release_decision(notice.notice_id, SlaKind.REMINDER, owner="someone-else")
    assert await twin.claim_unsent_decisions(owner="three", lease=long_claim, limit=10) == []
    await store.release_decision(notice.notice_id, SlaKind.REMINDER, owner=holder)  # its send failed
    assert len(await twin.claim_unsent_decisions(owner="three", lease=timedelta(seconds=0.2), limit=10)) == 1

    async def claim_expired() -> bool:
        return len(await store.claim_unsent_decisions(owner="four", lease=long_claim, limit=10)) == 1

    await wait_for(claim_expired, within=10, what="the short claim to run out")  # a sender that died
    await store.mark_decision_sent(notice.notice_id, SlaKind.REMINDER, at=NOW, message_ref="ref")
    assert await twin.claim_unsent_decisions(owner="five", lease=long_claim, limit=10) == []


async def test_naive_times_are_refused(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    with pytest.raises(ValueError, match="naive"):
        await store.decide(notice.notice_id, {SlaKind.REMINDER: datetime(2024, 9, 3)}, decided_at=NOW)
