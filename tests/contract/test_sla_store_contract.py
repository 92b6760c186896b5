"""The SlaStore contract: open notices as SLA candidates, decisions taken once, then sent, run
against SQLite and PostgreSQL.

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
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.domain.sla import SlaKind
from notifier.ports import Incoming, Store
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


# -- candidates --------------------------------------------------------------------------------


async def test_a_delivered_notice_is_a_candidate_with_its_times_and_open_requests(store: FullStore) -> None:
    notice = await delivered(store, "a", "b", at=NOW + timedelta(minutes=1))

    [candidate] = await store.sla_candidates(now=NOW + timedelta(hours=1), limit=10)

    assert (candidate.notice_id, candidate.platform, candidate.channel) == (
        notice.notice_id,
        "telegram",
        "email",
    )
    assert candidate.facts.delivered_at == NOW + timedelta(minutes=1)
    assert candidate.facts.acknowledged_at is None
    assert candidate.facts.open_requests == 2
    assert set(candidate.facts.decided) == set()


async def test_notices_not_delivered_yet_are_not_candidates(store: FullStore) -> None:
    await formed(store, "a")
    assert await store.sla_candidates(now=NOW + timedelta(days=3), limit=10) == []


async def test_a_delivery_after_now_is_not_a_candidate_yet(store: FullStore) -> None:
    await delivered(store, "a", at=NOW + timedelta(hours=1))
    assert await store.sla_candidates(now=NOW, limit=10) == []


async def test_candidates_come_oldest_delivery_first_up_to_the_limit(store: FullStore) -> None:
    late = await delivered(store, "a", at=NOW + timedelta(hours=2), platform="telegram")
    early = await delivered(store, "b", at=NOW + timedelta(hours=1), platform="x")

    found = await store.sla_candidates(now=NOW + timedelta(days=1), limit=10)
    assert [c.notice_id for c in found] == [early.notice_id, late.notice_id]
    assert [c.notice_id for c in await store.sla_candidates(now=NOW + timedelta(days=1), limit=1)] == [
        early.notice_id
    ]


async def test_acknowledgements_and_removals_show_in_the_candidate(store: FullStore) -> None:
    notice = await delivered(store, "a", "b", at=NOW)
    await acknowledge(
        store, notice.notice_id, AckStatus.PARTIAL, ("a", ItemStatus.REMOVED), ("b", ItemStatus.RECEIVED)
    )

    [candidate] = await store.sla_candidates(now=NOW + timedelta(hours=3), limit=10)
    assert candidate.facts.acknowledged_at == NOW + timedelta(hours=2)
    assert candidate.facts.open_requests == 1


async def test_a_resolved_notice_is_no_candidate(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    await acknowledge(store, notice.notice_id, AckStatus.REMOVED)
    assert await store.sla_candidates(now=NOW + timedelta(days=3), limit=10) == []


async def test_decided_kinds_show_and_a_notice_with_nothing_left_to_decide_is_left_out(
    store: FullStore,
) -> None:
    notice = await delivered(store, "a", at=NOW)
    later = NOW + timedelta(days=2)
    assert await store.decide(notice.notice_id, {SlaKind.REMINDER: NOW}, decided_at=NOW)
    assert await store.decide(notice.notice_id, {SlaKind.REMOVAL_BREACH: later}, decided_at=later)

    [candidate] = await store.sla_candidates(now=later, limit=10)
    assert set(candidate.facts.decided) == {SlaKind.REMINDER, SlaKind.REMOVAL_BREACH}

    assert await store.decide(notice.notice_id, {SlaKind.ACK_BREACH: later}, decided_at=later)
    assert await store.sla_candidates(now=later, limit=10) == []


async def test_an_acknowledged_notice_whose_removal_breach_is_decided_is_left_out(store: FullStore) -> None:
    notice = await delivered(store, "a", at=NOW)
    await acknowledge(store, notice.notice_id, AckStatus.RECEIVED)
    later = NOW + timedelta(days=2)
    assert await store.decide(notice.notice_id, {SlaKind.REMOVAL_BREACH: later}, decided_at=later)
    assert await store.sla_candidates(now=later, limit=10) == []


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
