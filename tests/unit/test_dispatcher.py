"""The dispatch use case on a SQLite store, scripted channels and the simulated clock."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import update
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import AttemptOutcome, Authority, NoticeContent, SendResult
from notifier.domain.validation import Vocabulary, parse_request
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import Incoming
from notifier.services.batcher import Batcher
from notifier.services.dispatcher import Dispatcher, Route
from notifier.services.operator import record_submitted
from notifier.store import SqlStore
from notifier.store.tables import notices

VOCABULARY = Vocabulary(platforms={"telegram"}, categories={"deepfake_sexual_abuse"})
AUTHORITY = Authority(
    name="Authority", email="takedown@authority.example", reply_to=None, timezone="Asia/Seoul"
)
DELIVER_WITHIN = timedelta(hours=6)

Outcome = SendResult | DeliveryError


class ScriptedChannel:
    """A channel whose answers are given in advance; the last answer repeats."""

    def __init__(self, name: str, answers: Sequence[Outcome] = ()) -> None:
        self.name = name
        self.answers = list(answers) or [SendResult(code=250, message_id="<m@x>")]
        self.sent: list[NoticeContent] = []

    async def send(self, content: NoticeContent) -> SendResult:
        self.sent.append(content)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, DeliveryError):
            raise answer
        return answer

    async def close(self) -> None:
        return None


class RecordingAlerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def alert(self, *, subject: str, text: str, key: str) -> str:
        self.sent.append((subject, key))
        return key


def transient(code: int = 503) -> DeliveryError:
    return DeliveryError(f"HTTP {code}", transient=True, code=code)


def permanent(code: int = 400) -> DeliveryError:
    return DeliveryError(f"HTTP {code}", transient=False, code=code)


class Harness:
    def __init__(
        self,
        store: SqlStore,
        primary: ScriptedChannel,
        fallback: ScriptedChannel | None = None,
        *,
        max_items: int = 3,
        clock: SimulatedClock | None = None,
        lease: timedelta = timedelta(seconds=45),
        concurrency: int = 8,
        poll_interval: float = 0.5,
        first_check_after: timedelta | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SimulatedClock()
        self.alerts = RecordingAlerts()
        self.route = Route(
            platform="telegram",
            name="Telegram",
            language="en",
            primary=primary,
            fallback=fallback,
            max_items=max_items,
            max_wait=timedelta(minutes=10),
            rate_per_minute=0,
            ack_within=timedelta(hours=36),
            removal_within=timedelta(hours=36),
            first_check_after=first_check_after,
        )
        self.dispatcher = Dispatcher(
            store=self.store,
            routes={"telegram": self.route},
            authority=AUTHORITY,
            category_labels={"deepfake_sexual_abuse": "Deepfake sexual abuse material"},
            clock=self.clock,
            metrics=Metrics(),
            deliver_within=DELIVER_WITHIN,
            alerts=self.alerts,
            in_call_wait=0.001,
            rng=random.Random(1),
            lease=lease,
            concurrency=concurrency,
            poll_interval=poll_interval,
        )
        self.stop = asyncio.Event()

    async def add(self, *request_ids: str, priority: str = "normal") -> None:
        incoming = [
            Incoming(
                request=parse_request(
                    json.dumps(
                        {
                            "request_id": rid,
                            "platform": "telegram",
                            "urls": [f"https://t.me/c/{rid}"],
                            "category": "deepfake_sexual_abuse",
                            "priority": priority,
                        }
                    ).encode(),
                    VOCABULARY,
                ),
                source="test",
            )
            for rid in request_ids
        ]
        await self.store.ingest(incoming, [], now=self.clock.now())

    async def round(self) -> None:
        """One pass of the daemon's loop, waiting for the sends it starts."""
        await self.dispatcher.form_notices()
        await self.dispatcher.send_due(self.stop)
        await self.dispatcher.drain()
        await self.dispatcher.send_alerts()

    async def only_notice(self) -> str:
        counts = await self.store.status_counts()
        assert sum(counts.notices["telegram"].values()) == 1, counts.notices
        (stored,) = await self.store.get_requests(["r-1"])
        assert stored.notice_id is not None
        return stored.notice_id


async def _state(h: Harness, request_id: str) -> RequestState:
    (stored,) = await h.store.get_requests([request_id])
    return stored.state


async def test_a_full_batch_closes_at_once_and_is_delivered(store: SqlStore) -> None:
    channel = ScriptedChannel("email")
    h = Harness(store, channel, max_items=3, first_check_after=timedelta(hours=27))
    await h.add("r-1", "r-2", "r-3", "r-4")
    with capture_logs() as logs:
        await h.round()

    notice_id = await h.only_notice()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.DELIVERED
    assert notice.request_ids == ("r-1", "r-2", "r-3")
    assert [a.outcome for a in notice.attempts] == [AttemptOutcome.DELIVERED]
    assert notice.message_id == "<m@x>"
    assert [r.state for r in await h.store.get_requests(["r-1", "r-4"])] == [
        RequestState.DELIVERED,
        RequestState.PENDING,
    ]
    sent = channel.sent[0]
    assert sent.notice_id == notice_id
    assert sent.ack_by == notice.created_at + timedelta(hours=36)
    assert {e["event"] for e in logs} >= {"notice.created", "notice.delivered"}
    # The delivery set its requests' first URL check from the platform's schedule.
    assert notice.delivered_at is not None
    assert await h.store.next_verify_due() == notice.delivered_at + timedelta(hours=27)


async def test_a_backlog_is_batched_a_budget_at_a_time(store: SqlStore) -> None:
    """The daemon's loop forms a few notices between claims, so sending starts before a large
    backlog is all batched; what is left over is formed in the next rounds, nothing twice."""
    h = Harness(store, ScriptedChannel("email"), max_items=3)
    batcher = Batcher(
        store=store,
        routes={"telegram": h.route},
        clock=h.clock,
        metrics=Metrics(),
        deliver_within=DELIVER_WITHIN,
    )
    await h.add(*(f"r-{n}" for n in range(1, 12)))  # three full notices and two waiting
    assert await batcher.form_some(2) == (None, True)
    assert await batcher.form_some(2) == (h.clock.now() + timedelta(minutes=10), False)
    assert await _notice_sizes(h, 11) == [3, 3, 3]  # r-1 … r-9, each in one notice
    await h.clock.advance(timedelta(minutes=10))
    assert await batcher.form_some(2) == (None, False)
    assert await _notice_sizes(h, 11) == [2, 3, 3, 3]


async def _notice_sizes(h: Harness, count: int) -> list[int]:
    """The sizes of the notices the requests r-1 … r-<count> are in."""
    stored = await h.store.get_requests([f"r-{n}" for n in range(1, count + 1)])
    members: dict[str, int] = {}
    for request in stored:
        if request.notice_id is not None:
            members[request.notice_id] = members.get(request.notice_id, 0) + 1
    return sorted(members.values())


async def test_a_partial_batch_waits_for_max_wait_unless_urgent(store: SqlStore) -> None:
    h = Harness(store, ScriptedChannel("email"), max_items=10)
    await h.add("r-1")
    await h.round()
    assert (await h.store.status_counts()).notices == {}
    await h.clock.advance(timedelta(minutes=10))
    await h.round()
    assert await _state(h, "r-1") is RequestState.DELIVERED

    await h.add("u-1", priority="urgent")
    await h.round()
    assert await _state(h, "u-1") is RequestState.DELIVERED


async def test_transient_failures_are_retried_in_the_call_then_durably(store: SqlStore) -> None:
    channel = ScriptedChannel("api", [transient(), transient(), SendResult(code=200, ticket="T-1")])
    h = Harness(store, channel)
    await h.add("r-1", "r-2", "r-3")
    await h.round()
    notice_id = await h.only_notice()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.DELIVERED
    assert [a.outcome for a in notice.attempts] == [
        AttemptOutcome.TRANSIENT_ERROR,
        AttemptOutcome.TRANSIENT_ERROR,
        AttemptOutcome.DELIVERED,
    ]
    assert notice.ticket == "T-1"
    assert notice.receipt_at == notice.delivered_at


async def test_a_durable_retry_waits_for_its_time_and_survives_a_restart(store: SqlStore) -> None:
    channel = ScriptedChannel("api", [transient(), transient(), transient(), SendResult(code=200)])
    h = Harness(store, channel)
    await h.add("r-1", "r-2", "r-3")
    await h.round()
    notice_id = await h.only_notice()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.RETRYING
    assert notice.next_attempt_at is not None
    assert h.clock.now() < notice.next_attempt_at <= notice.deliver_by

    # A new process on the same store keeps the schedule: nothing is sent early.
    restarted = Harness(h.store, channel, clock=h.clock)
    await restarted.round()
    assert len(channel.sent) == 3
    await h.clock.advance(notice.next_attempt_at - h.clock.now())
    await restarted.round()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.DELIVERED
    assert len(notice.attempts) == 4


async def test_retries_stop_at_deliver_within_then_the_fallback_delivers(store: SqlStore) -> None:
    api = ScriptedChannel("api", [transient()])
    email = ScriptedChannel("email")
    h = Harness(store, api, email)
    await h.add("r-1", "r-2", "r-3")
    await h.round()
    notice_id = await h.only_notice()
    for _ in range(200):
        (notice,) = await h.store.get_notices([notice_id])
        if notice.state is not NoticeState.RETRYING:
            break
        assert notice.next_attempt_at is not None
        assert notice.next_attempt_at <= notice.created_at + DELIVER_WITHIN
        await h.clock.advance(notice.next_attempt_at - h.clock.now())
        await h.round()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.DELIVERED
    assert notice.channel == "email"
    assert email.sent[0].notice_id == notice_id
    assert max(a.at for a in notice.attempts if a.channel == "api") <= notice.created_at + DELIVER_WITHIN


async def test_a_permanent_failure_goes_to_the_fallback_at_once(store: SqlStore) -> None:
    api = ScriptedChannel("api", [permanent(400)])
    email = ScriptedChannel("email")
    h = Harness(store, api, email)
    await h.add("r-1", "r-2", "r-3")
    await h.round()
    await h.round()
    notice_id = await h.only_notice()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.DELIVERED
    assert [(a.channel, a.outcome) for a in notice.attempts] == [
        ("api", AttemptOutcome.PERMANENT_ERROR),
        ("email", AttemptOutcome.DELIVERED),
    ]
    assert len(api.sent) == 1


async def test_without_a_fallback_the_notice_fails_and_operations_are_alerted_once(store: SqlStore) -> None:
    h = Harness(store, ScriptedChannel("email", [permanent(550)]))
    await h.add("r-1", "r-2", "r-3")
    with capture_logs() as logs:
        await h.round()
        await h.round()
    notice_id = await h.only_notice()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.FAILED
    assert [r.state for r in await h.store.get_requests(["r-1", "r-2", "r-3"])] == [RequestState.FAILED] * 3
    assert h.alerts.sent == [(f"notifier: notice {notice_id} to telegram failed", f"{notice_id}.failed")]
    assert "notice.failed" in [e["event"] for e in logs]


async def test_a_manual_notice_waits_for_submission_which_counts_as_delivery(store: SqlStore) -> None:
    portal = ScriptedChannel("manual", [SendResult(awaiting_submission=True, detail="/outbox/x")])
    h = Harness(store, portal)
    await h.add("r-1", "r-2", "r-3")
    await h.round()
    notice_id = await h.only_notice()
    (notice,) = await h.store.get_notices([notice_id])
    assert notice.state is NoticeState.AWAITING_SUBMISSION
    assert await _state(h, "r-1") is RequestState.BATCHED

    await h.clock.advance(timedelta(hours=2))
    submitted = await record_submitted(h.store, notice_id, at=h.clock.now(), now=h.clock.now(), ticket="P-9")
    assert submitted.state is NoticeState.DELIVERED
    assert submitted.delivered_at == h.clock.now()
    (stored,) = await h.store.get_requests(["r-1"])
    assert stored.state is RequestState.DELIVERED
    assert stored.delivered_at == h.clock.now()


class SlowChannel(ScriptedChannel):
    """A platform that takes ``seconds`` of real time to answer."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name)
        self.seconds = seconds

    async def send(self, content: NoticeContent) -> SendResult:
        await asyncio.sleep(self.seconds)
        return await super().send(content)


async def test_a_send_longer_than_its_lease_keeps_its_claim_and_no_other_process_sends_it(
    store: SqlStore,
) -> None:
    # The lease is judged by the store's real clock: 0.3 s, and a platform that answers after 1.2 s.
    lease = timedelta(seconds=0.3)
    slow = SlowChannel("email", 1.2)
    h = Harness(store, slow, lease=lease)
    other = Harness(store, slow, clock=h.clock, lease=lease)
    await h.add("r-1", priority="urgent")
    await h.dispatcher.form_notices()
    assert await h.dispatcher.send_due(h.stop) == 1

    claimed_by_other = 0
    while h.dispatcher._in_flight:  # the send runs; the other process keeps trying to claim
        claimed_by_other += await other.dispatcher.send_due(other.stop)
        await asyncio.sleep(0.05)
    await h.dispatcher.drain()

    assert claimed_by_other == 0
    assert len(slow.sent) == 1
    (notice,) = await store.get_notices([await h.only_notice()])
    assert notice.state is NoticeState.DELIVERED


async def test_a_lease_lost_while_its_send_runs_is_detected_and_its_outcome_not_written(
    store: SqlStore,
) -> None:
    lease = timedelta(seconds=0.3)
    slow = SlowChannel("email", 1.2)
    h = Harness(store, slow, lease=lease)
    await h.add("r-1", priority="urgent")
    await h.dispatcher.form_notices()
    with capture_logs() as logs:
        assert await h.dispatcher.send_due(h.stop) == 1
        # Another process took the notice over (this one's renewals could not reach the store).
        async with store.engine.begin() as conn:
            await conn.execute(update(notices).values(lease_owner="another-process"))
        await h.dispatcher.drain()

    (notice,) = await store.get_notices([await h.only_notice()])
    assert (notice.state, notice.attempts) == (NoticeState.SENDING, ())
    assert [e["event"] for e in logs if e["event"].startswith("notice.")] == ["notice.lease_lost"]


async def test_a_notice_delivered_hours_after_creation_states_the_instant_it_is_judged_from(
    store: SqlStore,
) -> None:
    # The platform refuses for two hours, then takes the notice: the deadlines it is told run from
    # that moment, which is the delivery time its SLA is measured from.
    channel = ScriptedChannel("api", [transient()] * 3 + [SendResult(code=200)])
    h = Harness(store, channel)
    await h.add("r-1", "r-2", "r-3")
    await h.round()
    notice_id = await h.only_notice()
    await h.clock.advance(timedelta(hours=2))
    await h.round()

    (notice,) = await store.get_notices([notice_id])
    assert notice.state is NoticeState.DELIVERED and notice.delivered_at is not None
    assert notice.delivered_at - notice.created_at >= timedelta(hours=2)
    sent = channel.sent[-1]
    assert (sent.ack_by, sent.remove_by) == (
        notice.delivered_at + h.route.ack_within,
        notice.delivered_at + h.route.removal_within,
    )
    # Each send restated them from its own moment.
    assert channel.sent[0].ack_by == notice.created_at + h.route.ack_within
    assert {(await store.get_requests([rid]))[0].delivered_at for rid in ("r-1", "r-2", "r-3")} == {
        notice.delivered_at
    }
