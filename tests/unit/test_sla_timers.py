"""The SLA monitor's timers on a SQLite store and the simulated clock: due work found whatever the
backlog, reminders overtaken by an acknowledgement dropped, and the authority's own clock (a portal
notice left unfiled past ``file_within``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.domain.report import Bounds
from notifier.domain.sla import SlaBounds, SlaKind
from notifier.metrics import Metrics
from notifier.ports import Channel, Incoming
from notifier.services.report import build_report
from notifier.services.sla import SlaMonitor
from notifier.settings import load_settings
from notifier.store import SqlStore, create_store
from notifier.store.tables import notices, requests
from tests.acceptance.harness import write_config
from tests.unit.test_sla_monitor import AUTHORITY, Running, ScriptedChannel, delivered, route

HOURS36 = timedelta(hours=36)
# The platform under test answers within seconds; the backlog's platform within the usual 36 h.
FAST = SlaBounds(ack_within=timedelta(seconds=10), removal_within=timedelta(seconds=20), remind_at=0.5)
SLOW = SlaBounds(ack_within=HOURS36, removal_within=HOURS36)
FILE_WITHIN = timedelta(hours=2)
PORTAL = SlaBounds(ack_within=HOURS36, removal_within=HOURS36, file_within=FILE_WITHIN)
BACKLOG = 3000  # six times the page the monitor claims at once


class Alerts:
    """The operations staff's inbox: every alert kept, under its key."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def alert(self, *, subject: str, text: str, key: str) -> str:
        self.sent.append((key, subject, text))
        return f"<{key}@authority.example>"


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await create_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        await opened.close()


def sla_monitor(
    store: SqlStore,
    clock: SimulatedClock,
    channels: dict[str, Channel],
    bounds: dict[str, SlaBounds],
    *,
    alerts: Alerts | None = None,
    metrics: Metrics | None = None,
    claim_lease: timedelta = timedelta(minutes=1),
) -> SlaMonitor:
    return SlaMonitor(
        store=store,
        routes={p: replace(route(c), platform=p, name=p.title()) for p, c in channels.items()},
        bounds=bounds,
        authority=AUTHORITY,
        category_labels={},
        clock=clock,
        metrics=metrics or Metrics(),
        alerts=alerts,
        poll_interval=60.0,  # real seconds: only the simulated clock and kicks wake the monitor here
        send_backoff=0.0,
        claim_lease=claim_lease,
    )


async def acknowledged_backlog(store: SqlStore, count: int, *, delivered_at: datetime) -> None:
    """``count`` notices of one request each on ``slowhost``, delivered at ``delivered_at``,
    acknowledged half an hour later and not removed, written straight into the tables (as many
    days of deliveries would have left them), each due at its delivery as a delivery leaves it."""
    acknowledged_at = delivered_at + timedelta(minutes=30)
    body = json.dumps({"request_id": "x"})
    notice_rows = [
        {
            "notice_id": f"TD-slowhost-{i:06d}",
            "platform": "slowhost",
            "sequence": i + 1,
            "request_count": 1,
            "channel": "email",
            "primary_channel": "email",
            "state": "acknowledged",
            "created_at": delivered_at,
            "updated_at": acknowledged_at,
            "deliver_by": delivered_at + timedelta(hours=6),
            "delivered_at": delivered_at,
            "acknowledged_at": acknowledged_at,
            "sla_due_at": delivered_at,
        }
        for i in range(count)
    ]
    request_rows = [
        {
            "request_id": f"slow-{i:06d}",
            "platform": "slowhost",
            "state": "acknowledged",
            "priority": "normal",
            "content_hash": "0" * 64,
            "body": body,
            "source": "test",
            "ingested_at": delivered_at - timedelta(minutes=5),
            "notice_id": f"TD-slowhost-{i:06d}",
            "delivered_at": delivered_at,
            "acknowledged_at": acknowledged_at,
            "notice_position": 0,
        }
        for i in range(count)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(notices.insert(), notice_rows)
        await conn.execute(requests.insert(), request_rows)


async def test_a_new_notice_is_reminded_and_breached_on_time_behind_thousands_acknowledged_and_open(
    store: SqlStore, clock: SimulatedClock
) -> None:
    channel = ScriptedChannel("email", clock)
    await acknowledged_backlog(store, BACKLOG, delivered_at=clock.now() - timedelta(hours=1))
    m = sla_monitor(store, clock, {"telegram": channel}, {"telegram": FAST, "slowhost": SLOW})
    running = Running(m, clock)
    await running.idle()
    # The backlog was looked at once, a page a round, and every timer moved to its removal bound.
    assert m.rounds <= BACKLOG // 500 + 1
    backlog_due = clock.now() - timedelta(hours=1) + HOURS36 + timedelta(microseconds=1)
    assert m.wake_at == backlog_due
    assert await store.next_sla_due() == backlog_due

    notice_id, delivered_at = await delivered(store, clock)  # older notices fill any page of them
    rounds = m.rounds
    m.delivered("telegram", delivered_at)  # as the dispatcher tells it
    await running.round_after(rounds)
    assert m.wake_at == delivered_at + timedelta(seconds=5)
    rounds = m.rounds
    await running.advance(timedelta(seconds=30))
    await running.close()

    decided = {d.kind: d for d in await store.sla_decisions([notice_id])}
    due = {
        SlaKind.REMINDER: delivered_at + timedelta(seconds=5),
        SlaKind.ACK_BREACH: delivered_at + timedelta(seconds=10, microseconds=1),
        SlaKind.REMOVAL_BREACH: delivered_at + timedelta(seconds=20, microseconds=1),
    }
    assert {kind: d.due_at for kind, d in decided.items()} == due
    # Each decided, and sent, at the very instant it fell due on the business clock.
    assert {kind: d.decided_at for kind, d in decided.items()} == due
    assert [sent[2] for sent in channel.sent] == [
        due[SlaKind.REMINDER],
        due[SlaKind.ACK_BREACH],
        due[SlaKind.REMOVAL_BREACH],
    ]
    # One round at each of the three instants, and one after the last step of the clock.
    assert m.rounds - rounds == 4
    assert await store.sla_decisions([f"TD-slowhost-{i:06d}" for i in range(0, BACKLOG, 97)]) == []


async def test_a_reminder_decided_but_overtaken_by_an_acknowledgement_is_dropped_not_sent(
    store: SqlStore, clock: SimulatedClock
) -> None:
    channel = ScriptedChannel("email", clock)
    notice_id, delivered_at = await delivered(store, clock)
    m = sla_monitor(store, clock, {"telegram": channel}, {"telegram": SLOW})
    await clock.advance(HOURS36 * 0.66)
    with capture_logs() as logs:
        await m.decide_due()  # the reminder is decided …
        ack = Ack(
            notice_id=notice_id,
            status=AckStatus.RECEIVED,
            received_at=clock.now(),
            source="amqp:takedown.acks",
        )
        context = await store.ack_context(notice_id)
        assert context is not None
        assert await store.apply_ack(
            ack, plan_ack(context[0].state, context[1], ack)
        )  # … the ack comes first
        await m.send_decided()
        await m.round()
    assert channel.sent == []
    [dropped] = [e for e in logs if e["event"] == "sla.reminder_dropped"]
    assert (dropped["notice_id"], dropped["kind"], dropped["reason"]) == (
        notice_id,
        "reminder",
        "acknowledged",
    )
    [decision] = await store.sla_decisions([notice_id])
    assert (decision.kind, decision.sent_at, decision.dropped_at) == (SlaKind.REMINDER, None, clock.now())
    assert await store.unsent_decisions(limit=10) == []
    assert delivered_at < decision.decided_at


async def rendered(store: SqlStore, clock: SimulatedClock, count: int, prefix: str = "c") -> str:
    """A portal notice of ``count`` requests, rendered into the outbox now and not filed."""
    now = clock.now()
    batch = [
        Incoming(
            request=TakedownRequest(
                request_id=f"{prefix}-{i}",
                platform="clipshare",
                urls=(f"https://clipshare.example/v/{i}",),
                category="deepfake_sexual_abuse",
                priority=Priority.NORMAL,
            ),
            source="test",
        )
        for i in range(count)
    ]
    await store.ingest(batch, [], now=now)
    notice = await store.form_notice("clipshare", max_items=count, channel="manual", now=now, deliver_by=now)
    assert notice is not None
    [claimed] = await store.claim_due(owner="w", now=now, lease=timedelta(minutes=5), limit=1)
    attempt = Attempt(at=now, channel="manual", outcome=AttemptOutcome.DELIVERED)
    result = SendResult(awaiting_submission=True, detail=f"outbox/{claimed.notice_id}")
    assert await store.record_delivery(
        claimed.notice_id, owner="w", attempt=attempt, result=result, channel="manual"
    )
    return claimed.notice_id


async def test_a_portal_notice_left_unfiled_is_an_undelivered_breach_told_to_operations_and_open(
    store: SqlStore, clock: SimulatedClock
) -> None:
    outbox = ScriptedChannel("manual", clock)
    alerts, metrics = Alerts(), Metrics()
    notice_id = await rendered(store, clock, 1000)
    rendered_at = clock.now()
    m = sla_monitor(
        store, clock, {"clipshare": outbox}, {"clipshare": PORTAL}, alerts=alerts, metrics=metrics
    )
    running = Running(m, clock)
    with capture_logs() as logs:
        await running.idle()
        assert m.wake_at == rendered_at + FILE_WITHIN + timedelta(microseconds=1)
        await clock.advance(FILE_WITHIN)  # exactly the bound: still within it
        await running.next_round()
        assert alerts.sent == []
        await running.advance(timedelta(microseconds=1))
        await running.close()

    [(key, subject, text)] = alerts.sent
    assert key == f"{notice_id}.unfiled"
    assert notice_id in subject and "Clipshare" in subject
    assert f"notifier ack {notice_id} --status submitted" in text
    assert outbox.sent == []  # the platform hears nothing of it
    [breach] = [e for e in logs if e["event"] == "sla.breach"]
    assert (breach["kind"], breach["bound_s"], breach["elapsed_s"]) == ("undelivered_breach", 7200, 7200)
    assert metrics.sla_breaches.labels(platform="clipshare", kind="undelivered_breach")._value.get() == 1
    [decision] = await store.sla_decisions([notice_id])
    assert (decision.kind, decision.decided_at) == (
        SlaKind.UNDELIVERED_BREACH,
        rendered_at + FILE_WITHIN + timedelta(microseconds=1),
    )
    assert decision.message_ref == f"<{notice_id}.unfiled@authority.example>"

    report = await build_report(
        store, {"clipshare": Bounds(ack_within=HOURS36, removal_within=HOURS36)}, now=clock.now()
    )
    [clipshare] = report["platforms"]
    assert (clipshare["requests"], clipshare["open"], clipshare["undelivered"]) == (1000, 1000, 1000)
    assert (clipshare["undelivered_breaches"], clipshare["oldest_undelivered_s"]) == (1000, 7200)
    assert (clipshare["ack_breaches"], clipshare["removal_breaches"]) == (0, 0)


async def test_a_portal_notice_filed_in_time_owes_nothing_and_one_filed_late_is_a_breach_without_an_alert(
    store: SqlStore, clock: SimulatedClock
) -> None:
    alerts = Alerts()
    on_time = await rendered(store, clock, 1)
    await clock.advance(timedelta(seconds=1))
    late = await rendered(store, clock, 1, prefix="late")
    m = sla_monitor(
        store, clock, {"clipshare": ScriptedChannel("manual", clock)}, {"clipshare": PORTAL}, alerts=alerts
    )
    await m.round()
    await clock.advance(FILE_WITHIN - timedelta(seconds=1))
    assert await store.mark_submitted(on_time, at=clock.now(), ticket=None) is not None  # 2 h: within
    await clock.advance(timedelta(seconds=31))
    # Filed 30 s past its bound, before the monitor looked again (it was down).
    assert await store.mark_submitted(late, at=clock.now(), ticket=None) is not None
    with capture_logs() as logs:
        await m.round()
    assert [d.kind for d in await store.sla_decisions([on_time])] == []
    [decision] = await store.sla_decisions([late])
    assert decision.kind is SlaKind.UNDELIVERED_BREACH
    assert (decision.sent_at, decision.dropped_at) == (None, clock.now())
    assert alerts.sent == []  # filed by now: the staff need no reminder, the breach stands
    assert [(e["event"], e.get("reason")) for e in logs if e["event"].startswith("sla.")] == [
        ("sla.breach", None),
        ("sla.reminder_dropped", "filed"),
    ]
    # The platform's clock runs from the filing: the next thing due is the first notice's reminder.
    assert await store.next_sla_due() == clock.now() - timedelta(seconds=31) + HOURS36 * 0.66


async def test_a_notice_claimed_by_a_monitor_that_died_is_decided_on_time_once_its_lease_runs_out(
    store: SqlStore, clock: SimulatedClock
) -> None:
    """kill -9 between a monitor's claim and its reschedule: the notice's timer stays at the claim's
    end. With a claim as long as the daemon's ``runtime.lease`` (2 s here) another monitor takes it
    over before its reminder is due, so the reminder is not lost behind the breach."""
    channel = ScriptedChannel("email", clock)
    notice_id, delivered_at = await delivered(store, clock)
    lease = timedelta(seconds=2)
    # The monitor that died: it claimed the notice at its delivery and never moved its timer on.
    [claim] = await store.claim_sla_due(now=clock.now(), lease=lease, limit=10)
    assert claim.notice_id == notice_id
    assert await store.next_sla_due() == delivered_at + lease

    m = sla_monitor(store, clock, {"telegram": channel}, {"telegram": FAST}, claim_lease=lease)
    running = Running(m, clock)
    await running.idle()
    assert m.wake_at == delivered_at + lease  # nothing for it until the dead monitor's claim ends
    await running.advance(timedelta(seconds=30))
    await running.close()

    decided = {d.kind: d.decided_at for d in await store.sla_decisions([notice_id])}
    assert decided == {
        SlaKind.REMINDER: delivered_at + timedelta(seconds=5),
        SlaKind.ACK_BREACH: delivered_at + timedelta(seconds=10, microseconds=1),
        SlaKind.REMOVAL_BREACH: delivered_at + timedelta(seconds=20, microseconds=1),
    }
    assert [kind for kind, _, _ in channel.sent] == ["reminder", "escalation", "escalation"]


async def test_the_daemon_s_monitor_claims_for_runtime_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    config = write_config(tmp_path, store_url=url, queue_url=url, http_listen="", runtime='lease = "2s"')
    daemon = Daemon(load_settings(config, {}), clock=SimulatedClock())
    await daemon.start()
    try:
        assert daemon.sla.claim_lease == timedelta(seconds=2)
    finally:
        daemon.stop()
        assert await daemon.wait() == 0
