"""Urgent notices in the NoticeStore contract, on SQLite and PostgreSQL: formed of the urgent
requests alone when asked, marked urgent, and claimed before any other notice."""

from __future__ import annotations

from datetime import timedelta

from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import SendResult
from tests.contract.test_notice_store_contract import (
    DELIVER_BY,
    LONG,
    NOW,
    FullStore,
    attempt,
    form,
    ingest,
    make,
    request_states,
)


async def test_an_urgent_only_notice_leaves_the_normal_requests_pending(store: FullStore) -> None:
    await ingest(store, make("old"), make("u1", urgent=True))

    notice = await store.form_notice(
        "telegram", max_items=50, channel="email", now=NOW, deliver_by=DELIVER_BY, urgent_only=True
    )

    assert notice is not None
    assert (notice.request_ids, notice.urgent) == (("u1",), True)
    assert await request_states(store, ["old"]) == {"old": RequestState.PENDING}
    [stored] = await store.get_notices([notice.notice_id])
    assert stored.urgent


async def test_a_notice_is_urgent_when_it_holds_an_urgent_request_or_is_asked_to_be(
    store: FullStore,
) -> None:
    await ingest(store, make("a"), make("b", urgent=True))
    assert (await form(store)).urgent
    await ingest(store, make("c"))
    assert not (await form(store)).urgent
    await ingest(store, make("d"))
    marked = await store.form_notice(
        "telegram", max_items=50, channel="email", now=NOW, deliver_by=DELIVER_BY, urgent=True
    )
    assert marked is not None and marked.urgent


async def test_urgent_notices_are_claimed_before_older_normal_ones(store: FullStore) -> None:
    await ingest(store, *(make(f"n{i}") for i in range(4)))
    normal = [await form(store, max_items=1) for _ in range(4)]
    later = NOW + timedelta(minutes=5)
    await ingest(store, make("u1", urgent=True), now=later)
    urgent = await form(store, now=later)

    first = await store.claim_due(owner="w1", now=later, lease=LONG, limit=2)

    assert [n.notice_id for n in first] == [urgent.notice_id, normal[0].notice_id]


async def test_an_urgent_only_claim_takes_no_normal_notice(store: FullStore) -> None:
    await ingest(store, make("n1"))
    await form(store)
    assert await store.claim_due(owner="w1", now=NOW, lease=LONG, limit=5, urgent_only=True) == []

    await ingest(store, make("u1", urgent=True))
    urgent = await form(store)
    claimed = await store.claim_due(owner="w1", now=NOW, lease=LONG, limit=5, urgent_only=True)
    assert [n.notice_id for n in claimed] == [urgent.notice_id]


async def test_a_notice_formed_claimed_is_held_by_its_maker_like_a_claimed_one(store: FullStore) -> None:
    await ingest(store, make("u1", urgent=True))

    await ingest(store, make("n1"))
    formed = await store.form_claimed(
        "telegram",
        max_items=50,
        channel="email",
        now=NOW,
        deliver_by=DELIVER_BY,
        owner="w1",
        lease=LONG,
        urgent_only=True,
    )

    assert formed is not None
    notice, requests = formed
    assert (notice.state, notice.urgent, notice.request_ids) == (NoticeState.SENDING, True, ("u1",))
    assert requests == [make("u1", urgent=True)]
    assert await request_states(store, ["n1"]) == {"n1": RequestState.PENDING}
    assert await store.claim_due(owner="w2", now=NOW + timedelta(days=1), lease=LONG, limit=5) == []
    assert await store.renew_lease(notice.notice_id, owner="w1", lease=LONG)
    assert not await store.renew_lease(notice.notice_id, owner="w2", lease=LONG)
    assert await store.record_delivery(
        notice.notice_id, owner="w1", attempt=attempt(), result=SendResult(code=250), channel="email"
    )
    assert await request_states(store, ["u1"]) == {"u1": RequestState.DELIVERED}
