"""The SLA end to end (SPEC §7, §8): the regulator's figure, breaches, reminders and escalations.

* On the simulated clock, one email platform gets 148 requests in three notices; acknowledgements
  and removals come back over the ack queue at known times, the longest removal exactly 36 h after
  its delivery. The report says 148 removed, a maximum of 129,600 s, no breach, and the SLA monitor
  escalated nothing. One second more on the longest removal: exactly one removal breach in the
  report, and exactly one escalation to the platform's escalation contacts, decided once.
* A silent platform, two ``notifier run`` processes on one PostgreSQL store and one RabbitMQ queue,
  bounds of seconds in real time: one reminder and one escalation per notice, each decided once,
  ``sla.breach`` logged once per kind and notice across both processes.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import RequestState
from notifier.domain.report import nearest_rank
from notifier.domain.sla import PLATFORM_BREACHES, SlaKind
from notifier.ports import SlaDecision
from notifier.sandbox.smtp import Received, SmtpSink
from notifier.services.report import build_report, platform_bounds
from notifier.settings import load_settings
from notifier.store import SqlStore, create_store
from notifier.wiring import create_queue
from tests.acceptance.harness import Daemons, notifier, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

BOUND = timedelta(hours=36)
ESCALATION_TO = "escalations@telegram.example"
PLATFORM_TO = "abuse@telegram.example"
DOMAIN = "authority.example"


def request_body(request_id: str, platform: str = "telegram") -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": platform,
            "urls": [f"https://t.me/c/{request_id}"],
            "category": "deepfake_sexual_abuse",
            "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
            "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
            "evidence": [{"sha256": "c" * 64}],
        }
    ).encode()


def smtp_section(sink: SmtpSink) -> str:
    return f"""
[smtp]
host = "127.0.0.1"
port = {sink.port}
starttls = "off"
from = "takedown@{DOMAIN}"
"""


def message_id(received: Received) -> str:
    return str(received.message()["Message-ID"])


def of_kind(received: list[Received], kind: str) -> Counter[str]:
    """Messages whose Message-ID is ``<notice_id.kind@…>``, counted by notice id."""
    found: Counter[str] = Counter()
    for r in received:
        mid = message_id(r).strip("<>")
        local = mid.partition("@")[0]
        if local.endswith(f".{kind}"):
            found[local.removesuffix(f".{kind}")] += 1
    return found


# -- the regulator's figure, on the simulated clock -----------------------------------------------

TOTAL = 148


class Figure:
    """One email platform (the sink) with escalation contacts, a daemon on a simulated clock."""

    def __init__(self, tmp_path: Path, sink: SmtpSink) -> None:
        self.sink = sink
        database = tmp_path / "var" / "notifier.db"
        self.config = write_config(
            tmp_path,
            store_url=f"sqlite:///{database}",
            queue_url=f"sqlite:///{database}",
            http_listen="",
            runtime='grace = "5s"\nlease = "30s"\nin_call_retry_wait = "0.01"',
            # The SLA is what these scenarios judge; checks of the URLs (which do not resolve here)
            # would add inconclusive checks to the report while it is read twice.
            extra=smtp_section(sink) + "\n[verify]\nenabled = false\n",
            platforms=f"""
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["{PLATFORM_TO}"]
[platforms.telegram.escalation]
email = ["{ESCALATION_TO}"]
[platforms.telegram.batch]
max_items = 50
max_wait = "1m"
""",
        )
        self.settings = load_settings(self.config)
        self.clock = SimulatedClock()
        self.daemon = Daemon(self.settings, clock=self.clock)

    @property
    def store(self) -> SqlStore:
        assert isinstance(self.daemon.store, SqlStore)
        return self.daemon.store

    async def publish(self, queue: str, bodies: list[bytes]) -> None:
        assert self.daemon.queue is not None
        await self.daemon.queue.publish(queue, bodies)

    async def deliver(self, request_ids: list[str]) -> dict[str, tuple[datetime, list[str]]]:
        """Submit, let the two full notices go, then a minute of business time for the last one.

        Returns each notice's delivery time and its requests."""
        await self.publish("takedown.requests", [request_body(r) for r in request_ids])

        async def delivered(count: int) -> bool:
            found = await self.store.get_requests(request_ids)
            return sum(r.state is RequestState.DELIVERED for r in found) == count

        await wait_for(lambda: delivered(100), within=30, what="the two full notices delivered")
        await self.clock.advance(timedelta(minutes=1))
        self.daemon.dispatcher.kick()
        await wait_for(lambda: delivered(TOTAL), within=30, what="the last notice delivered")
        stored = await self.store.get_requests(request_ids)
        notice_ids = sorted({r.notice_id for r in stored if r.notice_id is not None})
        notices = await self.store.get_notices(notice_ids)
        assert [len(n.request_ids) for n in notices] == [50, 50, 48]
        out: dict[str, tuple[datetime, list[str]]] = {}
        for n in notices:
            assert n.delivered_at is not None
            out[n.notice_id] = (n.delivered_at, list(n.request_ids))
        return out

    async def ack(self, notice_id: str, status: str, items: list[str] | None = None) -> None:
        """Publish an acknowledgement on the ack queue and wait until it is applied."""
        body: dict[str, Any] = {"notice_id": notice_id, "status": status}
        if items is not None:
            body["items"] = [{"request_id": r, "status": status} for r in items]
            body["status"] = "partial"
        await self.publish("takedown.acks", [json.dumps(body).encode()])
        target = RequestState.REMOVED if status == "removed" else RequestState.ACKNOWLEDGED
        (notice,) = await self.store.get_notices([notice_id])
        watched = items if items is not None else list(notice.request_ids)

        async def applied() -> bool:
            found = await self.store.get_requests(watched)
            return all(r.state is target or r.state is RequestState.REMOVED for r in found)

        await wait_for(applied, within=30, what=f"{status} of {notice_id} applied", interval=0.02)

    async def advance_to(self, at: datetime) -> None:
        if at > self.clock.now():
            await self.clock.advance(at - self.clock.now())

    async def monitor_rounds(self, count: int) -> None:
        """Wait until the SLA monitor has completed ``count`` more rounds (it looks at least once a
        second of real time, and at once when the business clock reaches its next decision)."""
        start = self.daemon.sla.rounds

        async def rounds() -> bool:
            return self.daemon.sla.rounds >= start + count

        await wait_for(rounds, within=30, what=f"{count} rounds of the SLA monitor")


@pytest.fixture
async def figure(tmp_path: Path) -> AsyncIterator[Figure]:
    sink = await SmtpSink().start()
    f = Figure(tmp_path, sink)
    await f.daemon.start()
    try:
        yield f
    finally:
        if not f.daemon.supervisor.stop.is_set():
            f.daemon.stop()
            assert await f.daemon.wait() == 0
        await sink.stop()


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    notice_id: str
    status: str  # "received" (the whole notice) or "removed" (the listed items)
    items: tuple[str, ...] = ()


def schedule(
    notices: dict[str, tuple[datetime, list[str]]], longest: timedelta
) -> tuple[list[Event], Event, list[int], list[int]]:
    """Acknowledgements 1 h (+10 min per notice) after delivery; removals of ten requests at a time,
    2 h + 3 h per group after delivery (at most 14 h); the last request of the last notice removed
    ``longest`` after its delivery. Also the expected times to ack and to removal, in seconds."""
    events: list[Event] = []
    to_ack: list[int] = []
    to_removal: list[int] = []
    last_notice = list(notices)[-1]
    for k, (notice_id, (delivered, request_ids)) in enumerate(notices.items()):
        ack_after = timedelta(hours=1, minutes=10 * k)
        events.append(Event(delivered + ack_after, notice_id, "received"))
        to_ack.extend([int(ack_after.total_seconds())] * len(request_ids))
        removable = request_ids[:-1] if notice_id == last_notice else request_ids
        for g in range(0, len(removable), 10):
            after = timedelta(hours=2 + 3 * (g // 10), minutes=k)
            events.append(Event(delivered + after, notice_id, "removed", tuple(removable[g : g + 10])))
            to_removal.extend([int(after.total_seconds())] * len(removable[g : g + 10]))
    delivered, request_ids = notices[last_notice]
    final = Event(delivered + longest, last_notice, "removed", (request_ids[-1],))
    to_removal.append(int(longest.total_seconds()))
    events.sort(key=lambda e: e.at)
    assert all(e.at < final.at for e in events)
    return events, final, to_ack, to_removal


def expected_distribution(values: list[int]) -> dict[str, int]:
    ordered = sorted(values)
    return {"p50": nearest_rank(ordered, 50), "p90": nearest_rank(ordered, 90), "max": ordered[-1]}


async def play(figure: Figure, longest: timedelta) -> tuple[list[str], list[int], list[int], Event]:
    request_ids = [f"fig-{i:03d}" for i in range(TOTAL)]
    notices = await figure.deliver(request_ids)
    assert len(figure.sink.received) == 3
    events, final, to_ack, to_removal = schedule(notices, longest)
    for event in events:
        await figure.advance_to(event.at)
        await figure.ack(event.notice_id, event.status, list(event.items) if event.items else None)
    return list(notices), to_ack, to_removal, final


async def test_the_longest_removal_at_exactly_36_hours_is_within_the_bound(figure: Figure) -> None:
    notice_ids, to_ack, to_removal, final = await play(figure, BOUND)
    await figure.advance_to(final.at)
    await figure.monitor_rounds(2)  # the monitor has looked at exactly 36 h, with the request open
    await figure.ack(final.notice_id, "removed", list(final.items))
    # Long after every bound: the monitor looks again and finds nothing to say.
    await figure.clock.advance(timedelta(hours=12))
    await figure.monitor_rounds(2)

    report = await build_report(
        figure.store, platform_bounds(figure.settings), now=figure.clock.now(), since=None, until=None
    )
    (telegram,) = report["platforms"]
    assert telegram["platform"] == "telegram"
    assert (telegram["requests"], telegram["notices"], telegram["delivered"]) == (TOTAL, 3, 3)
    assert (telegram["acknowledged"], telegram["removed"]) == (TOTAL, TOTAL)
    assert (telegram["rejected"], telegram["open"], telegram["failed"]) == (0, 0, 0)
    assert telegram["ack_within"] == telegram["removal_within"] == 129600
    assert telegram["time_to_removal_s"]["max"] == 129600
    assert telegram["time_to_removal_s"] == expected_distribution(to_removal)
    assert telegram["time_to_ack_s"] == expected_distribution(to_ack)
    assert telegram["time_to_delivery_s"]["max"] == 60
    assert (telegram["ack_breaches"], telegram["removal_breaches"]) == (0, 0)
    assert telegram["oldest_open_s"] is None

    # No reminder, no breach, no escalation: the sink has the three notices and nothing else.
    assert await figure.store.sla_decisions(notice_ids) == []
    assert len(figure.sink.received) == 3
    assert all(r.recipients == (PLATFORM_TO,) for r in figure.sink.received)
    assert of_kind(figure.sink.received, "escalation") == Counter()

    # The same figures from the command line, on the stopped daemon's configuration.
    figure.daemon.stop()
    assert await figure.daemon.wait() == 0
    result = await asyncio.to_thread(notifier, "report", "--format", "json", "-c", str(figure.config))
    assert result.returncode == 0, result.stderr.decode()
    (cli,) = json.loads(result.stdout)["platforms"]
    assert cli == telegram


async def test_one_second_more_is_exactly_one_breach_and_one_escalation(figure: Figure) -> None:
    notice_ids, _, to_removal, final = await play(figure, BOUND + timedelta(seconds=1))
    await figure.advance_to(final.at)

    # The monitor decides the removal breach of the last notice (one request still open), then
    # escalates to the platform's escalation contacts, in the notice's thread.
    async def breached() -> bool:
        decisions = await figure.store.sla_decisions(notice_ids)
        return any(d.kind is SlaKind.REMOVAL_BREACH and d.sent_at is not None for d in decisions)

    await wait_for(breached, within=30, what="the removal breach decided and escalated")
    await figure.ack(final.notice_id, "removed", list(final.items))
    await figure.clock.advance(timedelta(hours=12))
    await figure.monitor_rounds(2)

    decisions: list[SlaDecision] = await figure.store.sla_decisions(notice_ids)
    assert [(d.notice_id, d.kind) for d in decisions] == [(final.notice_id, SlaKind.REMOVAL_BREACH)]
    (decision,) = decisions
    assert decision.due_at == final.at - timedelta(seconds=1) + timedelta(microseconds=1)
    escalation_id = f"<{final.notice_id}.escalation@{DOMAIN}>"
    assert decision.message_ref is not None and decision.message_ref.strip("<>") == escalation_id.strip("<>")

    escalations = [r for r in figure.sink.received if message_id(r) == escalation_id]
    assert len(escalations) == 1
    assert len(figure.sink.received) == 4  # the three notices and the one escalation
    (escalation,) = escalations
    mail = escalation.message()
    assert ESCALATION_TO in escalation.recipients
    assert str(mail["To"]) == ESCALATION_TO
    assert f"[{final.notice_id}]" in str(mail["Subject"])
    assert str(mail["In-Reply-To"]) == f"<{final.notice_id}.notice@{DOMAIN}>"

    report = await build_report(
        figure.store, platform_bounds(figure.settings), now=figure.clock.now(), since=None, until=None
    )
    (telegram,) = report["platforms"]
    assert (telegram["requests"], telegram["removed"], telegram["open"]) == (TOTAL, TOTAL, 0)
    assert telegram["time_to_removal_s"]["max"] == 129601
    assert telegram["time_to_removal_s"] == expected_distribution(to_removal)
    assert (telegram["ack_breaches"], telegram["removal_breaches"]) == (0, 1)


# -- a silent platform, two daemon processes, real time -------------------------------------------

SILENT = """
[platforms.silent]
name = "Silent"
channel = "email"
[platforms.silent.email]
to = ["abuse@silent.example"]
[platforms.silent.escalation]
email = ["escalations@silent.example"]
[platforms.silent.batch]
max_items = 2
max_wait = "1s"
[platforms.silent.sla]
ack_within = "6s"
removal_within = "6s"
remind_at = 0.5
"""


@dataclass(frozen=True, slots=True)
class Silence:
    """What a run of the silent platform left: its notices, the mail, the decisions, the logs."""

    notice_ids: list[str]
    received: list[Received]
    decisions: list[SlaDecision]
    processes: Daemons


@pytest.fixture
async def silence(
    tmp_path: Path,
    daemons: Daemons,
    postgres_url: str,
    amqp_server: str,
    queue_name: str,
    amqp_cleanup: list[str],
) -> Silence:
    """Two daemons, six requests to the silent platform, never an answer; until every notice has
    had its reminder and its escalation, and then 2.5 s more; both daemons stopped with SIGTERM."""
    amqp_cleanup.extend([queue_name, f"{queue_name}.acks"])
    sink = await SmtpSink().start()
    try:
        config = write_config(
            tmp_path,
            store_url=postgres_url,
            queue_url=amqp_server,
            requests_queue=queue_name,
            acks_queue=f"{queue_name}.acks",
            http_listen="",
            runtime='grace = "5s"\nlease = "3s"\nin_call_retry_wait = "0.05s"',
            extra=smtp_section(sink),
            platforms=SILENT,
        )
        request_ids = [f"silent-{i}" for i in range(6)]
        queue = create_queue(load_settings(config))
        await queue.connect()
        try:
            await queue.publish(queue_name, [request_body(r, "silent") for r in request_ids])
        finally:
            await queue.close()

        store = await create_store(postgres_url)
        try:
            pair = [daemons.start(config, f"daemon-{n}") for n in (1, 2)]

            def alive() -> None:
                for p in pair:
                    assert p.poll() is None, f"daemon {p.pid} exited:\n{daemons.tail(p)}"

            async def delivered() -> bool:
                alive()
                found = await store.get_requests(request_ids)
                return len(found) == len(request_ids) and all(
                    r.notice_id is not None and r.state is RequestState.DELIVERED for r in found
                )

            await wait_for(delivered, within=30, what="every request delivered")
            stored = await store.get_requests(request_ids)
            notice_ids = sorted({r.notice_id for r in stored if r.notice_id is not None})

            async def all_escalated() -> bool:
                alive()
                escalated = of_kind(sink.received, "escalation")
                reminded = of_kind(sink.received, "reminder")
                decisions = await store.sla_decisions(notice_ids)
                return (
                    set(escalated) == set(notice_ids)
                    and set(reminded) == set(notice_ids)
                    and len(decisions) == 3 * len(notice_ids)
                    and all(d.sent_at is not None for d in decisions)
                )

            await wait_for(all_escalated, within=30, what="a reminder and an escalation per notice")
            # 2.5 s more of real time: both monitors look again (each at least once a second) and
            # must find nothing more to decide or send.
            before = await store.sla_decisions(notice_ids)
            await wait_for(_after_seconds(2.5), within=5, what="2.5 more seconds of both monitors")
            decisions = await store.sla_decisions(notice_ids)
            assert decisions == before
            for p in pair:
                p.send_signal(signal.SIGTERM)
            for p in pair:
                code = await asyncio.to_thread(p.wait, 30)
                assert code == 0, daemons.tail(p)
        finally:
            await store.close()
    finally:
        await sink.stop()
    return Silence(
        notice_ids=notice_ids, received=list(sink.received), decisions=decisions, processes=daemons
    )


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_a_silent_platform_is_reminded_and_escalated_decided_once_by_two_daemons(
    silence: Silence,
) -> None:
    notice_ids, received = silence.notice_ids, silence.received
    assert len(notice_ids) == 3  # six requests, two to a notice
    assert of_kind(received, "notice") == Counter({n: 1 for n in notice_ids})

    # Each decided once, and logged once per kind and notice across both processes.
    kinds = Counter((d.notice_id, d.kind) for d in silence.decisions)
    assert kinds == Counter({(n, k): 1 for n in notice_ids for k in (SlaKind.REMINDER, *PLATFORM_BREACHES)})
    assert all(d.sent_at is not None for d in silence.decisions)
    breaches = Counter((e["notice_id"], e["kind"]) for e in silence.processes.events("sla.breach"))
    assert breaches == Counter(
        {(n, k.value): 1 for n in notice_ids for k in (SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH)}
    )
    reminder_logs = Counter(e["notice_id"] for e in silence.processes.events("sla.reminder"))
    assert reminder_logs == Counter({n: 1 for n in notice_ids})

    # Every notice reminded and escalated; each copy in the notice's thread, to the right people,
    # with the id derived from the notice (so a copy is a duplicate the platform can drop).
    reminders, escalations = of_kind(received, "reminder"), of_kind(received, "escalation")
    assert set(reminders) == set(escalations) == set(notice_ids)
    assert max(reminders.values()) <= 2 and max(escalations.values()) <= 2  # at most one per process
    for r in received:
        local = message_id(r).strip("<>").partition("@")[0]
        for kind in ("reminder", "escalation"):
            if local.endswith(f".{kind}"):
                notice_id = local.removesuffix(f".{kind}")
                mail = r.message()
                assert str(mail["In-Reply-To"]) == f"<{notice_id}.notice@{DOMAIN}>", "not in the thread"
                if kind == "escalation":
                    assert str(mail["To"]) == "escalations@silent.example"
                    assert "escalations@silent.example" in r.recipients
                else:
                    assert r.recipients == ("abuse@silent.example",)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_a_silent_platform_gets_exactly_one_reminder_and_one_escalation_per_notice(
    silence: Silence,
) -> None:
    reminders, escalations = of_kind(silence.received, "reminder"), of_kind(silence.received, "escalation")
    assert reminders == Counter({n: 1 for n in silence.notice_ids}), f"reminders per notice: {reminders}"
    assert escalations == Counter({n: 1 for n in silence.notice_ids}), f"escalations: {escalations}"
    sent = Counter(
        e["notice_id"]
        for event in ("sla.reminder_sent", "sla.escalated")
        for e in silence.processes.events(event)
    )
    assert sent == Counter({n: 2 for n in silence.notice_ids})


def _after_seconds(seconds: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def passed() -> bool:
        return loop.time() >= deadline

    return passed
