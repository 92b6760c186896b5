"""The AckStore contract: acknowledgements carried out from their plans, receipts, bounces, the
callbacks and mails already seen, and notices found by ticket, run against
SQLite and PostgreSQL.

Notices are built the way the daemon builds them (ingest → form → claim → deliver) and plans come
from :func:`notifier.domain.acks.plan_ack`, so every test starts from states the store itself made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from notifier.domain.acks import Ack, AckItem, AckPlan, AckStatus, ItemStatus, plan_ack
from notifier.domain.delivery import DeliveryDecision, Step
from notifier.domain.models import NoticeState, Priority, RequestState, StoredRequest, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.ports import Incoming, Store
from notifier.store import SqlStore, create_store
from notifier.store.tables import acks

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
DELIVER_BY = NOW + timedelta(hours=6)
DELIVERED_AT = NOW + timedelta(minutes=1)
ACK_AT = NOW + timedelta(hours=2)
LATER = NOW + timedelta(hours=20)
LEASE = timedelta(minutes=10)
UNKNOWN = "TD-telegram-20240903-999999"


@pytest.fixture
async def twin(store: Store, store_url: str | None) -> AsyncIterator[Store]:
    """A second store on the same database, as another daemon process would open it (the fake
    has no database to share: it is its own twin)."""
    if store_url is None:
        yield store
        return
    other = await create_store(store_url)
    try:
        yield other
    finally:
        await other.close()


def make(request_id: str, *, platform: str = "telegram") -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=(f"https://t.me/c/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )


async def formed(store: Store, *request_ids: str, platform: str = "telegram", now: datetime = NOW) -> Notice:
    await store.ingest(
        [Incoming(request=make(i, platform=platform), source="test") for i in request_ids], [], now=now
    )
    notice = await store.form_notice(platform, max_items=50, channel="email", now=now, deliver_by=DELIVER_BY)
    assert notice is not None
    return notice


async def delivered(store: Store, *request_ids: str, ticket: str | None = None) -> Notice:
    """A notice of ``request_ids``, delivered by email at DELIVERED_AT."""
    notice = await formed(store, *request_ids)
    [claimed] = await store.claim_due(owner="w1", now=NOW, lease=LEASE, limit=10)
    assert claimed.notice_id == notice.notice_id
    assert await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=DELIVERED_AT, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id="<n1@notifier>", ticket=ticket),
        channel="email",
    )
    return await one_notice(store, notice.notice_id)


def ack(
    notice_id: str,
    status: AckStatus,
    *items: tuple[str, ItemStatus],
    at: datetime = ACK_AT,
    ticket: str | None = None,
    source: str = "amqp:takedown.acks",
    platform_at: datetime | None = None,
    note: str | None = None,
) -> Ack:
    return Ack(
        notice_id=notice_id,
        status=status,
        received_at=at,
        source=source,
        items=tuple(AckItem(request_id=r, status=s) for r, s in items),
        ticket=ticket,
        platform_at=platform_at,
        note=note,
    )


async def plan_for(store: Store, acknowledgement: Ack) -> AckPlan:
    context = await store.ack_context(acknowledgement.notice_id)
    assert context is not None
    notice, states = context
    return plan_ack(notice.state, states, acknowledgement)


async def applied(store: Store, acknowledgement: Ack) -> bool:
    return await store.apply_ack(acknowledgement, await plan_for(store, acknowledgement))


async def one_notice(store: Store, notice_id: str) -> Notice:
    [notice] = await store.get_notices([notice_id])
    return notice


async def stored(store: Store, request_ids: Sequence[str]) -> dict[str, StoredRequest]:
    return {s.request.request_id: s for s in await store.get_requests(request_ids)}


async def history(store: Store, notice_id: str) -> list[tuple[Ack, str]]:
    """The acknowledgements the store kept for a notice, oldest first, with their outcomes."""
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(select(acks).where(acks.c.notice_id == notice_id).order_by(acks.c.id))
        ).all()
    return [
        (
            Ack(
                notice_id=row.notice_id,
                status=AckStatus(row.status),
                received_at=row.received_at,
                source=row.source,
                items=tuple(
                    AckItem(request_id=i["request_id"], status=ItemStatus(i["status"]))
                    for i in json.loads(row.items)
                ),
                ticket=row.ticket,
                platform_at=row.platform_at,
                note=row.note,
            ),
            row.outcome,
        )
        for row in rows
    ]


# -- context -----------------------------------------------------------------------------------


async def test_ack_context_gives_the_notice_and_the_state_of_each_request(store: Store) -> None:
    notice = await delivered(store, "a", "b")

    context = await store.ack_context(notice.notice_id)

    assert context is not None
    found, states = context
    assert found == notice
    assert states == {"a": RequestState.DELIVERED, "b": RequestState.DELIVERED}
    assert await store.ack_context(UNKNOWN) is None


# -- apply_ack ---------------------------------------------------------------------------------


async def test_received_acknowledges_a_delivered_notice_and_every_request(store: Store) -> None:
    notice = await delivered(store, "a", "b")

    assert await applied(store, ack(notice.notice_id, AckStatus.RECEIVED))

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.acknowledged_at, after.resolved_at) == (NoticeState.ACKNOWLEDGED, ACK_AT, None)
    assert after.delivered_at == DELIVERED_AT
    for request in (await stored(store, ["a", "b"])).values():
        assert (request.state, request.delivered_at, request.acknowledged_at, request.resolved_at) == (
            RequestState.ACKNOWLEDGED,
            DELIVERED_AT,
            ACK_AT,
            None,
        )
    counts = await store.status_counts()
    assert (counts.notices, counts.requests) == (
        {"telegram": {"acknowledged": 1}},
        {"telegram": {"acknowledged": 2}},
    )


async def test_removed_for_all_resolves_the_notice_and_every_request_at_once(store: Store) -> None:
    notice = await delivered(store, "a", "b")

    assert await applied(store, ack(notice.notice_id, AckStatus.REMOVED))

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.acknowledged_at, after.resolved_at) == (NoticeState.RESOLVED, ACK_AT, ACK_AT)
    for request in (await stored(store, ["a", "b"])).values():
        assert (request.state, request.acknowledged_at, request.resolved_at) == (
            RequestState.REMOVED,
            ACK_AT,
            ACK_AT,
        )


async def test_partial_acks_move_only_their_items_and_keep_the_first_times(store: Store) -> None:
    notice = await delivered(store, "a", "b", "c")
    first = ack(
        notice.notice_id,
        AckStatus.PARTIAL,
        ("a", ItemStatus.REMOVED),
        ("b", ItemStatus.RECEIVED),
    )

    assert await applied(store, first)

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.acknowledged_at, after.resolved_at) == (NoticeState.ACKNOWLEDGED, ACK_AT, None)
    requests = await stored(store, ["a", "b", "c"])
    assert (requests["a"].state, requests["a"].acknowledged_at, requests["a"].resolved_at) == (
        RequestState.REMOVED,
        ACK_AT,
        ACK_AT,
    )
    assert (requests["b"].state, requests["b"].acknowledged_at, requests["b"].resolved_at) == (
        RequestState.ACKNOWLEDGED,
        ACK_AT,
        None,
    )
    assert (requests["c"].state, requests["c"].acknowledged_at) == (RequestState.DELIVERED, None)

    second = ack(
        notice.notice_id,
        AckStatus.PARTIAL,
        ("b", ItemStatus.REMOVED),
        ("c", ItemStatus.REJECTED),
        at=LATER,
    )
    assert await applied(store, second)

    after = await one_notice(store, notice.notice_id)
    # Acknowledged at the first answer, resolved when the last request was.
    assert (after.state, after.acknowledged_at, after.resolved_at) == (NoticeState.RESOLVED, ACK_AT, LATER)
    requests = await stored(store, ["a", "b", "c"])
    assert (requests["a"].state, requests["a"].resolved_at) == (RequestState.REMOVED, ACK_AT)
    assert (requests["b"].state, requests["b"].acknowledged_at, requests["b"].resolved_at) == (
        RequestState.REMOVED,
        ACK_AT,
        LATER,
    )
    assert (requests["c"].state, requests["c"].acknowledged_at, requests["c"].resolved_at) == (
        RequestState.REJECTED,
        LATER,
        LATER,
    )


async def test_the_same_plan_applied_twice_changes_nothing_the_second_time(store: Store) -> None:
    notice = await delivered(store, "a")
    received = ack(notice.notice_id, AckStatus.RECEIVED)
    plan = await plan_for(store, received)

    assert await store.apply_ack(received, plan)
    later = ack(notice.notice_id, AckStatus.RECEIVED, at=LATER, ticket="TG-1")
    assert not await store.apply_ack(later, plan)

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.acknowledged_at, after.ticket) == (NoticeState.ACKNOWLEDGED, ACK_AT, None)
    assert (await stored(store, ["a"]))["a"].acknowledged_at == ACK_AT
    assert [outcome for _, outcome in await history(store, notice.notice_id)] == ["applied"]


async def test_a_plan_whose_requests_moved_meanwhile_is_rolled_back_whole(store: Store) -> None:
    notice = await delivered(store, "a", "b")
    assert await applied(store, ack(notice.notice_id, AckStatus.RECEIVED))
    # Two answers planned from the same states: both keep the notice acknowledged, so only the
    # request of the second finds its state gone, after its notice row has been updated.
    removed = ack(notice.notice_id, AckStatus.PARTIAL, ("a", ItemStatus.REMOVED), at=LATER)
    rejected = ack(notice.notice_id, AckStatus.PARTIAL, ("a", ItemStatus.REJECTED), at=LATER, ticket="TG-2")
    removed_plan, rejected_plan = await plan_for(store, removed), await plan_for(store, rejected)
    assert rejected_plan.notice_before is rejected_plan.notice_after is NoticeState.ACKNOWLEDGED

    assert await store.apply_ack(removed, removed_plan)
    assert not await store.apply_ack(rejected, rejected_plan)

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.ticket) == (NoticeState.ACKNOWLEDGED, None)
    assert (await stored(store, ["a"]))["a"].state is RequestState.REMOVED
    assert len(await history(store, notice.notice_id)) == 2


async def test_a_plan_made_for_another_notice_state_is_refused(store: Store) -> None:
    notice = await delivered(store, "a")
    received = ack(notice.notice_id, AckStatus.RECEIVED)
    # Its request changes still hold; only the state it says the notice was in does not.
    wrong = replace(await plan_for(store, received), notice_before=NoticeState.ACKNOWLEDGED)

    assert not await store.apply_ack(received, wrong)

    assert (await one_notice(store, notice.notice_id)).state is NoticeState.DELIVERED
    assert (await stored(store, ["a"]))["a"].state is RequestState.DELIVERED
    assert await history(store, notice.notice_id) == []


async def test_a_plan_made_before_a_bounce_is_refused(store: Store) -> None:
    notice = await delivered(store, "a")
    received = ack(notice.notice_id, AckStatus.RECEIVED)
    plan = await plan_for(store, received)
    await bounce(store, notice.notice_id)

    assert not await store.apply_ack(received, plan)

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.acknowledged_at) == (NoticeState.RETRYING, None)
    assert (await stored(store, ["a"]))["a"].state is RequestState.BATCHED


async def test_an_ack_for_an_unknown_notice_applies_nothing(store: Store) -> None:
    await delivered(store, "a")
    stray = ack(UNKNOWN, AckStatus.RECEIVED)
    notice_plan = plan_ack(NoticeState.DELIVERED, {"a": RequestState.DELIVERED}, stray)

    assert not await store.apply_ack(stray, notice_plan)

    assert (await stored(store, ["a"]))["a"].state is RequestState.DELIVERED
    assert await history(store, UNKNOWN) == []


async def test_racing_stores_apply_the_same_plan_once(store: Store, twin: Store) -> None:
    notice = await delivered(store, "a", "b")
    received = ack(notice.notice_id, AckStatus.RECEIVED)
    plan = await plan_for(store, received)

    results = await asyncio.gather(store.apply_ack(received, plan), twin.apply_ack(received, plan))

    assert sorted(results) == [False, True]
    assert len(await history(store, notice.notice_id)) == 1
    assert (await one_notice(store, notice.notice_id)).state is NoticeState.ACKNOWLEDGED


async def test_the_ticket_of_an_ack_is_kept_only_when_the_notice_has_none(store: Store) -> None:
    notice = await delivered(store, "a", "b")
    with_receipt = await delivered(store, "c", ticket="API-7")

    assert await applied(
        store, ack(notice.notice_id, AckStatus.PARTIAL, ("a", ItemStatus.RECEIVED), ticket="TG-1")
    )
    assert await applied(
        store, ack(notice.notice_id, AckStatus.PARTIAL, ("b", ItemStatus.RECEIVED), ticket="TG-2")
    )
    assert await applied(store, ack(with_receipt.notice_id, AckStatus.RECEIVED, ticket="TG-3"))

    assert (await one_notice(store, notice.notice_id)).ticket == "TG-1"
    assert (await one_notice(store, with_receipt.notice_id)).ticket == "API-7"


async def test_every_ack_is_kept_in_the_history_with_its_outcome(store: Store) -> None:
    notice = await delivered(store, "a", "b")
    first = ack(
        notice.notice_id,
        AckStatus.PARTIAL,
        ("a", ItemStatus.REMOVED),
        ("zz", ItemStatus.RECEIVED),
        ticket="TG-9",
        source="callback:telegram",
        platform_at=NOW + timedelta(hours=1),
    )
    late = ack(
        notice.notice_id, AckStatus.RECEIVED, at=LATER, source="manual", note="phoned their legal desk"
    )

    assert await applied(store, first)
    await store.record_ack_history(late, outcome="a is already removed")

    assert await history(store, notice.notice_id) == [(first, "applied"), (late, "a is already removed")]
    # History changes no state.
    assert (await stored(store, ["b"]))["b"].state is RequestState.DELIVERED


async def test_an_ack_about_an_unknown_notice_can_still_be_kept(store: Store) -> None:
    stray = ack(UNKNOWN, AckStatus.REMOVED, source="amqp:takedown.acks")

    await store.record_ack_history(stray, outcome="unknown notice")

    assert await history(store, UNKNOWN) == [(stray, "unknown notice")]


async def test_a_naive_time_is_refused_before_anything_changes(store: Store) -> None:
    notice = await delivered(store, "a")
    naive = ack(notice.notice_id, AckStatus.RECEIVED, at=ACK_AT.replace(tzinfo=None))
    plan = plan_ack(
        NoticeState.DELIVERED, {"a": RequestState.DELIVERED}, ack(notice.notice_id, AckStatus.RECEIVED)
    )

    with pytest.raises(ValueError, match="naive"):
        await store.apply_ack(naive, plan)

    assert (await one_notice(store, notice.notice_id)).state is NoticeState.DELIVERED


# -- receipts ----------------------------------------------------------------------------------


async def test_a_receipt_is_recorded_once_and_moves_no_state(store: Store) -> None:
    notice = await delivered(store, "a")
    first_at = NOW + timedelta(minutes=3)

    assert await store.record_receipt(notice.notice_id, at=first_at, ticket="AR-1", source="email:imap")
    assert await store.record_receipt(notice.notice_id, at=LATER, ticket="AR-2", source="email:imap")

    after = await one_notice(store, notice.notice_id)
    assert (after.receipt_at, after.ticket) == (first_at, "AR-1")
    assert (after.state, after.acknowledged_at) == (NoticeState.DELIVERED, None)
    assert not await store.record_receipt(UNKNOWN, at=LATER, ticket=None, source="email:imap")


async def test_a_receipt_without_a_ticket_keeps_the_ticket_slot_open(store: Store) -> None:
    notice = await delivered(store, "a")

    assert await store.record_receipt(notice.notice_id, at=ACK_AT, ticket=None, source="email:smtp")
    assert await store.record_receipt(notice.notice_id, at=LATER, ticket="AR-3", source="email:smtp")

    after = await one_notice(store, notice.notice_id)
    assert (after.receipt_at, after.ticket) == (ACK_AT, "AR-3")


# -- bounces -----------------------------------------------------------------------------------

RETRY_AT = NOW + timedelta(minutes=30)
BOUNCED_AT = NOW + timedelta(minutes=20)


def bounced(step: Step = Step.FALLBACK, *, channel: str = "api") -> DeliveryDecision:
    """What the delivery rules decide of a bounce: here, on to ``channel`` (or failed)."""
    failed = step is Step.FAIL
    return DeliveryDecision(
        step=step,
        before=NoticeState.DELIVERED,
        state=NoticeState.FAILED if failed else NoticeState.RETRYING,
        channel=channel,
        deliver_by=NOW + timedelta(hours=12),
        fallback_used=channel != "email",
        next_attempt_at=None if failed else RETRY_AT,
        reason="bounced",
    )


async def bounce(
    store: Store, notice_id: str, *, decision: DeliveryDecision | None = None, from_channel: str = "email"
) -> bool:
    return await store.record_bounce(
        notice_id,
        attempt=Attempt(
            at=BOUNCED_AT,
            channel=from_channel,
            outcome=AttemptOutcome.PERMANENT_ERROR,
            code=550,
            detail="550 5.1.1 mailbox unknown",
        ),
        delivery=decision or bounced(),
    )


async def test_a_bounce_sends_a_delivered_notice_back_to_retrying(store: Store) -> None:
    notice = await delivered(store, "a", "b")

    assert await bounce(store, notice.notice_id)

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.channel, after.fallback_used) == (NoticeState.RETRYING, "api", True)
    assert (after.next_attempt_at, after.deliver_by) == (RETRY_AT, NOW + timedelta(hours=12))
    assert (after.delivered_at, after.acknowledged_at) == (None, None)
    assert after.last_error == "550 5.1.1 mailbox unknown"
    assert after.message_id == "<n1@notifier>"  # a re-send keeps it
    assert [(a.outcome, a.code, a.at) for a in after.attempts] == [
        (AttemptOutcome.DELIVERED, 250, DELIVERED_AT),
        (AttemptOutcome.PERMANENT_ERROR, 550, BOUNCED_AT),
    ]
    for request in (await stored(store, ["a", "b"])).values():
        assert (request.state, request.delivered_at, request.notice_id) == (
            RequestState.BATCHED,
            None,
            notice.notice_id,
        )
    # Due again at its retry time, claimable by any process, and a second bounce is refused.
    assert await store.claim_due(owner="w2", now=RETRY_AT - timedelta(seconds=1), lease=LEASE, limit=10) == []
    assert not await bounce(store, notice.notice_id)
    [claimed] = await store.claim_due(owner="w2", now=RETRY_AT, lease=LEASE, limit=10)
    assert claimed.notice_id == notice.notice_id


async def test_a_hard_bounce_without_a_fallback_fails_the_notice_and_its_requests(store: Store) -> None:
    notice = await delivered(store, "a", "b")

    assert await bounce(store, notice.notice_id, decision=bounced(Step.FAIL, channel="email"))

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.next_attempt_at, after.delivered_at) == (NoticeState.FAILED, None, None)
    assert {r.state for r in (await stored(store, ["a", "b"])).values()} == {RequestState.FAILED}
    assert [n.notice_id for n in await store.unalerted_failures(limit=10)] == [notice.notice_id]
    assert await store.claim_due(owner="w2", now=RETRY_AT, lease=LEASE, limit=10) == []


async def test_a_bounce_from_a_channel_the_notice_has_left_is_refused(store: Store) -> None:
    notice = await delivered(store, "a")

    assert not await bounce(store, notice.notice_id, from_channel="api")

    after = await one_notice(store, notice.notice_id)
    assert (after.state, after.delivered_at) == (NoticeState.DELIVERED, DELIVERED_AT)


async def test_a_bounce_is_refused_unless_the_notice_is_delivered(store: Store) -> None:
    acknowledged = await delivered(store, "a")
    assert await applied(store, ack(acknowledged.notice_id, AckStatus.RECEIVED))
    queued = await formed(store, "q")

    assert not await bounce(store, acknowledged.notice_id)
    assert not await bounce(store, queued.notice_id)
    assert not await bounce(store, UNKNOWN)

    after = await one_notice(store, acknowledged.notice_id)
    assert (after.state, after.delivered_at, after.acknowledged_at) == (
        NoticeState.ACKNOWLEDGED,
        DELIVERED_AT,
        ACK_AT,
    )
    assert len(after.attempts) == 1
    assert (await stored(store, ["a"]))["a"].state is RequestState.ACKNOWLEDGED
    still_queued = await one_notice(store, queued.notice_id)
    assert (still_queued.state, still_queued.attempts) == (NoticeState.QUEUED, ())


# -- seen callbacks and mail -------------------------------------------------------------------


async def test_a_webhook_id_is_new_once_per_platform(store: Store) -> None:
    assert await store.remember_webhook("videohost", "msg_1", at=NOW)
    assert not await store.remember_webhook("videohost", "msg_1", at=LATER)
    assert await store.remember_webhook("other", "msg_1", at=NOW)
    assert await store.remember_webhook("videohost", "msg_2", at=NOW)


async def test_a_mail_is_new_once_per_mailbox_uidvalidity_and_uid(store: Store) -> None:
    big = 2**32 - 1  # UIDs and UIDVALIDITY are unsigned 32-bit numbers
    assert await store.remember_mail("INBOX", big, 7, at=NOW)
    assert not await store.remember_mail("INBOX", big, 7, at=LATER)
    assert await store.remember_mail("INBOX", big, big, at=NOW)
    assert await store.remember_mail("INBOX", 1, 7, at=NOW)
    assert await store.remember_mail("Replies", big, 7, at=NOW)


async def test_two_stores_seeing_the_same_callback_take_it_once(store: Store, twin: Store) -> None:
    results = await asyncio.gather(
        *(s.remember_webhook("videohost", "msg_race", at=NOW) for s in (store, twin, store, twin))
    )
    mails = await asyncio.gather(*(s.remember_mail("INBOX", 9, 1, at=NOW) for s in (store, twin)))

    assert sorted(results) == [False, False, False, True]
    assert sorted(mails) == [False, True]


# -- tickets -----------------------------------------------------------------------------------


async def test_a_ticket_finds_the_newest_notice_carrying_it(store: Store) -> None:
    older = await formed(store, "a", now=NOW)
    newer = await formed(store, "b", now=NOW + timedelta(hours=1))
    elsewhere = await formed(store, "x", platform="x", now=NOW + timedelta(hours=2))
    for notice in (older, newer, elsewhere):
        assert await store.record_receipt(notice.notice_id, at=LATER, ticket="T-1", source="api")

    assert await store.notice_by_ticket("T-1") == elsewhere.notice_id
    assert await store.notice_by_ticket("T-1", platform="telegram") == newer.notice_id
    assert await store.notice_by_ticket("T-1", platform="discord") is None
    assert await store.notice_by_ticket("T-404") is None


async def test_a_ticket_learnt_from_an_ack_finds_its_notice(store: Store) -> None:
    notice = await delivered(store, "a")
    assert await store.notice_by_ticket("TG-5") is None

    assert await applied(store, ack(notice.notice_id, AckStatus.RECEIVED, ticket="TG-5"))

    assert await store.notice_by_ticket("TG-5", platform="telegram") == notice.notice_id


async def test_a_callbacks_webhook_id_is_remembered_with_its_acknowledgement_and_a_replay_is_refused(
    store: Store,
) -> None:
    notice = await delivered(store, "a")
    signed = replace(
        ack(notice.notice_id, AckStatus.RECEIVED), source="callback:telegram", webhook_id="msg_1"
    )
    assert not await store.webhook_seen("telegram", "msg_1")

    assert await store.apply_ack(
        signed, plan_ack(NoticeState.DELIVERED, {"a": RequestState.DELIVERED}, signed)
    )

    assert await store.webhook_seen("telegram", "msg_1")
    removed = replace(signed, status=AckStatus.REMOVED)
    # The same webhook-id again, even with a plan that would change something: refused whole.
    replay_plan = plan_ack(NoticeState.ACKNOWLEDGED, {"a": RequestState.ACKNOWLEDGED}, removed)
    assert not await store.apply_ack(removed, replay_plan)
    assert (await stored(store, ["a"]))["a"].state is RequestState.ACKNOWLEDGED
    await store.record_ack_history(removed, outcome="unchanged: replay")
    assert [outcome for _, outcome in await history(store, notice.notice_id)] == ["applied"]
