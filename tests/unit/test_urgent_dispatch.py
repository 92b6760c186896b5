"""Urgent requests jump every queue of dispatch: batching, the claim, and the send slots.

On a SQLite store, scripted channels and the simulated clock (which never moves here: nothing
urgent may wait for business time).
"""

from __future__ import annotations

import asyncio

import pytest

from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import NoticeContent, SendResult
from notifier.store import SqlStore
from tests.unit.test_dispatcher import Harness, ScriptedChannel, SlowChannel
from tests.waiting import wait_for


class GatedChannel(ScriptedChannel):
    """A platform that holds every normal notice until ``gate`` opens; urgent ones go through."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.started: list[str] = []

    async def send(self, content: NoticeContent) -> SendResult:
        self.started.append(content.notice_id)
        if not content.urgent:
            await self.gate.wait()
        return await super().send(content)


async def _notice_of(h: Harness, request_id: str) -> str:
    (stored,) = await h.store.get_requests([request_id])
    assert stored.notice_id is not None
    return stored.notice_id


async def test_an_urgent_requests_notice_closes_at_once_holding_only_urgent_requests(
    store: SqlStore,
) -> None:
    h = Harness(store, ScriptedChannel("email"), max_items=10)
    await h.add("n-1", "n-2")
    await h.add("u-1", priority="urgent")

    await h.dispatcher.form_urgent()

    counts = await h.store.status_counts()
    assert counts.notices["telegram"] == {"queued": 1}
    (notice,) = await h.store.get_notices([await _notice_of(h, "u-1")])
    assert (notice.request_ids, notice.urgent) == (("u-1",), True)
    # The normal requests keep batching as before: nothing made them due.
    states = {r.request.request_id: r.state for r in await h.store.get_requests(["n-1", "n-2"])}
    assert states == {"n-1": RequestState.PENDING, "n-2": RequestState.PENDING}


async def test_an_urgent_notice_behind_a_backlog_of_normal_notices_is_claimed_and_sent_first(
    store: SqlStore,
) -> None:
    channel = ScriptedChannel("email")
    h = Harness(store, channel, max_items=2, concurrency=1)
    await h.add(*(f"n-{i}" for i in range(8)))
    await h.dispatcher.form_notices()  # four full normal notices, due before anything else
    await h.add("u-1", priority="urgent")
    await h.dispatcher.form_notices()  # the batcher's own round closes the urgent one too

    assert await h.dispatcher.send_due(h.stop) == 1
    await h.dispatcher.drain()

    urgent_id = await _notice_of(h, "u-1")
    assert [c.notice_id for c in channel.sent] == [urgent_id]
    assert channel.sent[0].urgent
    (notice,) = await h.store.get_notices([urgent_id])
    assert notice.state is NoticeState.DELIVERED


async def test_an_urgent_notice_is_sent_while_every_normal_send_slot_is_busy(store: SqlStore) -> None:
    channel = GatedChannel("email")
    h = Harness(store, channel, max_items=1, concurrency=2)
    await h.add("n-1", "n-2", "n-3")
    await h.dispatcher.form_notices()
    assert await h.dispatcher.send_due(h.stop) == 2  # both normal slots taken, held by the platform
    await h.add("u-1", priority="urgent")
    await h.dispatcher.form_urgent()

    assert await h.dispatcher.send_due(h.stop) == 0  # no normal slot free
    assert await h.dispatcher.send_urgent(h.stop) == 1  # the slot kept for urgent notices
    urgent_id = await _notice_of(h, "u-1")

    async def urgent_delivered() -> bool:
        (notice,) = await h.store.get_notices([urgent_id])
        return notice.state is NoticeState.DELIVERED

    await wait_for(urgent_delivered, within=10, what="the urgent notice delivered")
    assert [c.notice_id for c in channel.sent] == [urgent_id]  # the normal ones still held
    # The slot kept for urgent notices is never given to a normal one.
    assert await h.dispatcher.send_urgent(h.stop) == 0
    channel.gate.set()
    await h.dispatcher.drain()
    assert len(channel.sent) == 3


@pytest.mark.parametrize("named", [True, False], ids=["requests-named", "platforms-searched"])
async def test_a_running_dispatcher_sends_an_urgent_request_when_kicked_not_at_its_poll(
    store: SqlStore, named: bool
) -> None:
    # A poll of an hour and a batching wait of ten minutes: only the kick can make it go.
    slow = SlowChannel("email", 0.0)
    h = Harness(store, slow, max_items=10, poll_interval=3600)
    run = asyncio.create_task(h.dispatcher.run(h.stop))
    try:
        await wait_for(_is_quiet(h), within=10, what="the dispatcher idle")
        await h.add("n-1")
        await h.add("u-1", priority="urgent")
        (urgent,) = await h.store.get_requests(["u-1"])
        h.dispatcher.kick_urgent([urgent.request] if named else ())

        async def delivered() -> bool:
            (stored,) = await h.store.get_requests(["u-1"])
            return stored.state is RequestState.DELIVERED

        await wait_for(delivered, within=10, what="the urgent request delivered", interval=0.01)
        (normal,) = await h.store.get_requests(["n-1"])
        assert normal.state is RequestState.PENDING
    finally:
        h.stop.set()
        await run


def _is_quiet(h: Harness):  # type: ignore[no-untyped-def]
    async def quiet() -> bool:
        return h.dispatcher.quiet

    return quiet
