"""Deadline profiles on the simulated clock and a SQLite store (SPEC §14): a notice holds one
profile's requests, leaves within its profile's share of the bound, and is reminded and breached on
that profile's bounds."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckItem, AckStatus, ItemStatus, parse_ack, plan_ack
from notifier.domain.deadlines import DeadlineProfile
from notifier.domain.errors import InvalidRequest
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Authority, MessageKind
from notifier.domain.report import Bounds
from notifier.domain.sla import SlaBounds, SlaKind
from notifier.domain.validation import Vocabulary, parse_request
from notifier.domain.withdrawal import WithdrawalKind
from notifier.metrics import Metrics
from notifier.ports import Incoming
from notifier.services.acks import AckOutcome, AckResult, AckService, FallbackRule
from notifier.services.clarify import send_clarification
from notifier.services.dispatcher import Dispatcher, Route
from notifier.services.operator import record_ack
from notifier.services.report import ProfileBounds, build_report
from notifier.services.sla import SlaMonitor
from notifier.services.status import lookup
from notifier.services.withdraw import withdraw_requests
from notifier.store import SqlStore
from tests.unit.test_sla_monitor import ScriptedChannel

AUTHORITY = Authority(
    name="Authority", email="takedown@authority.example", reply_to=None, timezone="Asia/Seoul"
)
TICK = timedelta(microseconds=1)
PLATFORM_BOUND = timedelta(hours=36)
PROFILES = {
    "tco_removal_order": DeadlineProfile(
        name="tco_removal_order",
        label="Regulation (EU) 2021/784, Art. 3(3): one hour",
        ack_within=timedelta(hours=1),
        removal_within=timedelta(hours=1),
        urgent=True,
    ),
    "kcsc_36h": DeadlineProfile(
        name="kcsc_36h",
        label="KCSC: 36 hours",
        ack_within=timedelta(hours=36),
        removal_within=timedelta(hours=36),
    ),
    "take_it_down": DeadlineProfile(
        name="take_it_down",
        label="TAKE IT DOWN Act: 48 hours",
        ack_within=timedelta(hours=48),
        removal_within=timedelta(hours=48),
    ),
}
VOCABULARY = Vocabulary(
    platforms={"telegram"},
    categories={"terrorist_content", "deepfake_sexual_abuse"},
    deadlines=set(PROFILES),
    category_deadlines={"terrorist_content": "tco_removal_order"},
)


class World:
    """A dispatcher and an SLA monitor of one platform, sharing a scripted email channel."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.clock = SimulatedClock()
        self.start = self.clock.now()
        self.channel = ScriptedChannel("email", self.clock)
        route = Route(
            platform="telegram",
            name="Telegram",
            language="en",
            primary=self.channel,
            fallback=None,
            max_items=50,
            max_wait=timedelta(minutes=10),
            rate_per_minute=0,
            ack_within=PLATFORM_BOUND,
            removal_within=PLATFORM_BOUND,
            profiles=PROFILES,
        )
        self.dispatcher = Dispatcher(
            store=store,
            routes={"telegram": route},
            authority=AUTHORITY,
            category_labels={},
            clock=self.clock,
            metrics=Metrics(),
            deliver_within=timedelta(hours=6),
            alerts=None,
            in_call_wait=0.001,
            rng=random.Random(1),
        )
        self.monitor = SlaMonitor(
            store=store,
            routes={"telegram": route},
            bounds={"telegram": SlaBounds(ack_within=PLATFORM_BOUND, removal_within=PLATFORM_BOUND)},
            profile_bounds={
                ("telegram", name): SlaBounds(
                    ack_within=p.ack_within, removal_within=p.removal_within, remind_at=p.remind_at
                )
                for name, p in PROFILES.items()
            },
            authority=AUTHORITY,
            category_labels={},
            clock=self.clock,
            metrics=Metrics(),
            poll_interval=60.0,
            send_backoff=0.0,
        )

    async def submit(self, request_id: str, **fields: str) -> None:
        body = {
            "request_id": request_id,
            "platform": "telegram",
            "urls": [f"https://t.me/c/{request_id}"],
            "category": "deepfake_sexual_abuse",
            **fields,
        }
        request = parse_request(json.dumps(body), VOCABULARY)
        await self.store.ingest([Incoming(request=request, source="test")], [], now=self.clock.now())

    async def dispatch(self) -> None:
        await self.dispatcher.form_notices()
        await self.dispatcher.send_due(asyncio.Event())
        await self.dispatcher.drain()

    async def at(self, elapsed: timedelta) -> None:
        """Move business time to ``elapsed`` after the start; dispatch and judge there."""
        await self.clock.advance(self.start + elapsed - self.clock.now())
        await self.dispatch()
        await self.monitor.round()

    def sent(self, kind: MessageKind) -> list[tuple[str, timedelta]]:
        """(notice id, when after the start) of every message of ``kind``."""
        return [
            (content.notice_id, at - self.start)
            for (k, _, at), content in zip(self.channel.sent, self.channel.contents, strict=True)
            if k is kind
        ]

    async def ack(self, notice_id: str, status: AckStatus) -> None:
        ack = Ack(notice_id=notice_id, status=status, received_at=self.clock.now(), source="test")
        context = await self.store.ack_context(notice_id)
        assert context is not None
        assert await self.store.apply_ack(ack, plan_ack(context[0].state, context[1], ack))


async def test_a_one_hour_order_and_a_36_hour_request_leave_apart_the_order_at_once(store: SqlStore) -> None:
    world = World(store)
    await world.submit("order-1", category="terrorist_content")  # its category's profile: one hour
    await world.submit("kcsc-1", deadline="kcsc_36h")
    await world.at(timedelta(0))
    [(order_notice, order_sent)] = world.sent(MessageKind.NOTICE)
    assert order_sent == timedelta(0)  # urgent profile: no batching at all
    [order] = world.channel.contents
    assert [r.request_id for r in order.requests] == ["order-1"]
    assert order.deadline is not None and order.deadline.name == "tco_removal_order"
    assert order.ack_by == world.start + timedelta(hours=1)
    assert order.remove_by == world.start + timedelta(hours=1)

    await world.at(timedelta(minutes=10) - TICK)
    assert len(world.sent(MessageKind.NOTICE)) == 1  # the 36-hour request waits for its batch
    await world.at(timedelta(minutes=10))
    notices = world.sent(MessageKind.NOTICE)
    assert len(notices) == 2
    kcsc_notice, kcsc_sent = notices[1]
    assert kcsc_notice != order_notice and kcsc_sent == timedelta(minutes=10)
    kcsc = world.channel.contents[1]
    assert [r.request_id for r in kcsc.requests] == ["kcsc-1"]
    assert kcsc.remove_by == world.start + timedelta(minutes=10, hours=36)

    # Each is reminded and breached on its own bound.
    for elapsed in (
        timedelta(hours=0.66),
        timedelta(hours=1) + TICK,
        timedelta(minutes=10) + timedelta(hours=36 * 0.66),
        timedelta(minutes=10, hours=36) + TICK,
    ):
        await world.at(elapsed)
    assert world.sent(MessageKind.REMINDER) == [
        (order_notice, timedelta(hours=0.66)),
        (kcsc_notice, timedelta(minutes=10) + timedelta(hours=36 * 0.66)),
    ]
    assert world.sent(MessageKind.ESCALATION) == [
        (order_notice, timedelta(hours=1) + TICK),
        (kcsc_notice, timedelta(minutes=10, hours=36) + TICK),
    ]
    decisions = await store.sla_decisions([order_notice, kcsc_notice])
    assert sorted((d.notice_id, d.kind) for d in decisions) == sorted(
        (notice_id, kind)
        for notice_id in (order_notice, kcsc_notice)
        for kind in (SlaKind.REMINDER, SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH)
    )


async def test_a_request_waits_in_a_batch_at_most_5_percent_of_its_profiles_bound(store: SqlStore) -> None:
    world = World(store)
    # 5 % of one hour is 3 minutes, sooner than the platform's 10-minute batch.
    profiles = dict(PROFILES)
    profiles["one_hour"] = DeadlineProfile(
        name="one_hour", label="one hour", ack_within=timedelta(hours=1), removal_within=timedelta(hours=1)
    )
    route = world.dispatcher._routes["telegram"]
    world.dispatcher._routes["telegram"] = replace(route, profiles=profiles)
    vocabulary = Vocabulary(
        platforms={"telegram"}, categories={"deepfake_sexual_abuse"}, deadlines=set(profiles)
    )
    request = parse_request(
        json.dumps(
            {
                "request_id": "r-1",
                "platform": "telegram",
                "urls": ["https://t.me/c/1"],
                "category": "deepfake_sexual_abuse",
                "deadline": "one_hour",
            }
        ),
        vocabulary,
    )
    await store.ingest([Incoming(request=request, source="test")], [], now=world.clock.now())
    wake_at = await world.dispatcher.form_notices()
    assert wake_at == world.start + timedelta(minutes=3)
    await world.at(timedelta(minutes=3) - TICK)
    assert world.sent(MessageKind.NOTICE) == []
    await world.at(timedelta(minutes=3))
    assert [sent for _, sent in world.sent(MessageKind.NOTICE)] == [timedelta(minutes=3)]


async def test_a_48_hour_request_removed_at_47h59m_is_within_and_one_silent_past_48h_is_breached(
    store: SqlStore,
) -> None:
    world = World(store)
    await world.submit("within", deadline="take_it_down")
    await world.submit("late", deadline="take_it_down")
    await world.at(timedelta(minutes=10))  # 5 % of 48 h is more than the 10-minute batch
    [(notice_id, _)] = world.sent(MessageKind.NOTICE)
    await world.ack(notice_id, AckStatus.RECEIVED)
    # Removed at 47 h 59 min after delivery: within.
    await world.at(timedelta(minutes=10, hours=47, seconds=59 * 60))
    ack = Ack(
        notice_id=notice_id,
        status=AckStatus.PARTIAL,
        items=(AckItem(request_id="within", status=ItemStatus.REMOVED),),
        received_at=world.clock.now(),
        source="test",
    )
    context = await store.ack_context(notice_id)
    assert context is not None
    assert await store.apply_ack(ack, plan_ack(context[0].state, context[1], ack))
    # Exactly 48 h after delivery: still within; 48 h 0 min 1 s: the other is breached.
    await world.at(timedelta(minutes=10, hours=48))
    assert await store.sla_decisions([notice_id]) == []
    await world.at(timedelta(minutes=10, hours=48, seconds=1))
    [decision] = await store.sla_decisions([notice_id])
    assert decision.kind is SlaKind.REMOVAL_BREACH


async def test_a_clarification_asked_at_minute_40_and_answered_at_hour_5_moves_the_breach_to_hour_6(
    store: SqlStore,
) -> None:
    world = World(store)
    await world.submit("order-1", category="terrorist_content")
    await world.at(timedelta(0))
    [(notice_id, _)] = world.sent(MessageKind.NOTICE)
    await world.at(timedelta(minutes=40))
    await world.ack(notice_id, AckStatus.CLARIFICATION_REQUESTED)
    # The removal clock stands still: the one-hour bound passes with no breach.
    await world.at(timedelta(hours=1) + TICK)
    await world.at(timedelta(hours=4))
    assert world.sent(MessageKind.ESCALATION) == []
    # Only the reminder, due at 0.66 h, before the question.
    assert {d.kind for d in await store.sla_decisions([notice_id])} == {SlaKind.REMINDER}

    await world.at(timedelta(hours=5))
    done = await send_clarification(
        store,
        world.dispatcher._routes,
        notice_id=notice_id,
        note="The URLs are the mirrors listed in the order's annex.",
        now=world.clock.now(),
        authority=AUTHORITY,
        labels={},
    )
    assert done.first
    [(answer_id, answered_after)] = world.sent(MessageKind.CLARIFICATION)
    assert (answer_id, answered_after) == (notice_id, timedelta(hours=5))
    answer = world.channel.contents[-1]
    assert answer.remove_by == world.start + timedelta(hours=6)  # the full bound from the answer
    assert answer.note is not None and "annex" in answer.note

    # Answering again re-sends the same answer and moves nothing.
    await world.at(timedelta(hours=5, minutes=30))
    again = await send_clarification(
        store,
        world.dispatcher._routes,
        notice_id=notice_id,
        note="The URLs are the mirrors listed in the order's annex.",
        now=world.clock.now(),
        authority=AUTHORITY,
        labels={},
    )
    assert not again.first and again.remove_by == world.start + timedelta(hours=6)

    await world.at(timedelta(hours=6))
    assert world.sent(MessageKind.ESCALATION) == []  # exactly the bound from the answer: within
    await world.at(timedelta(hours=6) + TICK)
    assert world.sent(MessageKind.ESCALATION) == [(notice_id, timedelta(hours=6) + TICK)]
    assert {d.kind for d in await store.sla_decisions([notice_id])} == {
        SlaKind.REMINDER,
        SlaKind.REMOVAL_BREACH,
    }
    # notifier status --json: the request's profile and the 4 h 20 min its clock stood still.
    [view] = (await lookup(store, ["order-1"], now=world.clock.now()))["requests"]
    assert (view["deadline"], view["paused_s"]) == ("tco_removal_order", 4 * 3600 + 20 * 60)
    # The report: 4 h 20 min paused, and the open order breached on the clock restarted at hour 5.
    one_hour = Bounds(ack_within=timedelta(hours=1), removal_within=timedelta(hours=1))
    report = await build_report(
        store,
        {"telegram": Bounds(ack_within=PLATFORM_BOUND, removal_within=PLATFORM_BOUND)},
        now=world.clock.now(),
        profiles=ProfileBounds(on_platform={("telegram", "tco_removal_order"): one_hour}),
    )
    [telegram] = report["platforms"]
    assert (telegram["paused_s"], telegram["removal_breaches"]) == (4 * 3600 + 20 * 60, 1)


async def test_two_successive_clarifications_are_both_paused_and_summed(store: SqlStore) -> None:
    """A second question after the first answer stops the clock again: the breach moves to a
    full bound after the second answer, and ``paused_s`` is the sum of both pauses."""
    world = World(store)
    await world.submit("order-1", category="terrorist_content")
    await world.at(timedelta(0))
    [(notice_id, _)] = world.sent(MessageKind.NOTICE)

    async def answer() -> None:
        await send_clarification(
            store,
            world.dispatcher._routes,
            notice_id=notice_id,
            note="The URLs are the mirrors listed in the order's annex.",
            now=world.clock.now(),
            authority=AUTHORITY,
            labels={},
        )

    await world.at(timedelta(minutes=40))
    await world.ack(notice_id, AckStatus.CLARIFICATION_REQUESTED)
    await world.at(timedelta(hours=5))
    await answer()  # first pause: 4 h 20 min
    await world.at(timedelta(hours=5, minutes=30))
    await world.ack(notice_id, AckStatus.CLARIFICATION_REQUESTED)
    await world.at(timedelta(hours=6) + TICK)  # the first answer's bound passes: stopped again
    await world.at(timedelta(hours=7))
    await world.ack(notice_id, AckStatus.CLARIFICATION_REQUESTED)  # asked again: the same pause
    assert world.sent(MessageKind.ESCALATION) == []
    await world.at(timedelta(hours=7, minutes=30))
    await answer()  # second pause: 2 h, from its first asking
    [view] = (await lookup(store, ["order-1"], now=world.clock.now()))["requests"]
    assert view["paused_s"] == 4 * 3600 + 20 * 60 + 2 * 3600

    await world.at(timedelta(hours=8, minutes=30))
    assert world.sent(MessageKind.ESCALATION) == []  # exactly the bound from the second answer
    await world.at(timedelta(hours=8, minutes=30) + TICK)
    assert world.sent(MessageKind.ESCALATION) == [(notice_id, timedelta(hours=8, minutes=30) + TICK)]
    one_hour = Bounds(ack_within=timedelta(hours=1), removal_within=timedelta(hours=1))
    report = await build_report(
        store,
        {"telegram": Bounds(ack_within=PLATFORM_BOUND, removal_within=PLATFORM_BOUND)},
        now=world.clock.now(),
        profiles=ProfileBounds(on_platform={("telegram", "tco_removal_order"): one_hour}),
    )
    [telegram] = report["platforms"]
    assert (telegram["paused_s"], telegram["removal_breaches"]) == (6 * 3600 + 20 * 60, 1)


def test_a_callback_or_queue_message_may_ask_for_clarification() -> None:
    body = b'{"notice_id": "TD-telegram-20260302-000001", "status": "clarification_requested"}'
    ack = parse_ack(body, source="callback:telegram", received_at=datetime(2026, 3, 2, tzinfo=UTC))
    assert ack.status is AckStatus.CLARIFICATION_REQUESTED
    plan = plan_ack(NoticeState.DELIVERED, {"r-1": RequestState.DELIVERED}, ack)
    assert plan.clarification_requested_at == ack.received_at
    assert plan.notice_after is NoticeState.ACKNOWLEDGED  # a question is an answer to the notice
    assert [(c.request_id, c.after) for c in plan.changes] == [("r-1", RequestState.ACKNOWLEDGED)]
    # A resolved notice has nothing left to clarify.
    assert (
        plan_ack(NoticeState.RESOLVED, {"r-1": RequestState.REMOVED}, ack).clarification_requested_at is None
    )


async def test_withdrawal_before_sending_never_leaves_and_after_sending_gets_one_withdrawal_notice(
    store: SqlStore,
) -> None:
    world = World(store)
    await world.submit("sent-1", deadline="kcsc_36h")
    await world.submit("sent-2", deadline="kcsc_36h")
    await world.at(timedelta(minutes=10))
    [(notice_id, _)] = world.sent(MessageKind.NOTICE)
    await world.submit("pending-1", deadline="kcsc_36h")  # waits for its batch
    await world.submit("batched-1")
    batch = await store.form_notice(
        "telegram", max_items=50, channel="email", now=world.clock.now(), deliver_by=world.clock.now()
    )
    assert batch is not None and batch.request_ids == ("batched-1",)

    withdrawn = await withdraw_requests(
        store,
        world.dispatcher._routes,
        request_ids=["pending-1", "batched-1", "sent-1", "nobody"],
        reason="Decided in error: the account is the victim's own.",
        now=world.clock.now(),
        authority=AUTHORITY,
        labels={},
    )
    assert [(s.request_id, s.kind) for s in withdrawn.steps] == [
        ("pending-1", WithdrawalKind.UNSENT),
        ("batched-1", WithdrawalKind.UNSENT),
        ("sent-1", WithdrawalKind.SENT),
    ]
    assert withdrawn.notified == [notice_id]
    [(withdrawal_of, _)] = world.sent(MessageKind.WITHDRAWAL)
    letter = world.channel.contents[-1]
    assert withdrawal_of == notice_id and [r.request_id for r in letter.requests] == ["sent-1"]
    assert letter.note is not None and "victim" in letter.note

    # Withdrawn again: refused, and no second withdrawal notice.
    again = await withdraw_requests(
        store,
        world.dispatcher._routes,
        request_ids=["sent-1"],
        reason="again",
        now=world.clock.now(),
        authority=AUTHORITY,
        labels={},
    )
    assert [s.refusal for s in again.steps] == ["it is already withdrawn"]
    assert len(world.sent(MessageKind.WITHDRAWAL)) == 1

    # The unsent ones never leave: no notice holds them, the emptied batch is settled.
    await world.at(timedelta(hours=2))
    assert [n for n, _ in world.sent(MessageKind.NOTICE)] == [notice_id]
    [settled] = await store.get_notices([batch.notice_id])
    assert settled.state is NoticeState.RESOLVED
    states = {s.request.request_id: s.state for s in await store.get_requests(["pending-1", "batched-1"])}
    assert states == {"pending-1": RequestState.WITHDRAWN, "batched-1": RequestState.WITHDRAWN}

    # Shown apart in the report, and out of the bound figures: sent-2 alone is open and breached,
    # and the escalation asks only for it.
    await world.at(timedelta(minutes=10, hours=36) + TICK)
    escalation = [c for c in world.channel.contents if c.kind is MessageKind.ESCALATION]
    assert [[r.request_id for r in c.requests] for c in escalation] == [["sent-2"]]
    report = await build_report(
        store,
        {"telegram": Bounds(ack_within=PLATFORM_BOUND, removal_within=PLATFORM_BOUND)},
        now=world.clock.now(),
    )
    [telegram] = report["platforms"]
    assert (telegram["withdrawn"], telegram["requests"], telegram["removal_breaches"]) == (3, 1, 1)


async def test_staff_record_a_clarification_asked_by_phone_for_the_whole_notice(store: SqlStore) -> None:
    world = World(store)
    await world.submit("order-1", category="terrorist_content")
    await world.at(timedelta(0))
    [(notice_id, _)] = world.sent(MessageKind.NOTICE)
    acks = AckService(
        store=store,
        clock=world.clock,
        metrics=Metrics(),
        fallbacks={"telegram": FallbackRule(primary="email", fallback=None)},
        deliver_within=timedelta(hours=6),
    )
    asked_at = world.clock.now() + timedelta(minutes=40)
    await world.clock.advance(timedelta(minutes=40))

    def by_phone(request_ids: list[str]) -> Awaitable[AckResult]:
        return record_ack(
            acks,
            store,
            notice_id,
            status=AckStatus.CLARIFICATION_REQUESTED,
            request_ids=request_ids,
            ticket=None,
            at=asked_at,
            now=world.clock.now(),
            note=None,
        )

    with pytest.raises(InvalidRequest):
        await by_phone(["order-1"])
    assert (await by_phone([])).outcome is AckOutcome.APPLIED
    [notice] = await store.get_notices([notice_id])
    assert notice.clarification_requested_at == asked_at
