"""The SLA monitor on a SQLite store, scripted channels and the simulated clock: days of business
time driven in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Authority, MessageKind, NoticeContent, SendResult
from notifier.domain.sla import SlaBounds, SlaKind
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import Channel, Incoming
from notifier.services.dispatcher import Route
from notifier.services.sla import SlaMonitor
from notifier.store import SqlStore
from tests.waiting import wait_for

AUTHORITY = Authority(name="Authority", email="takedown@authority.example", reply_to=None, timezone="UTC")
BOUND = timedelta(hours=36)
BOUNDS = SlaBounds(ack_within=BOUND, removal_within=BOUND, remind_at=0.66)


class ScriptedChannel:
    """Answers given in advance (the last repeats); every send recorded with its id and the time.

    Ids are made as the email channel makes them: derived from the notice id and the kind."""

    def __init__(
        self, name: str, clock: SimulatedClock, answers: Sequence[SendResult | DeliveryError] = ()
    ) -> None:
        self.name = name
        self.clock = clock
        self.answers = list(answers)
        self.sent: list[tuple[MessageKind, str, datetime]] = []
        self.contents: list[NoticeContent] = []

    async def send(self, content: NoticeContent) -> SendResult:
        message_id = f"<{content.notice_id}.{content.message_tag}@authority.example>"
        self.sent.append((content.kind, message_id, self.clock.now()))
        self.contents.append(content)
        answer = (self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]) if self.answers else None
        if isinstance(answer, DeliveryError):
            raise answer
        return SendResult(code=250, message_id=message_id)

    def of(self, kind: MessageKind) -> list[tuple[MessageKind, str, datetime]]:
        return [sent for sent in self.sent if sent[0] is kind]

    async def close(self) -> None:
        return None


def route(channel: Channel) -> Route:
    return Route(
        platform="telegram",
        name="Telegram",
        language="en",
        primary=channel,
        fallback=None,
        max_items=50,
        max_wait=timedelta(minutes=10),
        rate_per_minute=0,
        ack_within=BOUND,
        removal_within=BOUND,
    )


def monitor(
    store: SqlStore,
    clock: SimulatedClock,
    channel: Channel,
    *,
    escalations: dict[str, Channel] | None = None,
    metrics: Metrics | None = None,
    bounds: SlaBounds = BOUNDS,
) -> SlaMonitor:
    return SlaMonitor(
        store=store,
        routes={"telegram": route(channel)},
        bounds={"telegram": bounds},
        authority=AUTHORITY,
        category_labels={},
        clock=clock,
        metrics=metrics or Metrics(),
        escalations=escalations,
        poll_interval=60.0,  # real seconds: only the simulated clock and kicks wake the monitor here
        send_backoff=0.0,
    )


async def delivered(store: SqlStore, clock: SimulatedClock, request_id: str = "r-1") -> tuple[str, datetime]:
    """A notice of one request, delivered by email now."""
    now = clock.now()
    request = TakedownRequest(
        request_id=request_id,
        platform="telegram",
        urls=(f"https://t.me/c/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )
    await store.ingest([Incoming(request=request, source="test")], [], now=now)
    notice = await store.form_notice(
        "telegram", max_items=50, channel="email", now=now, deliver_by=now + BOUND
    )
    assert notice is not None
    [claimed] = await store.claim_due(owner="w", now=now, lease=timedelta(minutes=5), limit=1)
    attempt = Attempt(at=now, channel="email", outcome=AttemptOutcome.DELIVERED, code=250)
    assert await store.record_delivery(
        claimed.notice_id, owner="w", attempt=attempt, result=SendResult(code=250), channel="email"
    )
    return claimed.notice_id, now


async def until(condition: Callable[[], bool], what: str = "the monitor") -> None:
    """Let other tasks run until ``condition`` holds (no business time passes meanwhile)."""

    async def holds() -> bool:
        return condition()

    await wait_for(holds, within=10.0, what=what, interval=0)


class Running:
    """A monitor's ``run`` loop as a task, with a way to wait for its next full round."""

    def __init__(self, monitor: SlaMonitor, clock: SimulatedClock) -> None:
        self.monitor = monitor
        self.clock = clock
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(monitor.run(self.stop))

    async def next_round(self) -> None:
        done = self.monitor.rounds
        self.monitor.kick()
        await self.round_after(done)

    async def round_after(self, done: int) -> None:
        """Wait for round ``done + 1`` to complete and the loop to wait again."""
        await until(lambda: self.monitor.rounds > done, f"round {done + 1}")
        await self.idle()

    async def advance(self, delta: timedelta) -> None:
        """Move business time on by ``delta``, stopping at each time the monitor sleeps until, as the
        daemon's clock would, then let it do a full round."""
        target = self.clock.now() + delta
        while (wake_at := self.monitor.wake_at) is not None and wake_at <= target:
            done = self.monitor.rounds
            await self.clock.advance(wake_at - self.clock.now())
            await self.round_after(done)
        await self.clock.advance(target - self.clock.now())
        await self.next_round()

    async def idle(self) -> None:
        """Wait until the loop waits, asleep on the clock if it has a business time to wake at."""
        monitor, clock = self.monitor, self.clock
        await until(lambda: monitor.idle and (monitor.wake_at is None or clock.next_deadline is not None))

    async def close(self) -> None:
        self.stop.set()
        await self.task


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
async def channel(clock: SimulatedClock) -> AsyncIterator[ScriptedChannel]:
    yield ScriptedChannel("email", clock)


async def test_a_silent_platform_gets_one_reminder_then_one_breach_and_one_escalation(
    store: SqlStore, clock: SimulatedClock, channel: ScriptedChannel
) -> None:
    notice_id, delivered_at = await delivered(store, clock)
    metrics = Metrics()
    running = Running(monitor(store, clock, channel, metrics=metrics), clock)
    with capture_logs() as logs:
        await running.idle()
        # Idle, asleep on the business clock until the reminder falls due.
        assert clock.next_deadline == delivered_at + BOUND * 0.66
        await clock.advance(BOUND * 0.66 - timedelta(seconds=1))
        assert channel.sent == []
        await clock.advance(timedelta(seconds=1))
        await until(lambda: len(channel.sent) == 1)
        await running.idle()
        # Three days, an hour at a time, with a full round at every hour.
        for _ in range(72):
            await running.advance(timedelta(hours=1))
        await running.close()

    [(_, reminder_id, reminded_at)] = channel.of(MessageKind.REMINDER)
    assert reminder_id == f"<{notice_id}.reminder@authority.example>"
    assert reminded_at == delivered_at + BOUND * 0.66
    [(_, escalation_id, escalated_at)] = channel.of(MessageKind.ESCALATION)
    assert escalation_id == f"<{notice_id}.escalation@authority.example>"
    [escalation] = [c for c in channel.contents if c.kind is MessageKind.ESCALATION]
    assert escalation.breaches == (SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH)  # one escalation for both
    # Woken the instant the bound was passed: 36 h is within, anything more is a breach.
    assert escalated_at == delivered_at + BOUND + timedelta(microseconds=1)

    reminders = [e for e in logs if e["event"] == "sla.reminder"]
    breaches = [e for e in logs if e["event"] == "sla.breach"]
    assert len(reminders) == 1
    assert sorted(e["kind"] for e in breaches) == ["ack_breach", "removal_breach"]
    assert all(e["notice_id"] == notice_id and e["platform"] == "telegram" for e in breaches)
    assert all(e["bound_s"] == 36 * 3600 and e["elapsed_s"] >= 36 * 3600 for e in breaches)
    assert metrics.sla_reminders.labels(platform="telegram")._value.get() == 1
    assert metrics.sla_breaches.labels(platform="telegram", kind="ack_breach")._value.get() == 1
    decisions = await store.sla_decisions([notice_id])
    assert {d.kind for d in decisions} == {SlaKind.REMINDER, SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH}
    assert all(d.sent_at is not None for d in decisions)


async def test_an_acknowledged_platform_gets_no_reminder(
    store: SqlStore, clock: SimulatedClock, channel: ScriptedChannel
) -> None:
    notice_id, delivered_at = await delivered(store, clock)
    ack = Ack(
        notice_id=notice_id,
        status=AckStatus.RECEIVED,
        received_at=delivered_at + timedelta(hours=1),
        source="amqp:takedown.acks",
    )
    context = await store.ack_context(notice_id)
    assert context is not None
    assert await store.apply_ack(ack, plan_ack(context[0].state, context[1], ack))
    m = monitor(store, clock, channel)
    await clock.advance(BOUND)
    await m.round()
    assert channel.sent == []
    # Acknowledged is not removed: the removal bound still holds.
    await clock.advance(timedelta(seconds=1))
    await m.round()
    assert [sent[0] for sent in channel.sent] == [MessageKind.ESCALATION]


async def test_a_delivery_wakes_a_waiting_monitor_only_when_it_falls_due_first(
    store: SqlStore, clock: SimulatedClock, channel: ScriptedChannel
) -> None:
    running = Running(monitor(store, clock, channel), clock)
    m = running.monitor
    await running.idle()
    assert m.wake_at is None  # nothing open

    _, first_at = await delivered(store, clock, "r-1")
    rounds = m.rounds
    m.delivered("telegram", first_at)
    assert not m.quiet  # kicked: the first notice's reminder is the earliest thing to wait for
    await running.round_after(rounds)
    assert m.wake_at == first_at + BOUND * 0.66

    await clock.advance(timedelta(hours=1))
    _, second_at = await delivered(store, clock, "r-2")
    m.delivered("telegram", second_at)
    assert m.quiet  # its reminder comes after the first's: no round over every open notice
    m.delivered("elsewhere", second_at)  # a platform the monitor does not judge
    assert m.quiet

    await running.advance(BOUND)
    assert [sent[2] for sent in channel.of(MessageKind.REMINDER)] == [
        first_at + BOUND * 0.66,
        second_at + BOUND * 0.66,
    ]
    await running.close()


class GatedStore(SqlStore):
    """Reads the earliest timer, then waits at the gate before handing it over."""

    gate: asyncio.Event | None = None
    reading = asyncio.Event()

    async def next_sla_due(self) -> datetime | None:
        found = await super().next_sla_due()
        if self.gate is not None:
            self.reading.set()
            await self.gate.wait()
        return found


async def test_a_delivery_during_a_round_that_missed_it_still_sets_the_wake_up(
    clock: SimulatedClock, channel: ScriptedChannel, tmp_path: Path
) -> None:
    store = GatedStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    running = Running(monitor(store, clock, channel), clock)
    m = running.monitor
    await running.idle()
    store.gate = asyncio.Event()
    rounds = m.rounds
    m.kick()
    await wait_for(_is_set(store.reading), within=10, what="the round to read the timers", interval=0)
    notice_id, at = await delivered(store, clock)  # after the read: this round never sees it
    m.delivered("telegram", at)
    assert not m.idle
    store.gate.set()
    store.gate = None
    await running.round_after(rounds)
    assert m.wake_at == at + BOUND * 0.66  # from the delivery, not from what the round read

    await running.advance(BOUND * 0.66)
    assert [sent[1] for sent in channel.of(MessageKind.REMINDER)] == [
        f"<{notice_id}.reminder@authority.example>"
    ]
    await running.close()
    await store.close()


def _is_set(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def is_set() -> bool:
        return event.is_set()

    return is_set


async def test_a_later_breach_of_the_other_bound_is_a_second_escalation_with_ids_of_its_own(
    store: SqlStore, clock: SimulatedClock
) -> None:
    # Acknowledgement due in 12 h, removal in 36 h, and neither comes: the acknowledgement breach
    # is escalated at 12 h, the removal breach at 36 h. Under one id, a platform that drops repeated
    # Message-IDs or Idempotency-Keys would drop the second as a copy of the first.
    bounds = SlaBounds(ack_within=timedelta(hours=12), removal_within=BOUND, remind_at=0.5)
    flaky = ScriptedChannel(
        "email",
        clock,
        [
            SendResult(code=250),
            SendResult(code=250),
            DeliveryError("SMTP 451", transient=True, code=451),
            SendResult(code=250),
        ],
    )
    notice_id, delivered_at = await delivered(store, clock)
    m = monitor(store, clock, flaky, bounds=bounds)
    await clock.advance(timedelta(hours=6))
    await m.round()  # the reminder
    await clock.advance(timedelta(hours=6, microseconds=1))
    await m.round()  # the acknowledgement breach
    await clock.advance(timedelta(hours=24))
    await m.round()  # the removal breach: its first send fails
    await m.round()  # sent again

    assert [(kind, message_id) for kind, message_id, _ in flaky.sent] == [
        (MessageKind.REMINDER, f"<{notice_id}.reminder@authority.example>"),
        (MessageKind.ESCALATION, f"<{notice_id}.escalation@authority.example>"),
        (MessageKind.ESCALATION, f"<{notice_id}.escalation-2@authority.example>"),
        (MessageKind.ESCALATION, f"<{notice_id}.escalation-2@authority.example>"),
    ]
    refs = {d.kind: d.message_ref for d in await store.sla_decisions([notice_id])}
    assert refs == {
        SlaKind.REMINDER: f"<{notice_id}.reminder@authority.example>",
        SlaKind.ACK_BREACH: f"<{notice_id}.escalation@authority.example>",
        SlaKind.REMOVAL_BREACH: f"<{notice_id}.escalation-2@authority.example>",
    }
    assert flaky.sent[1][2] == delivered_at + timedelta(hours=12, microseconds=1)
    # Each escalation names the deadline that passed.
    assert [c.breaches for c in flaky.contents] == [
        (),
        (SlaKind.ACK_BREACH,),
        (SlaKind.REMOVAL_BREACH,),
        (SlaKind.REMOVAL_BREACH,),
    ]


async def test_two_monitors_on_the_same_store_decide_each_once(
    store: SqlStore, clock: SimulatedClock, channel: ScriptedChannel
) -> None:
    notice_id, _ = await delivered(store, clock)
    first, second = monitor(store, clock, channel), monitor(store, clock, channel)
    await clock.advance(BOUND * 0.66)
    with capture_logs() as logs:
        await asyncio.gather(first.round(), second.round())
        await clock.advance(BOUND)
        await asyncio.gather(second.round(), first.round())
        await asyncio.gather(first.round(), second.round())
    assert [e["kind"] for e in logs if e["event"] == "sla.reminder"] == ["reminder"]
    assert sorted(e["kind"] for e in logs if e["event"] == "sla.breach") == ["ack_breach", "removal_breach"]
    # Sent at least once, always under the same id.
    assert {sent[1] for sent in channel.of(MessageKind.REMINDER)} == {
        f"<{notice_id}.reminder@authority.example>"
    }
    assert {sent[1] for sent in channel.of(MessageKind.ESCALATION)} == {
        f"<{notice_id}.escalation@authority.example>"
    }


async def test_a_failed_send_is_retried_with_the_same_id(store: SqlStore, clock: SimulatedClock) -> None:
    failing = ScriptedChannel(
        "email", clock, [DeliveryError("SMTP 451", transient=True, code=451), SendResult(code=250)]
    )
    notice_id, _ = await delivered(store, clock)
    m = monitor(store, clock, failing)
    await clock.advance(BOUND * 0.66)
    with capture_logs() as logs:
        await m.round()
        [unsent] = await store.unsent_decisions(limit=10)
        assert unsent.kind is SlaKind.REMINDER
        await m.round()
    assert [e["event"] for e in logs if e["event"].startswith("sla.")] == [
        "sla.reminder",
        "sla.send_failed",
        "sla.reminder_sent",
    ]
    first, second = failing.sent
    assert first[1] == second[1] == f"<{notice_id}.reminder@authority.example>"
    assert await store.unsent_decisions(limit=10) == []
    [decision] = await store.sla_decisions([notice_id])
    assert decision.message_ref == first[1]


async def test_a_platform_escalation_channel_carries_escalations_and_reminders_stay_on_the_notice_channel(
    store: SqlStore, clock: SimulatedClock, channel: ScriptedChannel
) -> None:
    escalation = ScriptedChannel("email", clock)
    await delivered(store, clock)
    m = monitor(store, clock, channel, escalations={"telegram": escalation})
    await clock.advance(BOUND * 0.66)
    await m.round()
    await clock.advance(BOUND)
    await m.round()
    assert [sent[0] for sent in channel.sent] == [MessageKind.REMINDER]
    assert [sent[0] for sent in escalation.sent] == [MessageKind.ESCALATION]
